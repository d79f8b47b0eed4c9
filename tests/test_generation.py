"""metrics.generation: which z, camera and pose reach G's pose branch, mapping and synthesis in each mode."""
import numpy as np
import pytest
import torch

from metrics.generation import GenerationOptions, generate_batch, predict_pose_padded, to_uint8
from metrics.real_data import MetricInputError
from metrics_testing import RecordingG, StandInD, synthetic_dataset
from portrait_data.portrait import PortraitDataset


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    kwargs = synthetic_dataset(tmp_path_factory.mktemp('synthetic'), count=6)
    dataset = PortraitDataset(**kwargs, xflip=True)
    cameras = {dataset.get_label(i).tobytes(): dataset.get_pose(i) for i in range(len(dataset))}
    return kwargs, dataset, cameras


def _generate(G, D, dataset, **options):
    return generate_batch(G, D, dataset, 3, 5, GenerationOptions(**options), 'cpu')


def _is_dataset_camera(c, cameras):
    return all(row.numpy().astype(np.float32).tobytes() in cameras for row in c)


def test_G_predict_renders_the_pose_of_the_same_z(data):
    _, dataset, cameras = data
    G = RecordingG()
    out = _generate(G, None, dataset)
    (branch,), (mapping,), (synthesis,) = G.calls_of('get_pose_params'), G.calls_of('mapping'), G.calls_of('synthesis')
    assert torch.equal(branch['z'], mapping['z'])                          # system.md §12 item 4 fixed
    assert _is_dataset_camera(synthesis['c'], cameras)
    expected_pose = 0.3 * torch.tanh(branch['z'][:, :6] + synthesis['c'][:, 3:9])
    assert torch.allclose(synthesis['pose_params'], expected_pose)
    assert torch.equal(mapping['c'], synthesis['c']) and torch.equal(mapping['pose_params'], synthesis['pose_params'])
    assert torch.equal(out['c'], synthesis['c']) and torch.equal(out['pose'], synthesis['pose_params'])
    assert out['image'].shape == (5, 3, 32, 32)


def test_independent_conditioning_uses_another_item_with_the_same_rule(data):
    _, dataset, cameras = data
    G = RecordingG()
    _generate(G, None, dataset, identical_c_p=False)
    render, cond = G.calls_of('get_pose_params')
    (mapping,), (synthesis,) = G.calls_of('mapping'), G.calls_of('synthesis')
    assert torch.equal(render['z'], cond['z']) and torch.equal(render['c'], synthesis['c'])
    assert torch.equal(mapping['c'], cond['c']) and _is_dataset_camera(cond['c'], cameras)
    assert not torch.equal(mapping['c'], synthesis['c'])
    assert torch.allclose(mapping['pose_params'], 0.3 * torch.tanh(cond['z'][:, :6] + cond['c'][:, 3:9]))
    same = RecordingG()
    _generate(same, None, dataset, identical_c_p=True)                     # on/off share z and the rendered items
    assert torch.equal(same.calls_of('synthesis')[0]['c'], synthesis['c'])


def test_D_predict_renders_D_poses_of_real_images(data):
    kwargs, dataset, cameras = data
    G, D = RecordingG(), StandInD(kwargs)
    out = _generate(G, D, dataset, pose_sample_mode='D_predict', blur_sigma=0.5, neural_rendering_resolution=8)
    assert not G.calls_of('get_pose_params')
    (real_call,) = D.calls_of('real')
    assert real_call['blur_sigma'] == 0.5 and real_call['img']['image_raw'].shape == (8, 3, 8, 8)   # 5 padded to 8
    (synthesis,) = G.calls_of('synthesis')
    expected = np.stack([cameras[row.numpy().astype(np.float32).tobytes()] for row in synthesis['c']])
    np.testing.assert_allclose(synthesis['pose_params'].numpy(), expected, atol=1e-6)
    assert torch.equal(out['pose'], synthesis['pose_params'])


def test_batches_are_a_function_of_seed_and_index(data):
    _, dataset, _ = data
    first, again, other = RecordingG(), RecordingG(), RecordingG()
    generate_batch(first, None, dataset, 4, 3, GenerationOptions(seed=1), 'cpu')
    generate_batch(again, None, dataset, 4, 3, GenerationOptions(seed=1), 'cpu')
    generate_batch(other, None, dataset, 5, 3, GenerationOptions(seed=1), 'cpu')
    z = [g.calls_of('mapping')[0]['z'] for g in (first, again, other)]
    assert torch.equal(z[0], z[1]) and not torch.equal(z[0], z[2])


def test_to_uint8_and_bad_mode():
    images = torch.tensor([-1.5, -1.0, 0.0, 0.999, 1.0])
    assert to_uint8(images).tolist() == [0, 0, 128, 255, 255]
    with pytest.raises(MetricInputError, match='pose_sample_mode'):
        GenerationOptions(pose_sample_mode='random')


class FullBatchD:
    """predict_pose = c[:, :6] + batch mean of c[:, :6] (a batch statistic, like minibatch std); needs 4 | N."""

    def predict_pose(self, img, c, blur_sigma=0):
        assert c.shape[0] % 4 == 0 and img['image'].shape[0] == c.shape[0]
        return c[:, :6] + c[:, :6].mean(dim=0)


def test_partial_batches_are_padded_cyclically_for_D():
    c = torch.arange(3 * 25, dtype=torch.float32).view(3, 25)
    img = dict(image=torch.zeros(3, 3, 4, 4))
    pose = predict_pose_padded(FullBatchD(), img, c, 0.0, batch_size=8)
    padded = c[torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])]
    assert torch.equal(pose, c[:, :6] + padded[:, :6].mean(dim=0))
