"""upfirdn2d through the compiled CUDA kernel (torch_utils/ops/cuda/upfirdn2d.{h,cu,cpp}).

The kernel computes the forward pass only. The backward pass is the transposed operator, which
is again an upfirdn2d (up and down swapped, the filter reversed, padding from
`_transposed_padding`) and is computed through the public `upfirdn2d`, so it is differentiable
itself and second-order gradients (R1 regularisation) work.
"""
from typing import Sequence, Tuple

import torch

from .. import custom_ops
from . import upfirdn2d as _up

_SOURCES = ['upfirdn2d.cpp', 'upfirdn2d.cu']


def _plugin():
    """The compiled extension module, or None when it is unavailable (built at most once)."""
    return custom_ops.get_plugin('upfirdn2d_plugin', _SOURCES)


def available() -> bool:
    """Whether the CUDA kernel can be used in this process (a CUDA device and a successful build)."""
    return _plugin() is not None


def _transposed_padding(in_shape: Sequence[int], f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
                        padding: Tuple[int, int, int, int]) -> Tuple[int, int, int, int]:
    """Padding (px0, px1, py0, py1) of the transpose of upfirdn2d(x of `in_shape`, f, up, down, padding).

    Along one axis with n input samples, k taps and output length m = (n*up + p0 + p1 - k) // down + 1,
    the transpose is upfirdn2d(dy, reversed f, up=down, down=up) with p0' = k - 1 - p0 and
    p1' = n*up - m*down + p0, which maps m samples back to exactly n.
    """
    fw, fh = _up._get_filter_size(f)
    pads = []
    for n, k, u, d, p0, p1 in ((in_shape[3], fw, up[0], down[0], padding[0], padding[1]),
                               (in_shape[2], fh, up[1], down[1], padding[2], padding[3])):
        m = (n * u + p0 + p1 - k) // d + 1
        pads += [k - 1 - p0, n * u - m * d + p0]
    return tuple(pads)


def _launch(x: torch.Tensor, f: torch.Tensor, up, down, padding, flip_filter: bool, gain: float) -> torch.Tensor:
    """Run the kernel; a 1-D filter runs as a horizontal then a vertical pass with gain**0.5 each."""
    plugin = _plugin()
    f = f.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    x = x.contiguous()
    if f.ndim == 2:
        return plugin.upfirdn2d(x, f.contiguous(), up[0], up[1], down[0], down[1], *padding, flip_filter, gain)
    pass_gain = gain ** 0.5
    x = plugin.upfirdn2d(x, f[None, :].contiguous(), up[0], 1, down[0], 1, padding[0], padding[1], 0, 0,
                         flip_filter, pass_gain)
    return plugin.upfirdn2d(x, f[:, None].contiguous(), 1, up[1], 1, down[1], 0, 0, padding[2], padding[3],
                            flip_filter, pass_gain)


class _UpFirDn2dCuda(torch.autograd.Function):
    """upfirdn2d with the CUDA kernel forward; the backward is the transposed public upfirdn2d."""

    @staticmethod
    def forward(ctx, x, f, up, down, padding, flip_filter, gain):
        ctx.save_for_backward(f)
        ctx.settings = (tuple(x.shape), up, down, padding, flip_filter, gain)
        return _launch(x, f, up, down, padding, flip_filter, gain)

    @staticmethod
    def backward(ctx, dy):
        f, = ctx.saved_tensors
        in_shape, up, down, padding, flip_filter, gain = ctx.settings
        dx = None
        if ctx.needs_input_grad[0]:
            dx = _up.upfirdn2d(dy, f, up=down, down=up, padding=_transposed_padding(in_shape, f, up, down, padding),
                               flip_filter=not flip_filter, gain=gain)
        return dx, None, None, None, None, None, None


def upfirdn2d_cuda(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int],
                   padding: Tuple[int, int, int, int], flip_filter: bool, gain: float) -> torch.Tensor:
    """upfirdn2d of CUDA tensor x [N, C, H, W] with the compiled kernel; arguments as parsed by `upfirdn2d`.

    `f` is a float 1-D (separable) or 2-D [fh, fw] filter on x's device; up/down are (x, y) pairs and
    padding is (px0, px1, py0, py1). No gradient flows to `f`.
    """
    return _UpFirDn2dCuda.apply(x, f, tuple(up), tuple(down), tuple(padding), bool(flip_filter), float(gain))
