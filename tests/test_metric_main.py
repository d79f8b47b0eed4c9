"""metrics.metric_main: the registry, calc_metric's FID/KID wiring against an independent NumPy computation with
the stand-in detector, one-line errors, and report_metric's JSONL lines."""
import json
import os

import numpy as np
import pytest

from metrics import fid, kid, metric_main
from metrics.detector import DETECTOR_ENV_VAR
from metrics.generation import GenerationOptions, generate_batch, to_uint8
from metrics.real_data import MetricInputError
from metrics.standin_detector import save_standin_detector
from metrics_testing import RecordingG, StandInD, standin_features_numpy, synthetic_dataset
from portrait_data.portrait import PortraitDataset
from torch_utils.distributed import DistContext

CTX = DistContext.single('cpu')


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp('metric_main')
    return synthetic_dataset(folder, count=6), save_standin_detector(folder / 'standin-detector.pt')


@pytest.fixture(autouse=True)
def private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.delenv(DETECTOR_ENV_VAR, raising=False)


def test_registry_lists_the_metrics():
    names = metric_main.list_valid_metrics()
    for name in ('fid50k_full', 'kid50k_full', 'fid2k', 'kid2k', 'fid10k_full', 'pose_err_real', 'pose_err_fake'):
        assert name in names and metric_main.is_valid_metric(name)
    assert not metric_main.is_valid_metric('fid51k')
    assert metric_main.DETECTOR_METRICS == {name for name in names if not name.startswith('pose_err')}


def test_unknown_metric_is_one_line_listing_the_known_ones(setup):
    with pytest.raises(MetricInputError) as info:
        metric_main.calc_metric('fid51k', G=RecordingG(), D=None, dataset_kwargs=setup[0], ctx=CTX)
    message = str(info.value)
    assert '\n' not in message and "'fid51k'" in message and 'fid50k_full' in message and 'pose_err_real' in message


def _fake_features(dataset, num_gen, batch_size):
    """Stand-in features (NumPy) of the fakes that calc_metric renders (same batches and seeds)."""
    images = [to_uint8(generate_batch(RecordingG(), None, dataset, j, min(batch_size, num_gen - start),
                                      GenerationOptions(), 'cpu')['image']).numpy()
              for j, start in enumerate(range(0, num_gen, batch_size))]
    return standin_features_numpy(np.concatenate(images))


def _real_features(dataset):
    return standin_features_numpy(np.stack([dataset[i][0] for i in range(len(dataset))]))


def test_fid_and_kid_match_an_independent_computation(setup, tmp_path):
    dataset_kwargs, detector = setup
    common = dict(G=RecordingG(), D=None, dataset_kwargs=dataset_kwargs, ctx=CTX, detector=detector, num_gen=7,
                  batch_size=3)
    result = metric_main.calc_metric('fid2k', **common)
    flipped = PortraitDataset(**dataset_kwargs, xflip=True)                  # FID: x-flipped reals (12 items)
    expected = fid.fid_from_features(_real_features(flipped), _fake_features(flipped, 7, 3))
    assert result['results']['fid2k'] == pytest.approx(expected, rel=1e-5)
    assert result['metric'] == 'fid2k' and result['num_gpus'] == 1 and result['detector'] == 'standin-detector'
    assert result['num_gen'] == 7 and result['pose_sample_mode'] == 'G_predict' and result['identical_c_p'] is True
    assert len(os.listdir(tmp_path / 'cache' / 'gan-metrics')) == 1          # real features cached
    assert metric_main.calc_metric('fid2k', **common)['results'] == result['results']
    plain = PortraitDataset(**dataset_kwargs)                                 # KID: reals without x-flip
    expected = kid.kernel_inception_distance(_real_features(plain), _fake_features(plain, 7, 3))
    assert metric_main.calc_metric('kid2k', **common)['results']['kid2k'] == pytest.approx(expected, rel=1e-4)
    assert len(os.listdir(tmp_path / 'cache' / 'gan-metrics')) == 2


@pytest.mark.parametrize('G, D, metric, expected', [
    (object(), None, 'pose_err_real', 'G: expected a portrait generator'),
    ('G', None, 'pose_err_real', 'needed by pose_err_real'),
    ('G', 'D', 'fid2k', 'pose_sample_mode'),
])
def test_bad_networks_and_options_are_one_line(setup, G, D, metric, expected):
    dataset_kwargs, detector = setup
    G = RecordingG() if G == 'G' else G
    D = StandInD(dataset_kwargs) if D == 'D' else D
    mode = 'nonsense' if metric == 'fid2k' else 'G_predict'
    with pytest.raises(MetricInputError, match=expected) as info:
        metric_main.calc_metric(metric, G=G, D=D, dataset_kwargs=dataset_kwargs, ctx=CTX, detector=detector,
                                pose_sample_mode=mode)
    assert '\n' not in str(info.value)


def test_dataset_resolution_must_match(setup):
    with pytest.raises(MetricInputError, match=r'32x32 but the generator renders 64x64') as info:
        metric_main.calc_metric('pose_err_real', G=RecordingG(img_resolution=64), D=StandInD(setup[0]),
                                dataset_kwargs=setup[0], ctx=CTX)
    assert '\n' not in str(info.value)
    with pytest.raises(MetricInputError, match='unknown keys'):
        metric_main.calc_metric('pose_err_real', G=RecordingG(), D=StandInD(setup[0]),
                                dataset_kwargs=dict(setup[0], use_labels=True), ctx=CTX)


def test_report_metric_appends_lines(tmp_path):
    result = dict(results=dict(fid2k=3.5), metric='fid2k', total_time=1.0, num_gpus=1)
    snapshot = str(tmp_path / 'network-snapshot-000040.pkl')
    metric_main.report_metric(result, str(tmp_path), snapshot)
    metric_main.report_metric(dict(result, results=dict(fid2k=2.5)), str(tmp_path), snapshot)
    lines = [json.loads(line) for line in (tmp_path / 'metric-fid2k.jsonl').read_text().splitlines()]
    assert [line['results']['fid2k'] for line in lines] == [3.5, 2.5]
    assert lines[0]['snapshot_pkl'] == 'network-snapshot-000040.pkl' and 'timestamp' in lines[0]
    metric_main.report_metric(result, None, snapshot)                         # no run dir: nothing written
    assert os.listdir(tmp_path) == ['metric-fid2k.jsonl']
