"""Tri-grid lookup and canonical crop (training/rendering/planes.py, trigrid_gather.py)."""
import numpy as np
import pytest
import torch

from training.rendering import trigrid_cpp
from training.rendering.planes import TriGridSampler, crop_outside, resolve_sampler, sample_trigrid

IMPLS = ['grid_sample', 'gather', 'cpp']
BASE_POINT = torch.tensor([0.05, -0.1, 0.15], dtype=torch.float64)


def ramp_planes(plane, along, depth=1, size=(8, 10)):
    """Planes [1, 3, 2*D, H, W] that are zero except a ramp in `plane` along 'W', 'H' or 'D'."""
    h, w = size
    planes = torch.zeros(1, 3, 2, depth, h, w, dtype=torch.float64)
    ramp = {'W': torch.arange(w).expand(depth, h, w), 'H': torch.arange(h)[:, None].expand(depth, h, w),
            'D': torch.arange(depth)[:, None, None].expand(depth, h, w)}[along]
    planes[0, plane] = ramp.to(torch.float64)
    return planes.reshape(1, 3, 2 * depth, h, w)


def varying_axes(planes, depth, impl):
    """World axes (0 = x, 1 = y, 2 = z) along which the sampled feature changes around BASE_POINT."""
    axes = set()
    for axis in range(3):
        points = BASE_POINT.repeat(7, 1)
        points[:, axis] += torch.linspace(-0.15, 0.15, 7, dtype=torch.float64)   # stay between texel centres
        features = sample_trigrid(planes, points[None], depth, box_warp=1.0, impl=impl)
        if (features.max() - features.min()).item() > 1e-9:
            axes.add(axis)
    return axes


@pytest.mark.parametrize('impl', IMPLS)
def test_plane_axes_regression(impl):
    """Corrected axes (EG3D issue #67): plane 0 = (x, y | z), plane 1 = (x, z | y), plane 2 = (y, z | x)."""
    expected = {(0, 'W'): {0}, (0, 'H'): {1}, (1, 'W'): {0}, (1, 'H'): {2}, (2, 'W'): {1}, (2, 'H'): {2}}
    for (plane, along), axes in expected.items():
        assert varying_axes(ramp_planes(plane, along), 1, impl) == axes, (plane, along)
    for plane, axis in [(0, 2), (1, 1), (2, 0)]:
        assert varying_axes(ramp_planes(plane, 'D', depth=3), 3, impl) == {axis}, plane


@pytest.mark.parametrize('impl', IMPLS)
def test_texel_centre_value_and_box_warp(impl):
    planes = torch.zeros(1, 3, 1, 8, 10, dtype=torch.float64)
    planes[0, 0, 0, 2, 5] = 3.0                                   # plane 0: W <- x, H <- y
    box_warp = 0.8
    x, y = ((2 * 5 + 1) / 10 - 1) * box_warp / 2, ((2 * 2 + 1) / 8 - 1) * box_warp / 2
    points = torch.tensor([[[x, y, 0.37]]], dtype=torch.float64)
    assert sample_trigrid(planes, points, 1, box_warp, impl).item() == pytest.approx(1.0)   # mean of 3 planes


def numpy_triplane(planes, points):
    """Independent bilinear tri-plane lookup (align_corners=False, zero padding), mean over planes."""
    _, _, c, h, w = planes.shape
    out = np.zeros((points.shape[0], c))
    for k, (ax_w, ax_h) in enumerate([(0, 1), (0, 2), (1, 2)]):
        for p, point in enumerate(points * 2):
            fx, fy = ((point[ax_w] + 1) * w - 1) / 2, ((point[ax_h] + 1) * h - 1) / 2
            x0, y0 = int(np.floor(fx)), int(np.floor(fy))
            for dy in (0, 1):
                for dx in (0, 1):
                    xi, yi = x0 + dx, y0 + dy
                    if 0 <= xi < w and 0 <= yi < h:
                        weight = (1 - abs(fx - xi)) * (1 - abs(fy - yi))
                        out[p] += weight * planes[0, k, :, yi, xi] / 3
    return out


@pytest.mark.parametrize('impl', IMPLS)
def test_triplane_matches_numpy_and_ignores_plane_normal(impl):
    g = torch.Generator().manual_seed(0)
    planes = torch.randn(1, 3, 4, 6, 9, generator=g, dtype=torch.float64)
    points = (torch.rand(50, 3, generator=g, dtype=torch.float64) - 0.5) * 1.2
    features = sample_trigrid(planes, points[None], 1, 1.0, impl)[0]
    np.testing.assert_allclose(features.numpy(), numpy_triplane(planes.numpy(), points.numpy()), atol=1e-12)
    only_plane0 = planes.clone()
    only_plane0[0, 1:] = 0
    near, far = BASE_POINT.clone(), BASE_POINT.clone()
    near[2], far[2] = -0.49, 0.49                                 # move along plane 0's normal, to the box faces
    both = sample_trigrid(only_plane0, torch.stack([near, far])[None], 1, 1.0, impl)
    torch.testing.assert_close(both[0, 0], both[0, 1])


