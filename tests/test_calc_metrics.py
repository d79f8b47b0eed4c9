"""calc_metrics.py end to end on a random tiny-cpu snapshot, a tiny synthetic dataset and the STAND-IN detector
(tests/standin_detector.py, not Inception): JSON lines, metric-*.jsonl, and one-line errors for bad input."""
import json
import math
import os

import pytest
import torch
from click.testing import CliRunner

import calc_metrics
import dnnlib
from configs import presets
from metrics.detector import DETECTOR_ENV_VAR
from metrics_testing import synthetic_dataset
from metrics.standin_detector import save_standin_detector
from torch_utils import checkpoint
from training.networks.mapping import MappingNetwork

METRICS = ('fid2k', 'kid2k', 'pose_err_real', 'pose_err_fake')


def _networks(seed=0):
    """Random tiny-cpu G and D (procedural body), as scripts/make_random_network.py builds them."""
    preset = presets.get_preset('tiny-cpu')
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(**preset.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**preset.D_kwargs())
    return G, D, dict(blur_sigma=0.0, neural_rendering_resolution=preset.neural_rendering_resolution)


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    """{data, data32, detector, snapshot (records the training set), bare (G only), wrong (not a generator)}."""
    root = tmp_path_factory.mktemp('calc_metrics')
    data = synthetic_dataset(root / 'data', count=6, resolution=64)
    G, D, pose_predict_kwargs = _networks()
    paths = dict(data=data, data32=synthetic_dataset(root / 'data32', count=2, resolution=32),
                 detector=save_standin_detector(root / 'standin-detector.pt'))
    for name, modules, extras in [
            ('snapshot', dict(G=G, D=D, G_ema=G, D_ema=D), dict(training_set_kwargs=data,
                                                                pose_predict_kwargs=pose_predict_kwargs)),
            ('bare', dict(G=G, G_ema=G), dict(training_set_kwargs=None)),
            ('wrong', dict(G_ema=MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=2)), {})]:
        (root / name).mkdir()
        paths[name] = str(root / name / 'network-snapshot-000000.pkl')
        checkpoint.save_network_snapshot(paths[name], modules, extras)
    return paths


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv(DETECTOR_ENV_VAR, raising=False)


def _run(*args):
    result = CliRunner().invoke(calc_metrics.main, [str(a) for a in args] + ['--device', 'cpu'],
                                catch_exceptions=False)
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith('{')]
    return result.exit_code, lines, result.output


def _jsonl(snapshot, metric):
    path = os.path.join(os.path.dirname(snapshot), f'metric-{metric}.jsonl')
    return [json.loads(line) for line in open(path, encoding='utf-8')]


@pytest.mark.slow
def test_prints_and_records_every_metric(world):
    args = ('--network', world['snapshot'], '--metrics', ','.join(METRICS), '--num-gen', 8,
            '--detector', world['detector'])
    code, lines, output = _run(*args)
    assert code == 0, output
    assert [line['metric'] for line in lines] == list(METRICS)
    for line in lines:
        assert line['num_gen'] == 8 and line['num_gpus'] == 1 and line['identical_c_p'] is True
        assert all(math.isfinite(value) for value in line['results'].values())
    assert set(lines[2]['results']) == {'pose_err_real', 'pose_err_real_neck', 'pose_err_real_head'}
    assert 0 <= lines[2]['results']['pose_err_real'] <= 180 and lines[0]['results']['fid2k'] >= 0
    assert lines[0]['detector'] == 'standin-detector' and lines[2]['detector'] is None
    code, again, output = _run(*args)                       # deterministic; a second run appends, loses nothing
    assert code == 0, output
    for metric, first, second in zip(METRICS, lines, again):
        recorded = _jsonl(world['snapshot'], metric)
        assert [r['results'] for r in recorded] == [first['results'], second['results']]
        assert first['results'] == pytest.approx(second['results'], rel=1e-6)
        assert recorded[0]['snapshot_pkl'] == 'network-snapshot-000000.pkl'


@pytest.mark.slow
def test_D_predict_with_independent_conditioning_and_original_spellings(world):
    code, lines, output = _run('--network', world['snapshot'], '--metrics', 'pose_err_fake', '--num-gen', 4,
                               '--data', world['data']['path'], '--seg_data', world['data']['mask_path'],
                               '--metric_pose_sample_mode', 'D_predict', '--identical_c_p', 'false')
    assert code == 0, output
    (line,) = lines
    assert line['pose_sample_mode'] == 'D_predict' and line['identical_c_p'] is False
    assert 0 <= line['results']['pose_err_fake'] <= 180


def _error(*args):
    code, lines, output = _run(*args)
    assert code != 0 and not lines
    errors = [line for line in output.splitlines() if line.startswith('Error')]
    assert len(errors) == 1, output
    return errors[0]


def test_bad_inputs_are_one_line_each(world, tmp_path, monkeypatch):
    snap, detector = world['snapshot'], world['detector']
    assert 'known metrics: fid50k_full' in _error('--network', snap, '--metrics', 'fid2k,fid51k')
    assert 'is not a portrait generator' in _error('--network', world['wrong'], '--metrics', 'pose_err_real',
                                                   '--data', world['data']['path'])
    assert '--network' in _error('--network', world['data']['path'], '--metrics', 'fid2k')
    assert 'D_ema is missing; pose_err_real needs it' in _error('--network', world['bare'], '--metrics',
                                                                'pose_err_real', '--data', world['data']['path'])
    assert 'records no training set' in _error('--network', world['bare'], '--metrics', 'fid2k')
    assert '32x32 but the generator renders 64x64' in _error('--network', snap, '--metrics', 'fid2k',
                                                             '--data', world['data32']['path'], '--detector', detector)
    monkeypatch.setenv(DETECTOR_ENV_VAR, str(tmp_path / 'missing.pt'))
    message = _error('--network', snap, '--metrics', 'pose_err_real,fid2k')
    assert 'missing.pt' in message and '--detector PATH' in message
    assert not any(name.startswith('metric-') for name in os.listdir(os.path.dirname(world['bare'])))


@pytest.mark.slow
def test_two_processes_give_the_single_process_numbers(world, tmp_path):
    args = ('--metrics', 'fid2k,pose_err_real,pose_err_fake', '--num-gen', 16, '--detector', world['detector'])
    code, single, output = _run('--network', world['snapshot'], *args)
    assert code == 0, output
    code, double, output = _run('--network', world['snapshot'], *args, '--gpus', 2)
    assert code == 0, output
    for one, two in zip(single, double):
        assert two['num_gpus'] == 2
        assert two['results'] == pytest.approx(one['results'], rel=1e-3)    # thread counts change float rounding
