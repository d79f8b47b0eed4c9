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

Four implementations, equal up to float rounding in values and in gradients w.r.t. planes and
points (first-order gradients only for the compiled two): 'grid_sample' (torch's grid_sample),
'gather' (`trigrid_gather.py`: channels-last texel gathers in PyTorch), and the fused compiled
kernels 'cpp' (CPU) and 'cuda' (CUDA devices) of `trigrid_cpp.py`, which read one channels-last
texel table per sampler. A compiled sampler whose plugin cannot be built falls back to the
pure-PyTorch choice below, after one line on stderr.

'auto' picks per call from CPU measurements (bench/renderer.py; 2 cores, 256^2 planes with 32
features, one sampler called twice like the renderer's two passes; median process CPU time, the
machine being shared):
* CPU, plugin built and at least `CPP_MIN_POINTS_PER_TEXEL` x H x W points per batch element:
  'cpp'. Batch 4, NRR 32, 24+24 samples (24,576 points per pass and batch element), D = 1:
  forward 77 ms vs grid_sample 117 ms, forward+backward 259 vs 577 ms (whole render 360 vs 784
  ms); D = 3: 197 vs 478 and 611 vs 1522 ms (render 598 vs 1651 ms). NRR 64, 48+48 samples,
  D = 3, batch 4: forward 601 vs 3297 ms, forward+backward 2174 vs 9680 ms ('gather' 1269 / 6096
  ms); whole render forward+backward 2.60 s vs 11.2 s, at batch 1 0.69 s vs 2.88 s. With 1,024
  points per pass and batch element the table's fixed cost makes 'cpp' slower (D = 1: 35 vs 23
  ms forward, 103 vs 82 ms forward+backward); from 4,096 on it is faster (D = 1: 43 vs 57 and 147
  vs 239 ms; D = 3: 129 vs 153 and 361 vs 464 ms).
* Otherwise on the CPU, for D > 1 'gather' when the call has at least
  `GATHER_MIN_POINTS_PER_TEXEL` points per texel of a volume (1.57 M points, D = 3: forward 2.2x,
  forward+backward 1.25x faster than the scalar 3-D grid_sample; at 1/8 point per texel its
  per-call table conversion makes it 1.5x slower), else 'grid_sample'.
* Off the CPU: 'grid_sample', torch's tuned kernel. The 'cuda' kernel compiles and its work
  items are tested on the CPU, but it has not been timed on a GPU, so 'auto' does not pick it.
"""
import torch
import torch.nn.functional as F

from training.rendering import trigrid_cpp, trigrid_gather
from training.rendering.trigrid_gather import PLANE_AXES   # plane k: world axes along (W, H, D)

SAMPLER_IMPLS = ('auto', 'grid_sample', 'gather', 'cpp', 'cuda')
COMPILED_DEVICES = {'cpp': 'cpu', 'cuda': 'cuda'}   # compiled sampler -> the device type it runs on
CPP_MIN_POINTS_PER_TEXEL = 1 / 16   # 'auto' on the CPU: points per batch element / (H W) for 'cpp'
GATHER_MIN_POINTS_PER_TEXEL = 0.25  # 'auto' without 'cpp': points per batch element / (H W D) for 'gather'


def _pytorch_sampler(planes: torch.Tensor, n_points: int, depth: int) -> str:
    """The faster pure-PyTorch sampler for one call (module docstring): 'gather' or 'grid_sample'."""
    if planes.device.type != 'cpu' or depth == 1:
        return 'grid_sample'
    texels = planes.shape[3] * planes.shape[4] * depth
    return 'gather' if n_points >= GATHER_MIN_POINTS_PER_TEXEL * texels else 'grid_sample'


def resolve_sampler(impl: str, planes: torch.Tensor, n_points: int, depth: int) -> str:
    """The concrete sampler for one call of `impl` with n_points per batch element (see the module docstring).

    'cpp' / 'cuda' need planes on the CPU / a CUDA device; when their plugin cannot be built (one
    line on stderr, once per process) the call falls back to the pure-PyTorch sampler.
    """
    if impl not in SAMPLER_IMPLS:
        raise ValueError(f'sampler_impl: expected one of {", ".join(SAMPLER_IMPLS)}, got {impl!r}')
    device = planes.device.type
    if impl in COMPILED_DEVICES and COMPILED_DEVICES[impl] != device:
        raise ValueError(f'sampler_impl={impl!r} needs planes on a {COMPILED_DEVICES[impl]} device, '
                         f'got {planes.device}')
    if impl in ('grid_sample', 'gather'):
        return impl
    many = n_points >= CPP_MIN_POINTS_PER_TEXEL * planes.shape[3] * planes.shape[4]
    if impl == 'cpp' or (impl == 'auto' and device == 'cpu' and many):
        return 'cpp' if trigrid_cpp.available('cpu') else _pytorch_sampler(planes, n_points, depth)
    if impl == 'cuda':
        return 'cuda' if trigrid_cpp.available('cuda') else _pytorch_sampler(planes, n_points, depth)
    return _pytorch_sampler(planes, n_points, depth)


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

    One sampler serves every ray chunk and both passes of a render: the texel table of 'gather',
    'cpp' and 'cuda' is built on its first use and reused, and the compiled samplers' calls add
    their planes gradients into one buffer (trigrid_cpp.sample_chained).
    """

    def __init__(self, planes: torch.Tensor, depth: int, box_warp: float, impl: str = 'auto'):
        check_planes(planes, depth)
        resolve_sampler(impl, planes, 0, depth)   # rejects an unknown impl or device now rather than at the first call
        self.planes, self.depth, self.scale, self.impl = planes, depth, 2 / box_warp, impl
        self._tables = {}
        self._token = None   # the compiled samplers' chain (trigrid_cpp.sample_chained)

    def _table(self, kind: str) -> torch.Tensor:
        """The cached texel table of sampler `kind` ('gather' or a compiled one)."""
        if kind not in self._tables:
            build = trigrid_gather.texel_table if kind == 'gather' else trigrid_cpp.texel_table
            self._tables[kind] = build(self.planes, self.depth)
        return self._tables[kind]

    def __call__(self, points: torch.Tensor) -> torch.Tensor:
        """points [N, P, 3] (canonical metres; the box [-box_warp/2, box_warp/2]^3 maps to [-1, 1]^3) -> [N, P, C]."""
        coords = points * self.scale
        kind = resolve_sampler(self.impl, self.planes, points.shape[1], self.depth)
        if kind == 'gather':
            return trigrid_gather.gather_trigrid(self._table(kind), coords, self.planes.shape, self.depth)
        if kind in COMPILED_DEVICES:   # calls are chained: one planes gradient for all of them
            features, self._token = trigrid_cpp.sample_chained(self.planes, self._table('compiled'), coords,
                                                               self._token)
            return features.to(self.planes.dtype)
        return _grid_sample_trigrid(self.planes, coords, self.depth)


def sample_trigrid(planes: torch.Tensor, points: torch.Tensor, depth: int, box_warp: float,
                   impl: str = 'auto') -> torch.Tensor:
    """Features [N, P, C] of canonical points [N, P, 3] in planes [N, 3, C*D, H, W] (a one-shot `TriGridSampler`)."""
    return TriGridSampler(planes, depth, box_warp, impl)(points)
