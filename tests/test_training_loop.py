"""training/training_loop.py end to end on a tiny synthetic set: artefacts, exact resume, SIGTERM,
distributed = accumulated, resume from a network snapshot, and one-line errors."""
import dataclasses
import datetime
import glob
import json
import os
import signal
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

import legacy
from configs.training_options import TrainingOptions
from multiprocess_testing import run_processes
from synthetic_testing import synthetic_zips
from torch_utils import training_stats
from torch_utils.distributed import DistContext, join_process_group
from training import snapshots
from training import training_loop as loop
from training import training_state as ts
from training.schedules import ScheduleValues

pytestmark = pytest.mark.slow
STEP = 2                                  # images per step in these tests
# The mapping's running mean of w (used only for truncation) is tracked by each process from its own
# micro-batches, as in EG3D; rank 0's is saved. One process with accumulation sees both micro-batches.
PER_PROCESS_BUFFERS = ('mapping.w_avg',)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """(images.zip, masks.zip) of 8 synthetic 64x64 portraits."""
    return synthetic_zips(tmp_path_factory.mktemp('data'), 8, 64)


def _opts(data, outdir, steps, **overrides):
    """The smallest tiny-cpu training that still builds: `steps` steps of 2 images, ticks only at start and end."""
    return TrainingOptions(**{**dict(
        outdir=str(outdir), data=data[0], seg_data=data[1], network_preset='tiny-cpu', seed=1, kimg=steps * STEP / 1000,
        tick=1000, snap=1000, image_snap=1000, batch=STEP, mbstd_group=2, workers=0, mirror=False, cbase=512, cmax=16,
        map_depth=1, neural_rendering_resolution_initial=32, blur_fade_kimg=1, density_noise_fade_kimg=1,
        gpc_reg_fade_kimg=1, input_pose_params_reg_loss_kimg=0.002), **overrides})


def _train(opts, name, ctx=None):
    """Run training_loop in outdir/name; returns the run dir."""
    run_dir = os.path.join(opts.outdir, name)
    os.makedirs(run_dir, exist_ok=True)
    loop.training_loop(opts, run_dir, ctx or DistContext.single('cpu'))
    return run_dir


def _state(run_dir):
    """The newest training state of run_dir, loaded with weights_only=True."""
    return torch.load(max(glob.glob(os.path.join(run_dir, 'training-state-*.pt'))), weights_only=True)


def _no_image_snapshots(monkeypatch):
    """Skip the fakes grids where a test is not about them (they cost a few seconds per tick)."""
    monkeypatch.setattr(snapshots, 'write_fakes', lambda *args, **kwargs: None)


@pytest.fixture(scope='module')
def two_steps(data, tmp_path_factory):
    """A 2-step run: (opts, run dir)."""
    torch.set_num_threads(1)
    opts = _opts(data, tmp_path_factory.mktemp('out'), steps=2)
    return opts, _train(opts, '00000-two')


