"""metrics.pose_accuracy: rotation-angle errors against scipy and known rotations; pose_err_real/fake end to end
with stand-in networks whose errors are known exactly."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from metrics import pose_accuracy
from metrics.options import MetricOptions
from portrait_data.portrait import PortraitDataset
from metrics.pose_accuracy import pose_errors_deg, rotation_angle_deg, summarize
from metrics_testing import RecordingG, StandInD, synthetic_dataset
from torch_utils.distributed import DistContext

DELTA = np.radians([10.0, 0, 0, 0, 0, 25.0])        # neck: 10 deg about x, head: 25 deg about z


@pytest.fixture(scope='module')
def dataset_kwargs(tmp_path_factory):
    return synthetic_dataset(tmp_path_factory.mktemp('synthetic'), count=6)


@pytest.mark.parametrize('degrees', [0.0, 1e-4, 0.5, 30.0, 90.0, 179.0])
def test_known_angle_about_an_axis(degrees):
    axis = np.array([1.0, -2.0, 0.5]) / np.linalg.norm([1.0, -2.0, 0.5])
    true = axis * math.radians(degrees)
    assert rotation_angle_deg(np.zeros(3), true) == pytest.approx(degrees, rel=1e-9, abs=1e-12)
    base = np.array([0.2, 0.1, -0.4])
    composed = (Rotation.from_rotvec(base) * Rotation.from_rotvec(true)).as_rotvec()
    assert rotation_angle_deg(base, composed) == pytest.approx(degrees, rel=1e-7, abs=1e-9)


def test_random_pairs_match_scipy():
    rng = np.random.default_rng(0)
    pred, true = rng.normal(size=(200, 3)) * 1.5, rng.normal(size=(200, 3)) * 1.5
    expected = np.degrees((Rotation.from_rotvec(pred).inv() * Rotation.from_rotvec(true)).magnitude())
    np.testing.assert_allclose(rotation_angle_deg(pred, true), expected, rtol=1e-9, atol=1e-9)


def test_same_rotation_written_two_ways_has_no_error():
    """theta about n and (theta - 360 deg) about n are one rotation."""
    n = np.array([0.0, 0.6, 0.8])
    assert rotation_angle_deg(n * math.radians(200), n * math.radians(-160)) == pytest.approx(0, abs=1e-9)


def test_per_joint_errors_and_summary():
    true = torch.zeros(2, 6)
    pred = torch.tensor([[math.radians(10), 0, 0, 0, math.radians(30), 0],
                         [0, 0, math.radians(20), 0, 0, 0]])
    errors = pose_errors_deg(pred, true)
    np.testing.assert_allclose(errors.numpy(), [[10, 30], [20, 0]], atol=1e-5)
    results = summarize('pose_err_x', errors)
    assert results == pytest.approx({'pose_err_x': 15.0, 'pose_err_x_neck': 15.0, 'pose_err_x_head': 15.0}, abs=1e-5)


def _options(G, D, dataset_kwargs, **kwargs):
    return MetricOptions(G=G, D=D, dataset_kwargs=dataset_kwargs, ctx=DistContext.single('cpu'), **kwargs)


def test_pose_err_real_with_known_predictor_errors(dataset_kwargs):
    D = StandInD(dataset_kwargs, real_delta=DELTA)
    opts = _options(RecordingG(), D, dataset_kwargs, batch_size=4,
                    pose_predict_kwargs=dict(blur_sigma=0.7, neural_rendering_resolution=8))
    results = pose_accuracy.pose_err_real(opts)
    assert results == pytest.approx({'pose_err_real': 17.5, 'pose_err_real_neck': 10.0, 'pose_err_real_head': 25.0},
                                    abs=1e-3)
    first, last = D.calls_of('real')                # 6 reals (no x-flip) in batches of 4, the last one padded
    assert len(first['c']) == len(last['c']) == 4 and torch.equal(last['c'][2:], last['c'][:2])
    img = D.calls[0]['img']
    image, mask = PortraitDataset(**dataset_kwargs)[0][:2]
    assert torch.equal(img['image'][0], torch.from_numpy(image).float() / 127.5 - 1)     # reals as in training
    assert img['image_raw'].shape == (4, 3, 8, 8) and img['image_mask'].shape == (4, 1, 8, 8)
    assert float(img['image_mask'][0].mean()) == pytest.approx(mask.mean() / 255, abs=0.02)   # mask in [0, 1]
    assert all(call['blur_sigma'] == 0.7 for call in D.calls)


def test_pose_err_real_caps_the_real_set(dataset_kwargs):
    D = StandInD(dataset_kwargs, real_delta=DELTA)
    pose_accuracy.pose_err_real(_options(RecordingG(), D, dataset_kwargs), max_items=3)
    (call,) = D.calls
    assert len(call['c']) == 8 and torch.equal(call['c'][3:6], call['c'][:3])    # 3 reals padded to a batch of 8


@pytest.mark.parametrize('mode', ['G_predict', 'D_predict'])
def test_pose_err_fake_compares_with_the_rendering_pose(dataset_kwargs, mode):
    D = StandInD(dataset_kwargs, fake_delta=DELTA)
    opts = _options(RecordingG(), D, dataset_kwargs, batch_size=4, num_gen=10, pose_sample_mode=mode)
    results = pose_accuracy.pose_err_fake(opts)
    assert results == pytest.approx({'pose_err_fake': 17.5, 'pose_err_fake_neck': 10.0, 'pose_err_fake_head': 25.0},
                                    abs=1e-3)
    assert [len(call['c']) for call in D.calls_of('fake')] == [4, 4, 4]         # 10 fakes, the last batch padded
    assert len(D.calls_of('real')) == (3 if mode == 'D_predict' else 0)    # D_predict: D on one real batch per batch
