"""Fast pure-PyTorch upfirdn2d for the CPU: no multiplications by inserted zeros, no discarded outputs.

The reference inserts zeros, pads and runs a depthwise convolution over the whole result; for
up=2 three quarters of its multiplications hit inserted zeros, and for down=2 three quarters of
its outputs are thrown away. Here:

* with upsampling, every output phase is computed straight from the un-upsampled input as a
  weighted sum of strided views (polyphase.py). Rank-1 filters (1-D ones, and 2-D ones that are
  an outer product, such as setup_filter([1,3,3,1])) run as two 1-D passes;
* without upsampling, the depthwise convolution runs with stride = down, so only kept samples
  are computed, and padding goes into the convolution instead of a padded copy.

The gradient w.r.t. x is the same operator with up/down swapped and reversed taps, so first- and
second-order gradients reuse this code. The filter is read on the host and treated as a
constant: upfirdn2d() sends calls that need a gradient w.r.t. f to the reference.
"""
from typing import List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F

from . import fir_filter_cpu, polyphase


_MAX_2D_TAPS = 16   # separable filters with more taps than this run as two 1-D convolutions


class _Spec(NamedTuple):
    """One upfirdn2d call in correlation form: taps already flipped and scaled by the gain."""
    taps_y: Optional[Tuple[float, ...]]                # separable: 1-D taps along H and W ...
    taps_x: Optional[Tuple[float, ...]]
    taps_2d: Optional[Tuple[Tuple[float, ...], ...]]   # ... or a full 2-D filter [fh][fw]
    up: Tuple[int, int]
    down: Tuple[int, int]
    padding: Tuple[int, int, int, int]

    def filter_size(self) -> Tuple[int, int]:
        """(fw, fh)."""
        if self.taps_2d is not None:
            return len(self.taps_2d[0]), len(self.taps_2d)
        return len(self.taps_x), len(self.taps_y)


def _rank1(g: List[List[float]], eps: Optional[float]) -> Optional[Tuple[List[float], List[float]]]:
    """(u, v) with g ~ outer(u, v), or None if g differs from it by more than rounding (relative `eps`).

    eps=None skips the check (the caller already knows g is rank 1).
    """
    i, j = max(((a, b) for a in range(len(g)) for b in range(len(g[0]))), key=lambda ab: abs(g[ab[0]][ab[1]]))
    peak = g[i][j]
    if peak == 0:
        return [0.0] * len(g), [0.0] * len(g[0])
    u, v = [row[j] for row in g], [w / peak for w in g[i]]
    tol = 8 * (eps or 0) * abs(peak)
    if eps is None or all(abs(g[a][b] - u[a] * v[b]) <= tol for a in range(len(g)) for b in range(len(g[0]))):
        return u, v
    return None


def make_spec(f: torch.Tensor, dtype: torch.dtype, up, down, padding, flip_filter: bool, gain: float) -> _Spec:
    """Read the filter once on the host and describe the call in correlation form.

    As in the reference, the gain is applied in f's dtype and the taps are rounded to x's
    `dtype`. Whether a 2-D filter is an outer product is decided at f's own precision.
    """
    scaled = f.detach() * (gain ** (f.ndim / 2))
    taps = scaled.to(dtype).to('cpu', torch.float64)
    if not flip_filter:
        taps = taps.flip(list(range(taps.ndim)))
    if taps.ndim == 1:
        t = tuple(taps.tolist())
        return _Spec(t, t, None, up, down, padding)
    g = taps.tolist()
    if _rank1(scaled.to('cpu', torch.float64).tolist(), torch.finfo(f.dtype).eps) is None:
        return _Spec(None, None, tuple(tuple(row) for row in g), up, down, padding)
    u, v = _rank1(g, None)
    return _Spec(tuple(u), tuple(v), None, up, down, padding)


def _conv_padding(length: int, pad0: int, pad1: int, taps: int, stride: int) -> Tuple[int, int, int, int]:
    """(crop0, crop1, conv padding, output offset): one axis of the padding, without a copy if possible.

    Right padding (or input) that no kept window reaches is dropped; then the conv pads
    max(pad0, pad1) on both sides and the output is sliced from `offset`, or, if the surplus on
    the left is not a multiple of the stride, conv padding is -1 and the caller pads explicitly.
    """
    count = (length + pad0 + pad1 - taps) // stride + 1
    crop0 = max(-pad0, 0)
    pad1 = max((count - 1) * stride + taps - length - pad0, crop0 + 1 - length)   # keep >= 1 input sample
    crop1 = max(-pad1, 0)
    pad0, pad1 = max(pad0, 0), max(pad1, 0)
    surplus = max(pad0, pad1) - pad0
    if surplus % stride:
        return crop0, crop1, -1, 0
    return crop0, crop1, max(pad0, pad1), surplus // stride


