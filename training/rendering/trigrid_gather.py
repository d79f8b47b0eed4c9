"""Tri-grid lookup by channels-last texel gathers: the fast CPU twin of grid_sample (system.md §2.3).

The planes become one texel table with a row of C features per (plane, h, w, d) (machine.md §5:
grid_sample on channel-first planes reads C scattered cache lines per corner; a table row is
contiguous). The layout change is done with blocked 2-D transposes, one per plane, both ways.
A point reads 4 (tri-plane) or 8 (tri-grid) corners in each of the 3 planes, so its mean
feature is one weighted sum of 12 or 24 rows: a single `embedding_bag` with per-sample weights
(corners outside the volume get weight 0). Gradients (first order):

* w.r.t. the points: the same weighted sums with the weights' derivatives (3 more bags);
* w.r.t. the planes: every point adds g * weight to its corner rows (`index_add_`). With many
  points per texel, the 4 (h, w) corners around a point, which share one base row, are added as
  one 4*C-wide row into a 4x table-sized buffer that is then folded by four shifted dense
  additions: 4x fewer scattered rows. With few points the corners are added one by one.

Sampling matches grid_sample(align_corners=False, padding_mode='zeros'): texel i covers
normalised coordinate (2 i + 1) / size - 1; corners outside the volume contribute zero.
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

PLANE_AXES = ((0, 1, 2), (0, 2, 1), (1, 2, 0))   # plane k: world axes along (W, H, D) (planes.py, EG3D #67)
N_PLANES = len(PLANE_AXES)
SCATTER_ROWS = 1 << 20                            # C-wide rows per index_add_ call in the backward (bounds memory)


class _TexelTable(torch.autograd.Function):
    """Planes [N, 3, C*D, H, W] (channel c*D + d) <-> table [N*3*H*W*D, C] with rows (plane, h, w, d)."""

    @staticmethod
    def forward(ctx, planes, depth):
        n, k, cd, h, w = planes.shape
        flat = planes.reshape(n * k, cd, h * w)
        rows = torch.empty(n * k, h * w, cd, dtype=planes.dtype, device=planes.device)
        for m in range(n * k):
            rows[m].copy_(flat[m].t())
        ctx.shape, ctx.depth = planes.shape, depth
        if depth > 1:
            rows = rows.view(n * k, h * w, cd // depth, depth).transpose(-1, -2).contiguous()
        return rows.view(-1, cd // depth)

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        n, k, cd, h, w = ctx.shape
        rows = g.reshape(n * k, h * w, ctx.depth, cd // ctx.depth).transpose(-1, -2).reshape(n * k, h * w, cd)
        grad = torch.empty(n * k, cd, h * w, dtype=g.dtype, device=g.device)
        for m in range(n * k):
            grad[m].copy_(rows[m].t())
        return grad.view(ctx.shape), None


def texel_table(planes: torch.Tensor, depth: int) -> torch.Tensor:
    """Planes [N, 3, C*D, H, W] -> differentiable texel table [N*3*H*W*D, C], rows (plane, h, w, d)."""
    return _TexelTable.apply(planes, depth)


class _Axis(NamedTuple):
    """Interpolation along one texel axis for [N, P, 3] coordinates (one per plane)."""
    lower: torch.Tensor    # lower corner texel index, in [-1, size - 1]
    frac: torch.Tensor     # weight of the upper corner
    inside: torch.Tensor   # True where the coordinate is strictly inside (-1, size) texels (gradient mask)


def _axis(t: torch.Tensor, size: int, index_dtype: torch.dtype) -> _Axis:
    """Lower corner and fraction of normalised coordinates t for `size` texels (align_corners=False)."""
    i = t * (size / 2) + (size - 1) / 2
    clamped = i.clamp(-1, size)
    lower = clamped.floor().clamp_(max=size - 1)
    return _Axis(lower.to(index_dtype), clamped - lower, (i > -1) & (i < size))


def _factors(axis: _Axis, size: int):
    """Per corner [..., 2]: clamped texel index, weight and d weight / d coordinate (both 0 outside)."""
    index = torch.stack([axis.lower, axis.lower + 1], dim=-1)
    valid = ((index >= 0) & (index < size)).to(axis.frac.dtype)
    weight = torch.stack([1 - axis.frac, axis.frac], dim=-1) * valid
    slope = axis.inside.to(axis.frac.dtype)[..., None] * (size / 2) * valid
    return index.clamp_(0, size - 1), weight, torch.stack([-slope[..., 0], slope[..., 1]], dim=-1)


class _Corners(NamedTuple):
    """Where points [N, P] fall in the three planes: the W, H and D axes, each [N, P, 3]."""
    a: _Axis   # along W
    b: _Axis   # along H
    e: _Axis   # along D (unused for D = 1)

    def flat(self):
        """The tensors to save for backward."""
        return (*self.a, *self.b, *self.e)

    @staticmethod
    def from_flat(saved) -> '_Corners':
        """Inverse of `flat`."""
        return _Corners(_Axis(*saved[0:3]), _Axis(*saved[3:6]), _Axis(*saved[6:9]))


def _corners(coords: torch.Tensor, shape, depth: int) -> _Corners:
    """Corner description of normalised coords [N, P, 3] in planes of `shape` [N, 3, C*D, H, W]."""
    n, _, _, h, w = shape
    index_dtype = torch.int32 if n * N_PLANES * (h + 2) * (w + 2) * depth < 2 ** 31 else torch.int64
    return _Corners(*(_axis(coords[..., [axes[role] for axes in PLANE_AXES]], size, index_dtype)
                      for role, size in enumerate((w, h, depth))))


def _all_factors(corners: _Corners, shape, depth: int):
    """(index, weight, slope) [N, P, 3, 2 | De] of the W, H and depth axes; De = 1 and no slope for D = 1."""
    a, b = _factors(corners.a, shape[4]), _factors(corners.b, shape[3])
    if depth > 1:
        return a, b, _factors(corners.e, depth)
    ones = torch.ones_like(corners.e.frac)[..., None]
    return a, b, (torch.zeros_like(corners.e.lower)[..., None], ones, torch.zeros_like(ones))


def _outer(wb: torch.Tensor, wa: torch.Tensor, wd: torch.Tensor) -> torch.Tensor:
    """Corner weights [N, P, 3, 4, De] from H, W and depth weights ([.., 2], [.., 2], [.., De]); corner = 2 h + w."""
    hw = (wb[..., :, None] * wa[..., None, :]).flatten(-2)
    return hw[..., None] * wd[..., None, :]


def _bag(corners: _Corners, shape, depth: int):
    """embedding_bag rows [N*P, 3*4*De] and weights [N, P, 3, 4, De] (the 1/3 plane mean folded in)."""
    n, _, _, h, w = shape
    (ia, wa, _), (ib, wb, _), (id_, wd, _) = _all_factors(corners, shape, depth)
    plane = torch.arange(n * N_PLANES, dtype=ia.dtype, device=ia.device).reshape(n, 1, N_PLANES, 1)
    hw = ((plane * h + ib)[..., :, None] * w + ia[..., None, :]).flatten(-2)
    rows = (hw * depth)[..., None] + id_[..., None, :]
    return rows.reshape(-1, rows[0, 0].numel()), _outer(wb / N_PLANES, wa, wd)


def _derivative_weights(corners: _Corners, shape, depth: int, axis: int) -> torch.Tensor:
    """d(bag weights)/d(normalised world coordinate `axis`) [N*P, 3*4*De]: in each plane, the corner
    weights with the factor of the texel axis that `axis` addresses replaced by its slope."""
    factors = _all_factors(corners, shape, depth)
    n, p = corners.a.frac.shape[:2]
    out = torch.empty(n, p, N_PLANES, 4, factors[2][1].shape[-1], dtype=corners.a.frac.dtype,
                      device=corners.a.frac.device)
    for k in range(N_PLANES):
        role = PLANE_AXES[k].index(axis)
        fa, fb, fd = ((f[2] if r == role else f[1])[:, :, k] for r, f in enumerate(factors))
        torch.mul((fb[..., :, None] * fa[..., None, :]).flatten(-2)[..., None], fd[..., None, :], out=out[:, :, k])
    return out.reshape(n * p, -1) / N_PLANES


def _scatter_corners(table: torch.Tensor, g: torch.Tensor, rows: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """d loss / d table [rows, C] by adding g * weight into every corner row (few points: no table-sized buffer)."""
    grad = torch.zeros_like(table)
    weights = weights.reshape(rows.shape)
    step = max(1, SCATTER_ROWS // rows.shape[1])
    for start in range(0, rows.shape[0], step):
        part = slice(start, start + step)
        src = weights[part].t()[:, :, None] * g[None, part]          # corner-major: [K, points, C]
        grad.index_add_(0, rows[part].t().reshape(-1), src.reshape(-1, table.shape[1]))
    return grad


def _scatter_folded(table: torch.Tensor, g: torch.Tensor, corners: _Corners, weights: torch.Tensor,
                    shape, depth: int) -> torch.Tensor:
    """d loss / d table [rows, C]: 4*C-wide scatters at the (h, w) base rows of a buffer with a one-texel
    border (the base of a point left of or above the volume is the border), then a 4-way shifted fold."""
    n, _, _, h, w = shape
    c = table.shape[1]
    plane = torch.arange(n * N_PLANES, dtype=corners.a.lower.dtype, device=g.device).reshape(n, 1, N_PLANES)
    base = ((plane * (h + 2) + corners.b.lower + 1) * (w + 2) + corners.a.lower + 1) * depth
    depth_index = _all_factors(corners, shape, depth)[2][0]
    rows = (base[..., None] + depth_index).reshape(g.shape[0], N_PLANES, -1)
    weights = weights.reshape(g.shape[0], N_PLANES, 4, -1)
    folded = torch.zeros(n * N_PLANES * (h + 2) * (w + 2) * depth, 4 * c, dtype=table.dtype, device=table.device)
    step = max(1, SCATTER_ROWS // 4)
    for start in range(0, g.shape[0], step):
        part = slice(start, start + step)
        for k in range(N_PLANES):
            for j in range(rows.shape[-1]):
                src = g[part, None, :] * weights[part, k, :, j, None]
                folded.index_add_(0, rows[part, k, j], src.reshape(-1, 4 * c))
    folded = folded.view(-1, h + 2, w + 2, depth, 4, c)
    grad = folded[:, 1:-1, 1:-1, :, 0] + folded[:, 1:-1, :-2, :, 1]
    grad += folded[:, :-2, 1:-1, :, 2]
    grad += folded[:, :-2, :-2, :, 3]
    return grad.reshape(table.shape)


def _table_gradient(table: torch.Tensor, g: torch.Tensor, rows: torch.Tensor, corners: _Corners,
                    weights: torch.Tensor, shape, depth: int) -> torch.Tensor:
    """d loss / d table from g [N*P, C]: the folded scatter when its base rows (a quarter of all corner
    rows) outnumber the table rows, so that its 4x table-sized buffer pays off; else corner by corner."""
    if rows.numel() // 4 >= table.shape[0]:
        return _scatter_folded(table, g, corners, weights, shape, depth)
    return _scatter_corners(table, g, rows, weights)


class _TriGridGather(torch.autograd.Function):
    """Autograd wrapper: forward one embedding_bag, backward as described in the module docstring."""

    @staticmethod
    def forward(ctx, table, coords, shape, depth):
        corners = _corners(coords, shape, depth)
        rows, weights = _bag(corners, shape, depth)
        ctx.save_for_backward(table, rows, weights, *corners.flat())
        ctx.shape, ctx.depth, ctx.coords_shape = shape, depth, coords.shape
        return F.embedding_bag(rows, table, per_sample_weights=weights.reshape(rows.shape), mode='sum')

    @staticmethod
    @once_differentiable
    def backward(ctx, g):
        table, rows, weights, *saved = ctx.saved_tensors
        corners = _Corners.from_flat(saved)
        g = g.contiguous()
        grad_table = grad_coords = None
        if ctx.needs_input_grad[0]:
            grad_table = _table_gradient(table, g, rows, corners, weights, ctx.shape, ctx.depth)
        if ctx.needs_input_grad[1]:
            grad_coords = torch.stack([
                (F.embedding_bag(rows, table, mode='sum',
                                 per_sample_weights=_derivative_weights(corners, ctx.shape, ctx.depth, axis)) * g)
                .sum(dim=-1) for axis in range(3)], dim=-1).reshape(ctx.coords_shape)
        return grad_table, grad_coords, None, None


def gather_trigrid(table: torch.Tensor, coords: torch.Tensor, shape, depth: int) -> torch.Tensor:
    """Mean tri-grid features [N, P, C] at normalised coords [N, P, 3] in [-1, 1].

    `table` = texel_table(planes, depth) and `shape` = planes.shape ([N, 3, C*D, H, W]).
    """
    n, p = coords.shape[:2]
    return _TriGridGather.apply(table, coords, tuple(shape), depth).reshape(n, p, table.shape[1])
