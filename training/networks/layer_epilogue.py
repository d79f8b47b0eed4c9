"""The epilogue of a non-fused modulated synthesis layer as one compiled CPU pass (csrc/layer_epilogue.cpp).

After the convolution of the modulated input, a synthesis layer computes
    y = act(clamp(x * scale + bias + noise))
with scale [N, O] the demodulation times the activation gain and bias [O], noise [N or 1, H, W]
already multiplied by that gain (relu/lrelu are positively homogeneous; see
torch_utils/ops/bias_act_fast.py for the clamp bounds). In PyTorch that is a broadcast offset
(bias + noise, a full-size tensor), an addcmul and the activation in place, and a backward of
five passes: the activation's, x * scale, the product x * g reduced for scale, and the sums of g
for bias and noise. The compiled op does one pass each way. It keeps no output: the backward
reads x and the incoming gradient once and recomputes what it needs.

Used on the CPU for float32/float64 outside autocast (training mode, where layers are non-fused). Elsewhere, or
when the plugin does not build (one line on stderr, once), the layer keeps the PyTorch path.
First order only: differentiating the backward raises torch's once_differentiable error.
"""
import os
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
DTYPES = (torch.float32, torch.float64)


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('layer_epilogue_plugin', ['layer_epilogue.cpp'], cuda=False, source_dir=SOURCE_DIR)


def applies(x: torch.Tensor) -> bool:
    """Whether the compiled epilogue serves a layer with input x: CPU, float32/64, no autocast (which would
    make the convolution's output bfloat16), and the plugin builds."""
    return (x.device.type == 'cpu' and x.dtype in DTYPES and not torch.is_autocast_enabled('cpu')
            and _plugin() is not None)


class _LayerEpilogue(torch.autograd.Function):
    """y [N, O, P] = act(clamp(x * scale + bias + noise)), see the module doc."""

    @staticmethod
    def forward(ctx, x, scale, bias, noise, low, high, alpha):
        ctx.save_for_backward(x, scale, bias, noise)
        ctx.bounds = (low, high, alpha)
        return _plugin().forward(x, scale, bias, noise, low, high, alpha, torch.get_num_threads())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        x, scale, bias, noise = ctx.saved_tensors
        need_x, need_scale, need_bias, need_noise = ctx.needs_input_grad[:4]
        gx, gscale, gbias, gnoise = _plugin().backward(grad.contiguous(), x, scale, bias, noise, *ctx.bounds,
                                                        need_x, torch.get_num_threads())
        return (gx if need_x else None, gscale if need_scale else None, gbias if need_bias else None,
                gnoise if need_noise and noise.numel() > 0 else None, None, None, None)


def layer_epilogue(x: torch.Tensor, scale: torch.Tensor, bias: torch.Tensor, noise: Optional[torch.Tensor],
                   low: float, high: float, alpha: float) -> torch.Tensor:
    """act(clamp(x * scale + bias + noise, low, high)) for x [N, O, H, W] (see applies()), act(v) = max(v, alpha v).

    scale [N, O], bias [O], noise [N or 1, H, W], [H, W] or None; no clamp: low = -inf, high = inf.
    Differentiable w.r.t. all tensors.
    """
    n, o, h, w = x.shape
    dtype = x.dtype
    noise = (noise.to(dtype).reshape(-1, h * w).contiguous() if noise is not None
             else torch.empty(0, dtype=dtype, device=x.device))
    y = _LayerEpilogue.apply(x.contiguous().reshape(n, o, h * w), scale.to(dtype).contiguous(),
                             bias.to(dtype).contiguous(), noise, float(low), float(high), float(alpha))
    return y.reshape(n, o, h, w)