def _strided_conv(x: torch.Tensor, spec: _Spec) -> torch.Tensor:
    """No upsampling: a correlation evaluated only at the kept samples (stride = down).

    Separable filters on the CPU run compiled (fir_filter_cpu.py, at memory speed). Otherwise,
    with nothing to interleave, the library's depthwise convolution beats elementwise passes,
    and its stride skips the (down^2 - 1) / down^2 outputs the reference computes and discards.
    """
    (downx, downy), (px0, px1, py0, py1) = spec.down, spec.padding
    fw, fh = spec.filter_size()
    h, w = x.shape[2], x.shape[3]
    out_h, out_w = (h + py0 + py1 - fh) // downy + 1, (w + px0 + px1 - fw) // downx + 1
    if spec.taps_2d is None and fir_filter_cpu.applies(x):
        return fir_filter_cpu.fir_filter(x, spec.taps_y, spec.taps_x, spec.down, spec.padding, (out_h, out_w))
    cy0, cy1, pady, offy = _conv_padding(h, py0, py1, fh, downy)
    cx0, cx1, padx, offx = _conv_padding(w, px0, px1, fw, downx)
    if -py0 >= h or -px0 >= w:   # the crop removes the whole input: every window sees padding only
        return x.new_zeros([x.shape[0], x.shape[1], out_h, out_w])
    x = x[:, :, cy0:h - cy1, cx0:w - cx1]
    if pady < 0 or padx < 0:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        pady = padx = offy = offx = 0
    c = x.shape[1]
    def depthwise(t, g, stride, pad):
        return F.conv2d(t, g.expand(c, 1, *g.shape[2:]), stride=stride, padding=pad, groups=c)
    as_tensor = lambda taps: torch.tensor(taps, dtype=x.dtype, device=x.device)
    if spec.taps_2d is not None:
        y = depthwise(x, as_tensor(spec.taps_2d)[None, None], (downy, downx), (pady, padx))
    elif fw * fh <= _MAX_2D_TAPS:
        g = torch.outer(as_tensor(spec.taps_y), as_tensor(spec.taps_x))
        y = depthwise(x, g[None, None], (downy, downx), (pady, padx))
    else:
        y = depthwise(x, as_tensor(spec.taps_y)[None, None, :, None], (downy, 1), (pady, 0))
        y = depthwise(y, as_tensor(spec.taps_x)[None, None, None, :], (1, downx), (0, padx))
    return y[:, :, offy:offy + out_h, offx:offx + out_w]


def _polyphase(x: torch.Tensor, spec: _Spec) -> torch.Tensor:
    """With upsampling: every output phase straight from the un-upsampled input (see polyphase.py).

    Separable filters run the W pass on the smaller side of the H pass. The first pass leaves
    zero margins for the second, which then has no outputs next to the padding.
    """
    (upx, upy), (downx, downy), (px0, px1, py0, py1) = spec.up, spec.down, spec.padding
    fw, fh = spec.filter_size()
    axes = {3: (x.shape[3], upx, downx, px0, px1, fw), 2: (x.shape[2], upy, downy, py0, py1, fh)}
    if spec.taps_2d is not None:
        return polyphase.pass_2d(x, spec.taps_2d, polyphase.axis_plan(*axes[2]), polyphase.axis_plan(*axes[3]))
    passes = [(3, spec.taps_x), (2, spec.taps_y)]
    if upy < downy:
        passes.reverse()
    (dim1, taps1), (dim2, taps2) = passes
    plan1 = polyphase.axis_plan(*axes[dim1])
    length, up, down, pad0, pad1, ntaps = axes[dim2]
    m0, m1 = polyphase.margins(polyphase.axis_plan(*axes[dim2]))
    plan2 = polyphase.axis_plan(length + m0 + m1, up, down, pad0 - m0 * up, pad1 - m1 * up, ntaps)
    scale = polyphase.common_scale(plan1, taps1)
    x = polyphase.pass_1d(x, dim1, taps1, plan1, scale, margins=(m0, m1))
    return polyphase.pass_1d(x, dim2, [t * scale for t in taps2], plan2, 1.0)


def _adjoint(spec: _Spec, in_hw: Tuple[int, int], out_hw: Tuple[int, int]) -> _Spec:
    """The operator whose output is the gradient w.r.t. x: up<->down, reversed taps, matched padding.

    Per axis (input length L, output length L', K taps): padding (K - 1 - p0, L*up - L'*down + p0).
    """
    fw, fh = spec.filter_size()
    px0, py0 = spec.padding[0], spec.padding[2]
    (upx, upy), (downx, downy) = spec.up, spec.down
    padding = (fw - 1 - px0, in_hw[1] * upx - out_hw[1] * downx + px0,
               fh - 1 - py0, in_hw[0] * upy - out_hw[0] * downy + py0)
    rev = lambda t: None if t is None else tuple(reversed(t))
    taps_2d = None if spec.taps_2d is None else tuple(rev(row) for row in reversed(spec.taps_2d))
    return _Spec(rev(spec.taps_y), rev(spec.taps_x), taps_2d, spec.down, spec.up, padding)


class _UpFirDn2d(torch.autograd.Function):
    """Autograd wrapper; its backward is the adjoint upfirdn2d, itself differentiable."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, spec: _Spec) -> torch.Tensor:
        """x [N, C, H, W] -> [N, C, H', W']."""
        ctx.spec, ctx.in_hw = spec, (x.shape[2], x.shape[3])
        return _polyphase(x, spec) if spec.up != (1, 1) else _strided_conv(x, spec)

    @staticmethod
    def backward(ctx, dy: torch.Tensor):
        """dy [N, C, H', W'] -> dx [N, C, H, W]; no gradient for the spec."""
        spec = _adjoint(ctx.spec, ctx.in_hw, (dy.shape[2], dy.shape[3]))
        return _UpFirDn2d.apply(dy, spec), None


def upfirdn2d_fast(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
                   padding: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """upfirdn2d with parsed arguments: up/down as (x, y), padding as (px0, px1, py0, py1).

    x: [N, C, H, W]; f: [fh, fw], or [fw] applied separably. Returns [N, C, H', W'] as the reference.
    """
    return _UpFirDn2d.apply(x, make_spec(f, x.dtype, up, down, padding, flip_filter, gain))
