"""x * scale per sample and channel, written channels-last, as one compiled CPU pass (cpu/channels_last.cpp).

The upsampling convolutions run channels-last on the CPU without autograd (conv2d_resample.py); their
modulated input x * styles is an NCHW tensor, and PyTorch's strided write of a product (or a copy) into a
channels-last tensor transposes at a few GB/s: 3 ms for the [4, 128, 64, 64] input of the bench's first
super-resolution block. The compiled pass transposes in 8 x 8 register blocks, scaling on the way.

Used for contiguous float32/float64 CPU tensors outside autocast when the plugin builds; elsewhere, or when
the build fails (one line on stderr, once), callers keep torch.mul into a channels-last tensor. Not
differentiable: for forward passes without autograd only.
"""
import os
from typing import Optional

import torch

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cpu')
DTYPES = (torch.float32, torch.float64)


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('channels_last_plugin', ['channels_last.cpp'], cuda=False, source_dir=SOURCE_DIR)


def scaled(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [N, C, H, W] * scale [N, C] (per sample and channel) as a channels-last tensor of x's dtype.

    Compiled for contiguous CPU float32/float64 x outside autocast, else torch.mul into a channels-last tensor.
    Raises RuntimeError if a gradient would be needed (x or scale requires grad under grad mode).
    """
    if torch.is_grad_enabled() and (x.requires_grad or scale.requires_grad):
        raise RuntimeError('channels_last_cpu.scaled is not differentiable: call it without autograd')
    scale = scale.to(x.dtype).reshape(x.shape[0], x.shape[1])
    if (x.device.type == 'cpu' and x.dtype in DTYPES and x.is_contiguous() and not torch.is_autocast_enabled('cpu')
            and _plugin() is not None):
        return _plugin().scaled(x, scale.contiguous(), torch.get_num_threads())
    return torch.mul(x, scale[:, :, None, None], out=torch.empty_like(x, memory_format=torch.channels_last))
