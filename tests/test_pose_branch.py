"""G pose branch and D pose predictor (training/networks/pose_branch.py, system.md §4.1-4.2, §2.6)."""
import io
import math

import pytest
import torch

from torch_utils import persistence
from training.cameras import camera_vector, mirror_camera, mirror_pose
from training.networks.pose_branch import DPosePredictor, GPoseBranch

Z_DIM = 16


def random_cameras(n, seed=0):
    """n cameras [n, 25] all around the portrait sphere, |t_x| >= 0.01 (both sides of the boundary)."""
    gen = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(4 * n, generator=gen) * 2 - 1) * math.pi
    c = camera_vector(yaw, math.pi / 2 + (torch.rand(4 * n, generator=gen) - 0.5))
    return c[c[:, 3].abs() >= 1e-2][:n]


def _widths(module):
    mlp = module.mlp
    layers = [getattr(mlp, f'fc{i}') for i in range(mlp.num_layers)]
    return [layers[0].in_features] + [layer.out_features for layer in layers], [layer.activation for layer in layers]


def test_paper_widths():
    widths, acts = _widths(GPoseBranch(512))
    assert widths == [537, 128, 32, 6] and acts == ['lrelu', 'lrelu', 'linear']
    widths, acts = _widths(DPosePredictor(512 * 4 * 4))
    assert widths == [8217, 2048, 512, 128, 32, 6] and acts == ['lrelu'] * 4 + ['linear']


def test_g_branch_shapes_and_gradients():
    torch.manual_seed(0)
    P = GPoseBranch(Z_DIM)
    z, c = torch.randn(8, Z_DIM), random_cameras(8)
    pose = P(z, c)
    assert pose.shape == (8, 6) and pose.dtype == torch.float32
    pose.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in P.parameters())


def test_g_branch_is_mirror_equivariant_and_z_is_not_mirrored():
    torch.manual_seed(0)
    P = GPoseBranch(Z_DIM, hidden_features=(32, 16))
    z, c = torch.randn(64, Z_DIM), random_cameras(64, seed=3)
    pose = P(z, c)
    torch.testing.assert_close(P(z, mirror_camera(c)), mirror_pose(pose), rtol=0, atol=1e-5)
    right = c[:, 3] < 0
    plain = P.mlp(torch.cat([z, c], dim=1))             # right cameras pass through unchanged
    torch.testing.assert_close(pose[right], plain[right], rtol=0, atol=0)
    torch.testing.assert_close(pose[~right], mirror_pose(P.mlp(torch.cat([z, mirror_camera(c)], dim=1)))[~right],
                               rtol=0, atol=0)


def test_g_branch_unconditional_z():
    P = GPoseBranch(0, hidden_features=(8,))
    c = random_cameras(4)
    assert P(torch.zeros(4, 0), c).shape == (4, 6)


def test_d_predictor_shapes_and_frame():
    torch.manual_seed(0)
    P = DPosePredictor(32, hidden_features=(16, 8))
    features, c = torch.randn(4, 32), random_cameras(4)
    pose = P(features, c)
    assert pose.shape == (4, 6)
    torch.testing.assert_close(pose, P.mlp(torch.cat([features, c], dim=1)), rtol=0, atol=0)


@pytest.mark.parametrize('z_shape,c_shape,pattern', [
    ((4, Z_DIM + 1), (4, 25), r'z: expected shape \[N, 16\]'),
    ((4, Z_DIM), (4, 31), r'c: expected shape \[4, 25\]'),
    ((4, Z_DIM), (3, 25), r'c: expected shape \[4, 25\]'),
])
def test_g_branch_bad_shapes(z_shape, c_shape, pattern):
    with pytest.raises(ValueError, match=pattern):
        GPoseBranch(Z_DIM, hidden_features=(8,))(torch.zeros(z_shape), torch.zeros(c_shape))


def test_d_predictor_bad_shapes():
    P = DPosePredictor(32, hidden_features=(8,))
    with pytest.raises(ValueError, match=r'features: expected shape \[N, 32\]'):
        P(torch.zeros(2, 31), torch.zeros(2, 25))
    with pytest.raises(ValueError, match=r'c: expected shape \[2, 25\]'):
        P(torch.zeros(2, 32), torch.zeros(2, 24))
    with pytest.raises(ValueError, match='hidden_features'):
        DPosePredictor(32, hidden_features=(8, 0))


def test_state_dict_round_trip():
    torch.manual_seed(0)
    P = GPoseBranch(Z_DIM, hidden_features=(32, 16))
    buffer = io.BytesIO()
    torch.save(persistence.module_to_dict(P), buffer)
    buffer.seek(0)
    clone = persistence.module_from_dict(torch.load(buffer, weights_only=True))
    z, c = torch.randn(4, Z_DIM), random_cameras(4)
    torch.testing.assert_close(clone(z, c), P(z, c), rtol=0, atol=0)
