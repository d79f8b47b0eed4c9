"""Tri-grid feature lookup in canonical space, and the canonical crop (system.md §2.3, §2.7, §3).

Planes are [N, 3, C*D, H, W]: three feature volumes of C channels, depth D and H x W texels
(channel index c*D + d). Canonical points (metres) are scaled by 2 / box_warp into [-1, 1]^3 and
each volume is addressed with the corrected axes of EG3D issue #67 (`PLANE_AXES`): plane 0 by
(x, y | depth z), plane 1 by (x, z | depth y), plane 2 by (y, z | depth x), where the first
coordinate runs along W, the second along H and the third along D. Volumes are sampled
trilinearly (align_corners=False, zero padding) and the three samples are averaged.

D = 1 is a plain tri-plane: bilinear sampling with no dependence on the plane-normal coordinate.
This deliberately differs from the original, whose 3-D sampling of a depth-1 volume with zero
padding fades features linearly toward the two box faces along each plane normal.

Two implementations, equal up to float rounding in values and in gradients w.r.t. planes and
points: 'grid_sample' (torch's grid_sample) and 'gather' (`trigrid_gather.py`: channels-last
texel gathers). 'auto' picks per call from CPU measurements (bench/renderer.py, 2 cores, batch 4,
256^2 planes): for D > 1 on the CPU it takes 'gather' when the call has at least
`GATHER_MIN_POINTS_PER_TEXEL` points per texel of a volume (1.57 M points, D = 3: forward 2.2x,
forward+backward 1.25x faster than the scalar 3-D grid_sample; whole render at NRR 64 with
48+48 samples 1.45x; at 1/8 point per texel, NRR 32 with 24+24 samples, the gather's fixed
per-call cost of converting the planes to and from its table makes it 1.5x slower). Otherwise
'grid_sample': for D = 1 torch's vectorised 2-D kernel is as fast as the gather, and off the
CPU it is the tuned kernel.
"""
import torch
import torch.nn.functional as F

from training.rendering import trigrid_gather
from training.rendering.trigrid_gather import PLANE_AXES   # plane k: world axes along (W, H, D)

SAMPLER_IMPLS = ('auto', 'grid_sample', 'gather')
GATHER_MIN_POINTS_PER_TEXEL = 0.25  # 'auto' threshold (module docstring): points per batch element / (H W D)


def resolve_sampler(impl: str, planes: torch.Tensor, n_points: int, depth: int) -> str:
    """The concrete sampler for one call of `impl` with n_points per batch element (see the module docstring)."""
    if impl not in SAMPLER_IMPLS:
        raise ValueError(f'sampler_impl: expected one of {", ".join(SAMPLER_IMPLS)}, got {impl!r}')
    if impl != 'auto':
        return impl
    if planes.device.type != 'cpu' or depth == 1:
        return 'grid_sample'
    texels = planes.shape[3] * planes.shape[4] * depth
    return 'gather' if n_points >= GATHER_MIN_POINTS_PER_TEXEL * texels else 'grid_sample'


def crop_outside(points: torch.Tensor, crop: float) -> torch.Tensor:
    """Mask [N, P, 1] of canonical points [N, P, 3] outside the crop: |x| > crop or |z| > crop (no y limit, §2.7)."""
    return (points[..., 0:1].abs() > crop) | (points[..., 2:3].abs() > crop)


def _grid_sample_trigrid(planes: torch.Tensor, coords: torch.Tensor, depth: int) -> torch.Tensor:
    """Reference lookup with torch grid_sample: planes [N, 3, C*D, H, W], coords in [-1, 1] [N, P, 3] -> [N, P, C]."""
    n, _, cd, h, w = planes.shape
    c, p = cd // depth, coords.shape[1]
    grid = torch.stack([coords[..., list(axes)] for axes in PLANE_AXES], dim=1)   # [N, 3, P, 3]
    if depth == 1:
        out = F.grid_sample(planes.reshape(n * 3, c, h, w), grid[..., :2].reshape(n * 3, 1, p, 2),
                            mode='bilinear', padding_mode='zeros', align_corners=False)
    else:
        out = F.grid_sample(planes.reshape(n * 3, c, depth, h, w), grid.reshape(n * 3, 1, 1, p, 3),
                            mode='bilinear', padding_mode='zeros', align_corners=False)
    return out.reshape(n, 3, c, p).mean(dim=1).transpose(1, 2)


def check_planes(planes: torch.Tensor, depth: int) -> None:
    """Raise ValueError unless planes is [N, 3, C*D, H, W] with C*D divisible by the depth D."""
    if planes.ndim != 5 or planes.shape[1] != 3 or planes.shape[2] % depth:
        raise ValueError(f'planes: expected [N, 3, C*{depth}, H, W], got {list(planes.shape)}')


class TriGridSampler:
    """Canonical points [N, P, 3] (metres) -> mean tri-grid features [N, P, C] for one set of planes.

    One sampler serves every ray chunk and both passes of a render: the texel table of 'gather'
    is built on its first use and reused.
    """

    def __init__(self, planes: torch.Tensor, depth: int, box_warp: float, impl: str = 'auto'):
        check_planes(planes, depth)
        resolve_sampler(impl, planes, 0, depth)   # rejects an unknown impl now rather than at the first call
        self.planes, self.depth, self.scale, self.impl = planes, depth, 2 / box_warp, impl
        self._table = None

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """points [N, P, 3] (canonical metres; the box [-box_warp/2, box_warp/2]^3 maps to [-1, 1]^3) -> [N, P, C]."""
        coords = points * self.scale
        if resolve_sampler(self.impl, self.planes, points.shape[1], self.depth) == 'gather':
            if self._table is None:
                self._table = trigrid_gather.texel_table(self.planes, self.depth)
            return trigrid_gather.gather_trigrid(self._table, coords, self.planes.shape, self.depth)
        return _grid_sample_trigrid(self.planes, coords, self.depth)


def sample_trigrid(planes: torch.Tensor, points: torch.Tensor, depth: int, box_warp: float,
                   impl: str = 'auto') -> torch.Tensor:
    """Features [N, P, C] of canonical points [N, P, 3] in planes [N, 3, C*D, H, W] (a one-shot `TriGridSampler`)."""
    return TriGridSampler(planes, depth, box_warp, impl)(points)