def test_two_steps_write_every_artefact(two_steps):
    opts, run_dir = two_steps
    names = set(os.listdir(run_dir))
    stems = [f'fakes000000{suffix}.png' for suffix in ('', '_raw', '_depth', '_mask', '_canonical')]
    expected = {'training_options.json', 'log.txt', 'stats.jsonl', 'reals.png', 'poses000000.png',
                'network-snapshot-000000.pkl', 'training-state-000000.pt', *stems}
    assert names == expected
    options = json.loads(open(os.path.join(run_dir, 'training_options.json')).read())
    assert options['kimg'] == opts.kimg and options['derived']['accumulation'] == 1
    assert options['G_kwargs']['channel_base'] == 512 and options['training_set_kwargs']['path'] == opts.data
    log = open(os.path.join(run_dir, 'log.txt')).read()
    assert 'tick 0 ' in log and 'tick 1 ' in log and 'kimg 0.004' in log and 'sec/kimg' in log and 'nrr 32' in log
    stats = [json.loads(line) for line in open(os.path.join(run_dir, 'stats.jsonl'))]
    assert len(stats) == 2 and all('timestamp' in s and 'Loss/G/loss' in s for s in stats)
    assert stats[1]['Progress/kimg']['mean'] == pytest.approx(0.004)
    assert stats[0]['Loss/D/reg']['num'] == STEP                                                  # R1 at step 0
    assert PIL.Image.open(os.path.join(run_dir, 'reals.png')).size == (4 * 64, 2 * 64)       # 8 items: 4 x 2
    assert PIL.Image.open(os.path.join(run_dir, stems[0])).size == (4 * 64, 2 * 64)
    snapshot = legacy.load_network_pkl(os.path.join(run_dir, 'network-snapshot-000000.pkl'))
    assert snapshot['cur_nimg'] == 2 * STEP and snapshot['G_ema'].neural_rendering_resolution == 32
    assert snapshot['pose_predict_kwargs']['neural_rendering_resolution'] == 32
    assert snapshot['training_set_kwargs']['mask_path'] == opts.seg_data
    state = _state(run_dir)
    assert state['counters']['cur_nimg'] == 2 * STEP and state['counters']['batch_idx'] == 2
    assert set(state['optimizers']) == {'Gboth', 'Dmain'}
    for name in ('G', 'D', 'G_ema', 'D_ema'):
        params = {k: v for k, v in state['modules'][name].items()}
        assert all(torch.equal(params[k], v) for k, v in snapshot[name].state_dict().items())


def test_resume_from_a_network_snapshot_and_incompatible_files(two_steps, monkeypatch):
    _no_image_snapshots(monkeypatch)
    opts, run_dir = two_steps
    pkl = os.path.join(run_dir, 'network-snapshot-000000.pkl')
    resumed = dataclasses.replace(opts, resume=pkl, resume_kimg=1.0, kimg=1.0 + STEP / 1000)
    state = _state(_train(resumed, '00001-pkl'))
    assert state['counters']['cur_nimg'] == 1000 + STEP and state['counters']['batch_idx'] == 1
    wider = dataclasses.replace(opts, resume=os.path.join(run_dir, 'training-state-000000.pt'), cmax=32)
    with pytest.raises(ts.TrainingStateError) as err:
        _train(wider, '00002-wider')
    assert '\n' not in str(err.value) and 'training-state-000000.pt: G does not fit' in str(err.value)


def test_sigterm_then_resume_continues_bit_exactly(data, tmp_path, monkeypatch, one_thread):
    _no_image_snapshots(monkeypatch)
    opts = _opts(data, tmp_path, steps=3)
    uninterrupted = _state(_train(opts, '00000-full'))
    step = loop.training_step

    def step_then_sigterm(run, *args):
        if run.counters.batch_idx == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return step(run, *args)

    monkeypatch.setattr(loop, 'training_step', step_then_sigterm)
    stopped = _state(_train(opts, '00001-stopped'))
    assert stopped['counters']['cur_nimg'] == 2 * STEP
    monkeypatch.setattr(loop, 'training_step', step)
    resumed = _state(_train(dataclasses.replace(opts, resume='auto'), '00002-resumed'))
    assert resumed['counters']['cur_nimg'] == 3 * STEP
    for name in ts.MODULE_NAMES:
        for key, value in uninterrupted['modules'][name].items():
            assert torch.equal(resumed['modules'][name][key], value), f'{name}.{key}'
    for name, opt_state in uninterrupted['optimizers'].items():
        for index, slots in opt_state['state'].items():
            assert all(torch.equal(resumed['optimizers'][name]['state'][index][k], v) for k, v in slots.items())


def _dist_opts(data, outdir):
    """One step of a global batch of 4 items in micro-batches of 2 (mbstd group 2)."""
    return _opts(data, outdir, steps=1, batch=4, batch_gpu=2)


def _rank_worker(rank, tmp_dir, world_size):
    """One process of the 2-rank gloo run."""
    torch.set_num_threads(1)
    join_process_group('gloo', f'file://{tmp_dir}/store', rank, world_size, timeout=datetime.timedelta(seconds=60))
    try:
        training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
        snapshots.write_fakes = lambda *args, **kwargs: None
        paths = json.loads(open(os.path.join(tmp_dir, 'data.json')).read())
        ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank, device=torch.device('cpu'), backend='gloo')
        _train(_dist_opts(paths, tmp_dir), '00000-ranks', ctx)
    finally:
        torch.distributed.destroy_process_group()
    with open(os.path.join(tmp_dir, f'rank{rank}.json'), 'w') as file:
        json.dump(dict(rank=rank), file)