@pytest.mark.parametrize('depth', [1, 2, 3])
@pytest.mark.parametrize('n_points', [30, 600])     # plane gradient: corner by corner / folded (table has 702 D rows)
def test_samplers_match_grid_sample_values_and_gradients(depth, n_points):
    g = torch.Generator().manual_seed(depth)
    planes = torch.randn(2, 3, 5 * depth, 7, 11, generator=g, dtype=torch.float64, requires_grad=True)
    points = ((torch.rand(2, n_points, 3, generator=g, dtype=torch.float64) - 0.5) * 1.3).requires_grad_()
    grad_out = torch.randn(2, n_points, 5, generator=g, dtype=torch.float64)
    results = []
    for impl in IMPLS:
        features = sample_trigrid(planes, points, depth, 1.0, impl)
        results.append((features, *torch.autograd.grad(features, (planes, points), grad_out)))
    for fast in results[1:]:
        for a, e in zip(fast, results[0]):
            torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    assert results[0][2].abs().max() > 1    # the point gradient is exercised


def test_gather_float32_and_single_input_gradients():
    g = torch.Generator().manual_seed(5)
    planes = torch.randn(1, 3, 32 * 3, 16, 16, generator=g)
    points = (torch.rand(1, 300, 3, generator=g) - 0.5)
    reference = sample_trigrid(planes, points, 3, 1.0, 'grid_sample')
    torch.testing.assert_close(sample_trigrid(planes, points, 3, 1.0, 'gather'), reference, rtol=1e-5, atol=1e-5)
    for leaf in (planes, points):
        leaf = leaf.clone().requires_grad_()
        args = (leaf, points) if leaf.shape == planes.shape else (planes, leaf)
        sample_trigrid(*args, 3, 1.0, 'gather').sum().backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad).all()


def test_sampler_reuses_one_preparation_for_several_calls():
    planes = torch.randn(1, 3, 6, 8, 8, dtype=torch.float64)
    sampler = TriGridSampler(planes, 3, 1.0, 'gather')
    for seed in range(2):
        points = torch.rand(1, 20, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) - 0.5
        torch.testing.assert_close(sampler(points), sample_trigrid(planes, points, 3, 1.0, 'grid_sample'))


def test_crop_masks_x_and_z_only():
    points = torch.tensor([[[0.39, 5.0, -0.39], [0.41, 0.0, 0.0], [0.0, 0.0, -0.41], [-0.41, 0.0, 0.0],
                            [0.4, -3.0, 0.4]]])
    assert crop_outside(points, 0.4)[0, :, 0].tolist() == [False, True, True, True, False]


def test_resolve_sampler(monkeypatch):
    planes = torch.zeros(2, 3, 3 * 4, 16, 16)
    texels = 16 * 16 * 3
    monkeypatch.setattr(trigrid_cpp, 'available', lambda device: False)      # no compiled kernel
    assert resolve_sampler('auto', planes, texels, 3) == 'gather'
    assert resolve_sampler('auto', planes, texels // 10, 3) == 'grid_sample'
    assert resolve_sampler('auto', planes, 100 * texels, 1) == 'grid_sample'
    assert resolve_sampler('cpp', planes, texels, 3) == 'gather'              # falls back like 'auto'
    monkeypatch.setattr(trigrid_cpp, 'available', lambda device: device == 'cpu')
    for n_points, depth in ((texels, 3), (16, 3), (100 * texels, 1), (16, 1)):    # H W / 16 = 16 points and more
        assert resolve_sampler('auto', planes, n_points, depth) == 'cpp'
    assert resolve_sampler('auto', planes, 15, 3) == 'grid_sample'
    assert resolve_sampler('cpp', planes, 1, 3) == 'cpp'
    assert resolve_sampler('gather', planes, 1, 3) == 'gather'
    assert resolve_sampler('grid_sample', planes, 1, 3) == 'grid_sample'
    assert resolve_sampler('auto', planes.to('meta'), texels, 3) == 'grid_sample'   # other devices
    with pytest.raises(ValueError, match='sampler_impl'):
        resolve_sampler('fast', planes, 1, 3)
    with pytest.raises(ValueError, match="'cuda' needs planes on a cuda device"):
        TriGridSampler(planes, 3, 1.0, 'cuda')
    with pytest.raises(ValueError, match="'cpp' needs planes on a cpu device"):
        resolve_sampler('cpp', planes.to('meta'), 1, 3)
    with pytest.raises(ValueError, match='planes'):
        sample_trigrid(torch.zeros(1, 3, 5, 4, 4), torch.zeros(1, 1, 3), 3, 1.0)
