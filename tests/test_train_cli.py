"""train.py: presets + flag overrides, hidden original aliases, --dry-run JSON, run dirs, one-line pre-flight errors."""
import dataclasses
import json
import os

import pytest
import torch
from click.testing import CliRunner

import train
from configs.training_options import TrainingOptions, with_network_defaults
from configs.training_presets import get_training_preset
from synthetic_testing import synthetic_zips
from training import training_state

LAUNCH_VARIABLES = ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'SLURM_PROCID', 'SLURM_STEP_ID', 'SLURM_NTASKS')


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    """A 4-image synthetic set at 64x64 (the tiny-cpu resolution): (images.zip, masks.zip)."""
    return synthetic_zips(tmp_path_factory.mktemp('data'), 4, 64)


@pytest.fixture(autouse=True)
def plain_launch(monkeypatch):
    """No torchrun / SLURM variables: every test is a single-process launch."""
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def invoke(*args):
    """(exit code, stdout, stderr) of train.py run in-process."""
    result = CliRunner().invoke(train.main, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def base_args(data, outdir, *extra):
    """The required options for the tiny-cpu preset, plus `extra`."""
    return ['--outdir', outdir, '--cfg', 'tiny-cpu', '--data', data[0], '--seg-data', data[1], *extra]


def dry_run(data, outdir, *extra):
    """The JSON that --dry-run prints (asserts success)."""
    code, out, err = invoke(*base_args(data, outdir, '--dry-run', *extra))
    assert code == 0, err
    return json.loads(out)


def test_dry_run_prints_the_resolved_config_and_writes_nothing(data, tmp_path):
    outdir = tmp_path / 'runs'
    report = dry_run(data, outdir)
    preset = dataclasses.asdict(with_network_defaults(get_training_preset('tiny-cpu')))   # resolved
    expected = dict(preset, outdir=str(outdir), data=data[0], seg_data=data[1], metrics=list(preset['metrics']))
    assert report['options'] == expected
    assert report['derived'] == dict(world_size=1, batch_gpu=4, accumulation=1, ema_kimg=1.25, blur_fade_kimg=2.0)
    assert report['launch']['kind'] == 'single' and report['device'] == 'cpu'
    assert report['dataset']['images'] == 4 and report['dataset']['items'] == 8      # mirrored
    assert report['run_dir'] == str(outdir / '00000-tiny-cpu-images-gpus1-batch4-gamma1')
    assert not outdir.exists()


@pytest.mark.parametrize('original, dashed', [
    (['--gamma_seg=3'], ['--gamma-seg=3']),
    (['--triplane_depth', '2'], ['--triplane-depth', '2']),
    (['--neural_rendering_resolution_initial=8'], ['--neural-rendering-resolution-initial=8']),
    (['--use_torgb_raw=0', '--train_g_pose_branch=False'], ['--use-torgb-raw=0', '--train-g-pose-branch=False']),
    (['--metric_pose_sample_mode', 'D_predict', '--reg_type=monotonic-fixed'],
     ['--metric-pose-sample-mode', 'D_predict', '--reg-type=monotonic-fixed']),
    (['--resume_kimg=0', '--density_noise_fade_kimg=5'], ['--resume-kimg=0', '--density-noise-fade-kimg=5'])])
def test_hidden_underscore_aliases_equal_the_dashed_form(data, tmp_path, original, dashed):
    via_alias, via_dashed = dry_run(data, tmp_path, *original), dry_run(data, tmp_path, *dashed)
    assert via_alias['options'] == via_dashed['options']
    assert via_alias['options'] != dry_run(data, tmp_path)['options']            # the flag did something


def test_help_shows_dashed_names_only():
    code, out, _ = invoke('--help')
    assert code == 0
    assert '--gamma-seg' in out and '--neural-rendering-resolution-initial' in out and '--dry-run' in out
    assert '--gamma_seg' not in out and '--triplane_depth' not in out


def test_only_flags_given_override_the_preset(data, tmp_path):
    preset = get_training_preset('tiny-cpu')
    assert preset.tick != TrainingOptions().tick                        # tiny-cpu changes tick from the default
    options = dry_run(data, tmp_path, '--batch', 8, '--tick', TrainingOptions().tick, '--mirror=0')['options']
    assert options['batch'] == 8 and options['tick'] == TrainingOptions().tick and options['mirror'] is False
    assert options['kimg'] == preset.kimg and options['snap'] == preset.snap      # not given: the preset's


def test_value_syntax_of_booleans_optionals_and_lists(data, tmp_path):
    options = dry_run(data, tmp_path, '--bf16', '--compile=1', '--tf32=False', '--batch-gpu=none', '--ema-kimg', '2.5',
                      '--metrics', 'none')['options']
    assert (options['bf16'], options['compile'], options['tf32']) == (True, True, False)
    assert options['batch_gpu'] is None and options['ema_kimg'] == 2.5 and options['metrics'] == []
    assert dry_run(data, tmp_path, '--metrics', 'fid2k,kid2k')['options']['metrics'] == ['fid2k', 'kid2k']
    assert dry_run(data, tmp_path, '--metrics-num-gen', 500)['options']['metrics_num_gen'] == 500


def _garbage(path, content=b'not what you think'):
    """Write `content` to path; return it as str."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return str(path)


def _snapshot_512(path):
    """A network snapshot whose G makes 512x512 images (module entries without weights)."""
    entry = dict(class_name='x.G', init_args=[], init_kwargs=dict(img_resolution=512), state_dict={})
    torch.save(dict(G=entry, D=dict(entry, class_name='x.D'), format_version=1), path)
    return str(path)


def _state(path, **changes):
    """A training state saved by a tiny-cpu run with `changes` to its options."""
    path.parent.mkdir(parents=True, exist_ok=True)
    opts = dataclasses.replace(get_training_preset('tiny-cpu'), **changes)
    training_state.save_training_state(str(path), {}, {}, dict(cur_nimg=4000), opts)
    return str(path)


BAD_INPUTS = [   # (extra args or a function of (data, tmp_path) -> args, words the one-line error must contain)
    (lambda d, t: ['--data', str(t / 'missing.zip')], ['--data', 'missing.zip']),
    (lambda d, t: ['--data', _garbage(t / 'bad.zip')], ['--data', 'bad.zip', 'not a zip']),
    (lambda d, t: ['--network-preset', 'bench'], ['--data', '64x64', '128x128']),
    (lambda d, t: ['--seg-data', str(t / 'masks-missing.zip')], ['--seg-data', 'masks-missing.zip']),
    (lambda d, t: ['--batch', 6, '--batch-gpu', 4], ['--batch=6', '--batch-gpu=4']),
    (lambda d, t: ['--batch', 5], ['--mbstd-group=2', 'batch 5']),
    (lambda d, t: ['--cfg', 'full-head'], ['preset', 'full-head', 'portrait-stage1', 'tiny-cpu']),
    (lambda d, t: ['--smpl-path', str(t / 'no-smpl')], ['--smpl-path', 'no-smpl', 'SMPL_NEUTRAL']),
    (lambda d, t: ['--smpl-path', _garbage(t / 'smpl' / 'SMPL_NEUTRAL.pkl')], ['--smpl-path', 'SMPL_NEUTRAL.pkl']),
    (lambda d, t: ['--resume', str(t / 'gone.pt')], ['--resume', 'gone.pt']),
    (lambda d, t: ['--resume', _garbage(t / 'broken.pt')], ['--resume', 'broken.pt']),
    (lambda d, t: ['--resume', _garbage(t / 'broken.pkl')], ['--resume', 'broken.pkl']),
    (lambda d, t: ['--resume', _snapshot_512(t / 'big.pkl')], ['--resume', 'big.pkl', '512x512']),
    (lambda d, t: ['--resume', _state(t / 'old' / 'training-state-000004.pt', train_g_pose_branch=False)],
     ['--resume', 'training-state-000004.pt', '--train-g-pose-branch']),
    (lambda d, t: ['--resume', _state(t / 'done' / 'training-state-000004.pt'), '--kimg', 4],
     ['--kimg=4', 'training-state-000004.pt', 'already at kimg 4']),
    (lambda d, t: ['--metrics', 'fid1m'], ['--metrics', 'fid1m', 'fid50k_full']),
    (lambda d, t: ['--metrics-num-gen', 1], ['--metrics-num-gen=1', '>= 2']),
    (lambda d, t: ['--device', 'tpu'], ['--device', 'tpu']),
    (lambda d, t: ['--gpc-reg-prob', 1.5], ['--gpc-reg-prob', '1.5']),
    (lambda d, t: ['--desc', 'a/b'], ['--desc', 'a/b']),
    (lambda d, t: ['--cfg', 'portrait-stage2', '--network-preset', 'tiny-cpu'], ['--resume-kimg=6000', '--resume']),
    (lambda d, t: ['--batch', 'abc'], ['--batch', 'abc']),
    (lambda d, t: ['--no-such-flag'], ['--no-such-flag']),
]


@pytest.mark.parametrize('case', range(len(BAD_INPUTS)))
def test_bad_input_is_one_line_and_creates_no_run_dir(data, tmp_path, case):
    make_args, words = BAD_INPUTS[case]
    outdir = tmp_path / 'runs'
    code, out, err = invoke(*base_args(data, outdir), *make_args(data, tmp_path))
    assert code != 0 and out == ''
    assert err.startswith('Error: ') and err.count('\n') == 1, err
    for word in words:
        assert word in err, err
    assert not outdir.exists()


def test_missing_required_option_is_one_line():
    code, _, err = invoke('--cfg', 'tiny-cpu', '--outdir', 'x')
    assert code == 2 and err.count('\n') == 1 and "'--data'" in err


def test_resume_auto_finds_the_newest_state(data, tmp_path):
    assert dry_run(data, tmp_path, '--resume', 'auto')['resume'] is None      # nothing yet: a fresh start
    _state(tmp_path / '00000-a' / 'training-state-000008.pt')
    newest = _state(tmp_path / '00001-b' / 'training-state-000004.pt')
    report = dry_run(data, tmp_path, '--resume=auto')
    assert report['resume'] == newest and report['options']['resume'] == newest


def test_runs_number_their_dirs_and_call_the_loop(data, tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr('training.training_loop.training_loop',
                        lambda opts, run_dir, ctx: calls.append((opts, run_dir, ctx.world_size)))
    outdir = tmp_path / 'runs'
    for extra in ([], ['--batch', 8], ['--desc', 'mine']):
        code, _, err = invoke(*base_args(data, outdir, *extra))
        assert code == 0, err
    names = ['00000-tiny-cpu-images-gpus1-batch4-gamma1', '00001-tiny-cpu-images-gpus1-batch8-gamma1', '00002-mine']
    assert sorted(os.listdir(outdir)) == names
    assert [os.path.basename(run_dir) for _, run_dir, _ in calls] == names
    assert calls[1][0].batch == 8 and calls[0][2] == 1
    code, _, _ = invoke(*base_args(data, outdir, '--metrics', 'nope'))
    assert code != 0 and sorted(os.listdir(outdir)) == names             # a failed check adds nothing

