"""softplus as one compiled in-place pass on float CPU tensors (cpu/softplus.cpp), differentiable.

The tri-grid decoder's hidden layer applies softplus to [points, 64] (6.3 M values per coarse or
fine pass at the bench config). PyTorch evaluates exp and log1p per element there, slower than
the matrix product before it, and keeps the input for the backward. The compiled op vectorises
polynomial exp/log1p (float32 relative error about 2e-7), overwrites its input (the fresh output
of the preceding addmm) and keeps only the output: the gradient is sigmoid(x) = -expm1(-softplus(x)).

Used for float32/float64 CPU tensors outside autocast when the plugin builds; elsewhere, or when
the build fails (one line on stderr, once), callers keep F.softplus. First order only.
"""
import os
from typing import Optional

import torch
from torch.autograd.function import once_differentiable

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cpu')
DTYPES = (torch.float32, torch.float64)


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('softplus_plugin', ['softplus.cpp'], cuda=False, source_dir=SOURCE_DIR)


def applies(x: torch.Tensor) -> bool:
    """Whether softplus_ serves x: a contiguous CPU float32/float64 tensor, no autocast, and the plugin builds."""
    return (x.device.type == 'cpu' and x.dtype in DTYPES and x.is_contiguous()
            and not torch.is_autocast_enabled('cpu') and _plugin() is not None)


class _SoftplusInplace(torch.autograd.Function):
    """x <- softplus(x), saving only the result."""

    @staticmethod
    def forward(ctx, x):
        _plugin().forward_(x, torch.get_num_threads())
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return _plugin().backward(grad.contiguous(), y, torch.get_num_threads())


def softplus_(x: torch.Tensor) -> torch.Tensor:
    """softplus(x) = log(1 + exp(x)) written into x (see applies()); returns x. x must not be a leaf that
    requires grad, nor a tensor autograd saved for another backward (as for any in-place op)."""
    return _SoftplusInplace.apply(x)
