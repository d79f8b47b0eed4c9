"""Sample a density field on a regular N^3 grid over a cube, in chunks (input to mesh export, §8.1).

Grid convention: N points per axis from `center - side/2` to `center + side/2` inclusive (EG3D's
create_samples), so the spacing is side / (N - 1) and volume[i, j, k] is the density at
origin + (i, j, k) * spacing with axis 0 = x, 1 = y, 2 = z (world/canonical units, y up).
"""
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import torch

DensityFn = Callable[[torch.Tensor], torch.Tensor]   # points [1, P, 3] -> sigma [1, P, 1]


@dataclass(frozen=True)
class Grid:
    """A cube of `side` (world units) centred at `center`, sampled with `resolution` points per axis."""
    resolution: int
    side: float
    center: Sequence[float] = (0.0, 0.0, 0.0)

    def __post_init__(self):
        if self.resolution < 2:
            raise ValueError(f'grid resolution: expected at least 2 points per axis, got {self.resolution}')
        if not self.side > 0:
            raise ValueError(f'grid side: expected a positive length, got {self.side}')

    @property
    def origin(self) -> np.ndarray:
        """World position [3] of voxel (0, 0, 0): the cube's minimum corner."""
        return np.asarray(self.center, dtype=np.float64) - self.side / 2

    @property
    def spacing(self) -> float:
        """Distance between neighbouring grid points: side / (N - 1)."""
        return self.side / (self.resolution - 1)

    def points(self, start: int, stop: int, dtype=torch.float32, device=None) -> torch.Tensor:
        """World positions [stop - start, 3] of the flat (C-order) grid indices start..stop-1.

        Computed in float64 on the CPU (MPS has no float64), then cast and moved to `device`.
        """
        n = self.resolution
        index = torch.arange(start, stop)
        ijk = torch.stack([index // (n * n), index // n % n, index % n], dim=-1)
        points = torch.from_numpy(self.origin) + ijk.to(torch.float64) * self.spacing
        return points.to(device=device, dtype=dtype)


@torch.no_grad()
def generator_density(G, ws: torch.Tensor, **block_kwargs) -> DensityFn:
    """The raw canonical density of generator G for ws [1, num_ws, w_dim] as a DensityFn.

    The tri-grid planes are computed once here (G.planes) and reused by every chunk of points,
    instead of rerunning the backbone per chunk. block_kwargs go to the backbone (e.g.
    noise_mode='const').
    """
    planes = G.planes(ws, **block_kwargs)
    return lambda points: G.sample_mixed(points, None, ws, planes=planes)['sigma']


@torch.no_grad()
def density_grid(density_fn: DensityFn, grid: Grid, max_batch: int = 1 << 18, device=None,
                 on_chunk: Optional[Callable[[int], None]] = None) -> np.ndarray:
    """Query `density_fn` at every grid point, `max_batch` points per call -> float32 volume [N, N, N].

    `density_fn` takes points [1, P, 3] on `device` and returns densities [1, P, 1] (or [1, P]);
    `on_chunk(P)` is called after each chunk (e.g. a progress bar's update).
    """
    if max_batch < 1:
        raise ValueError(f'max_batch: expected a positive number of points, got {max_batch}')
    total = grid.resolution ** 3
    volume = np.empty(total, dtype=np.float32)
    for start in range(0, total, max_batch):
        stop = min(start + max_batch, total)
        sigma = density_fn(grid.points(start, stop, device=device)[None])
        if sigma.numel() != stop - start:
            raise ValueError(f'density function returned shape {list(sigma.shape)} for {stop - start} points')
        volume[start:stop] = sigma.reshape(-1).float().cpu().numpy()
        if on_chunk is not None:
            on_chunk(stop - start)
    return volume.reshape((grid.resolution,) * 3)


def clear_border(volume: np.ndarray, width: int, value: float) -> np.ndarray:
    """Copy of `volume` [N, N, N] with its outer `width` voxels on every face set to `value`.

    With `value` below the iso-level this closes surfaces that reach the cube faces. The original
    cleared int(30 N / 256) voxels of a 0.8 * box_warp cube (system.md §8.1).
    """
    if width < 0 or 2 * width >= min(volume.shape):
        raise ValueError(f'border width: expected 0 <= width < {min(volume.shape) / 2}, got {width}')
    out = volume.copy()
    if width:
        out[:width], out[-width:] = value, value
        out[:, :width], out[:, -width:] = value, value
        out[:, :, :width], out[:, :, -width:] = value, value
    return out
