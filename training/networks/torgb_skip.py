"""A skip-architecture ToRGB and the 2x upsampling of the image it adds to, as one compiled CPU pass.

In the 'skip' architecture a block computes

    img = upsample2d(img, filter) + clamp(conv1x1(feat, weight * styles) + bias)

In PyTorch that is a polyphase upsampling (several passes over the upsampled image), the 1x1
convolution into a fresh output and the add; the backward is the convolution's backward, the
adjoint of the upsampling (a strided depthwise convolution) and, before them, nothing shared. At
the last backbone block (96 tri-plane channels at 256^2, 100 MB per tensor at batch 4) those
passes are memory-bound. csrc/torgb_skip.cpp does each direction in one pass: per output row the
convolution stays in L1 and the upsampled image row is added before the store; the backward reads
the incoming gradient once for all four gradients (features, modulated weights, bias, image).

Used on the CPU for float32/float64 outside autocast, for a 1x1 ToRGB, up = 2 and a symmetric
separable 4-tap filter (StyleGAN2's [1, 3, 3, 1]); elsewhere, or when the plugin does not build
(one line on stderr, once), the block keeps the PyTorch path. First order only: differentiating
the backward raises torch's once_differentiable error.
"""
import math
import os
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
DTYPES = (torch.float32, torch.float64)
PhaseWeights = Tuple[float, float, float, float]


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('torgb_skip_plugin', ['torgb_skip.cpp'], cuda=False, source_dir=SOURCE_DIR)


def phase_weights(f: torch.Tensor) -> Optional[PhaseWeights]:
    """(e0, e1, d0, d1) of upsample2d(x, f, up=2) along each axis, or None unless f is a symmetric separable
    4-tap filter (1-D [4] or its 2-D outer product [4, 4]).

    Per axis that upsampling maps s to output 2m = e0 s[m - 1] + e1 s[m], 2m + 1 = d0 s[m] + d1 s[m + 1]
    (zero outside): taps g = 2 u / sum(u) of the 1-D filter u, e0 = d1 = g0 and e1 = d0 = g1.
    """
    f = f.detach().to(device='cpu', dtype=torch.float64)
    if f.ndim == 2:
        if f.shape != (4, 4):
            return None
        u = f.sum(dim=1)
        if not torch.allclose(torch.outer(u, f.sum(dim=0)) / f.sum(), f, rtol=1e-6, atol=1e-9):
            return None
    elif f.ndim == 1 and f.numel() == 4:
        u = f
    else:
        return None
    if u.sum() == 0 or not torch.allclose(u, u.flip(0), rtol=1e-6, atol=1e-12):
        return None
    g = (2 * u / u.sum()).tolist()
    return g[0], g[1], g[1], g[0]


def applies(feat: torch.Tensor, img: torch.Tensor, weight: torch.Tensor, taps: Optional[PhaseWeights]) -> bool:
    """Whether the compiled op serves this ToRGB: CPU, feat and img of one float32/64 dtype, no autocast, a 1x1
    weight, a supported filter (taps), img at half feat's (even) resolution, and the plugin builds."""
    n, _, h, w = feat.shape
    return (taps is not None and feat.device.type == 'cpu' and img.device.type == 'cpu' and feat.dtype in DTYPES
            and img.dtype == feat.dtype and weight.shape[2:] == (1, 1) and not torch.is_autocast_enabled('cpu')
            and h % 2 == 0 and w % 2 == 0 and img.shape == (n, weight.shape[0], h // 2, w // 2)
            and _plugin() is not None)


class _ToRGBSkip(torch.autograd.Function):
    """out = clamp(conv1x1(feat, wm) + bias, low, high) + upsample2x(img), see the module doc."""

    @staticmethod
    def forward(ctx, feat, wm, bias, img, taps, low, high):
        clamp = math.isfinite(low) or math.isfinite(high)
        ctx.save_for_backward(feat, wm, bias)
        ctx.settings = (list(taps), low, high, clamp)
        return _plugin().forward(feat, wm, bias, img, list(taps), low, high, clamp, torch.get_num_threads())

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        feat, wm, bias = ctx.saved_tensors
        gfeat, gwm, gbias, gimg = _plugin().backward(grad.contiguous(), feat, wm, bias, *ctx.settings,
                                                     torch.get_num_threads())
        needs = ctx.needs_input_grad
        return (gfeat if needs[0] else None, gwm if needs[1] else None, gbias if needs[2] else None,
                gimg if needs[3] else None, None, None, None)


def torgb_skip(feat: torch.Tensor, wm: torch.Tensor, bias: torch.Tensor, img: torch.Tensor, taps: PhaseWeights,
               conv_clamp: Optional[float]) -> torch.Tensor:
    """clamp(conv1x1(feat, wm) + bias, +-conv_clamp) + upsample2d(img, filter, up=2) (see applies()).

    feat [N, I, H, W], wm [N, O, I] (the modulated weights), bias [O], img [N, O, H/2, W/2], taps from
    phase_weights(filter). Returns [N, O, H, W], contiguous, in feat's dtype. Differentiable w.r.t. all tensors.
    """
    dtype = feat.dtype
    low, high = (-math.inf, math.inf) if conv_clamp is None else (-float(conv_clamp), float(conv_clamp))
    return _ToRGBSkip.apply(feat.contiguous(), wm.to(dtype).contiguous(), bias.to(dtype).contiguous(),
                            img.contiguous(), taps, low, high)
