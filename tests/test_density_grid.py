"""Density grid sampling (training/geometry/density_grid.py): grid geometry, chunking, border clearing, G density."""
import numpy as np
import pytest
import torch

from training.geometry.density_grid import Grid, clear_border, density_grid, generator_density


def _linear(points):
    """A density that encodes the position: 1 x + 10 y + 100 z."""
    return (points @ torch.tensor([1.0, 10.0, 100.0], dtype=points.dtype))[..., None]


def test_grid_geometry():
    grid = Grid(5, 2.0, center=(1.0, 0.0, -1.0))
    np.testing.assert_allclose(grid.origin, [0.0, -1.0, -2.0])
    assert grid.spacing == pytest.approx(0.5)
    points = grid.points(0, 125, dtype=torch.float64)
    np.testing.assert_allclose(points[0], [0.0, -1.0, -2.0])
    np.testing.assert_allclose(points[-1], [2.0, 1.0, 0.0])
    np.testing.assert_allclose(points[1], [0.0, -1.0, -1.5])     # axis 2 (z) runs fastest
    np.testing.assert_allclose(points[25], [0.5, -1.0, -2.0])    # axis 0 (x) runs slowest


@pytest.mark.parametrize('max_batch', [1, 7, 64, 10_000])
def test_volume_is_indexed_x_y_z_whatever_the_chunking(max_batch):
    grid = Grid(4, 3.0)
    calls = []
    volume = density_grid(_linear, grid, max_batch=max_batch, on_chunk=calls.append)
    assert volume.shape == (4, 4, 4) and volume.dtype == np.float32
    axis = grid.origin[0] + np.arange(4) * grid.spacing
    x, y, z = np.meshgrid(axis, axis, axis, indexing='ij')
    np.testing.assert_allclose(volume, x + 10 * y + 100 * z, atol=1e-4)
    assert sum(calls) == 64 and max(calls) <= max_batch


def test_density_function_gets_batched_points_on_the_device():
    seen = []

    def fn(points):
        seen.append((points.shape, points.device.type))
        return points.norm(dim=-1)

    density_grid(fn, Grid(3, 1.0), max_batch=10, device='cpu')
    assert seen == [((1, 10, 3), 'cpu'), ((1, 10, 3), 'cpu'), ((1, 7, 3), 'cpu')]


def test_bad_arguments():
    with pytest.raises(ValueError, match='at least 2 points'):
        Grid(1, 1.0)
    with pytest.raises(ValueError, match='positive length'):
        Grid(4, 0.0)
    with pytest.raises(ValueError, match='max_batch'):
        density_grid(_linear, Grid(4, 1.0), max_batch=0)
    with pytest.raises(ValueError, match='returned shape'):
        density_grid(lambda points: points, Grid(4, 1.0))


def test_clear_border():
    volume = np.ones((6, 6, 6), dtype=np.float32)
    cleared = clear_border(volume, 2, -5.0)
    assert volume.min() == 1                                  # input untouched
    assert (cleared[2:4, 2:4, 2:4] == 1).all() and (cleared == 1).sum() == 8
    assert (cleared == -5).sum() == 216 - 8
    assert np.array_equal(clear_border(volume, 0, -5.0), volume)
    with pytest.raises(ValueError, match='border width'):
        clear_border(volume, 3, -5.0)


class _CountingGenerator:
    """planes / sample_mixed stand-in: sigma = -|p|; records its calls."""

    def __init__(self):
        self.calls = []

    def planes(self, ws, **block_kwargs):
        self.calls.append(('planes', block_kwargs))
        return ws * 2

    def sample_mixed(self, coords, directions, ws, planes=None):
        self.calls.append(('sample_mixed', planes))
        return dict(sigma=-coords.norm(dim=-1, keepdim=True))


def test_generator_density_computes_the_planes_once():
    G, ws = _CountingGenerator(), torch.ones(1, 3, 4)
    grid = Grid(5, 1.0)
    volume = density_grid(generator_density(G, ws, noise_mode='const'), grid, max_batch=7)
    assert G.calls[0] == ('planes', dict(noise_mode='const'))
    samples = [planes for name, planes in G.calls[1:]]
    assert len(samples) == -(-125 // 7) and all(name == 'sample_mixed' for name, _ in G.calls[1:])
    assert all(torch.equal(planes, ws * 2) for planes in samples)
    axis = np.linspace(-0.5, 0.5, 5)
    expected = -np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    np.testing.assert_allclose(volume, expected, rtol=1e-6)