def test_two_ranks_equal_one_rank_with_accumulation(data, tmp_path, monkeypatch, one_thread):
    (tmp_path / 'data.json').write_text(json.dumps(list(data)))
    run_processes(_rank_worker, tmp_path, world_size=2, timeout=240)
    _no_image_snapshots(monkeypatch)
    single = _state(_train(_dist_opts(data, tmp_path), '00001-single'))
    double = _state(str(tmp_path / '00000-ranks'))
    assert single['counters'] == double['counters']
    for name in ts.MODULE_NAMES:
        for key, value in single['modules'][name].items():
            if key.endswith(PER_PROCESS_BUFFERS) or not value.is_floating_point():
                continue
            np.testing.assert_allclose(double['modules'][name][key].numpy(), value.numpy(), rtol=1e-4, atol=1e-6,
                                       err_msg=f'{name}.{key}')


def test_nan_loss_stops_with_a_clear_error_and_writes_no_checkpoint(data, tmp_path, monkeypatch, one_thread):
    build = loop.build_networks

    def build_with_nan(opts, device):
        nets, built = build(opts, device)
        with torch.no_grad():
            next(nets['D'].backbone.parameters()).fill_(float('nan'))    # D(fake) = NaN in the first phase
        return nets, built

    monkeypatch.setattr(loop, 'build_networks', build_with_nan)
    with pytest.raises(loop.NonFiniteLossError) as err:
        _train(_opts(data, tmp_path, steps=2), '00000-nan')
    message = str(err.value)
    assert '\n' not in message and 'phase Gboth at kimg 0.000' in message and 'Loss/' in message
    assert not [name for name in os.listdir(tmp_path / '00000-nan') if name.endswith(('.pt', '.pkl'))]


def test_metrics_hook_evaluates_every_metric_and_reports_on_rank_0(tmp_path, monkeypatch):
    from metrics import metric_main
    calls, reported, mirrored = [], [], []

    def calc_metric(metric, **kwargs):
        calls.append(dict(kwargs, metric=metric))
        return dict(results={metric: 1.5}, metric=metric)

    monkeypatch.setattr(metric_main, 'calc_metric', calc_metric)
    monkeypatch.setattr(metric_main, 'report_metric', lambda *args: reported.append(args))
    opts = TrainingOptions(metrics=('fid50k_full', 'pose_err_real'), metric_pose_sample_mode='D_predict',
                           metrics_num_gen=300)
    run = SimpleNamespace(opts=opts, nets=dict(G_ema='G_ema', D_ema='D_ema'), dataset_kwargs=dict(path='data.zip'),
                          ctx=DistContext.single('cpu'), run_dir=str(tmp_path), counters=loop.Counters(cur_nimg=4000))
    sched = ScheduleValues(blur_sigma=1.5, swap_prob=0.7, density_noise=0.0, nrr=32, pose_reg_weight=0.0)
    sink = SimpleNamespace(write_metric=lambda *args: mirrored.append(args))
    loop.evaluate_metrics(run, 'network-snapshot-000004.pkl', sched, sink)
    assert [c['metric'] for c in calls] == ['fid50k_full', 'pose_err_real']
    for call in calls:
        assert call['G'] == 'G_ema' and call['D'] == 'D_ema' and call['dataset_kwargs'] == dict(path='data.zip')
        assert call['pose_sample_mode'] == 'D_predict' and call['identical_c_p'] is True and call['num_gen'] == 300
        assert call['pose_predict_kwargs'] == dict(blur_sigma=1.5, neural_rendering_resolution=32)
    assert [(r['metric'], d, p) for r, d, p in reported] == [
        ('fid50k_full', str(tmp_path), 'network-snapshot-000004.pkl'),
        ('pose_err_real', str(tmp_path), 'network-snapshot-000004.pkl')]
    assert mirrored == [('fid50k_full', 1.5, 4000), ('pose_err_real', 1.5, 4000)]
