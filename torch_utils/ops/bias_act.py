"""Fused bias + activation + gain + clamp: y = clamp(act(x + b) * gain, -clamp, clamp).

`b` (1-D) is broadcast along dimension `dim` of `x`. Defaults follow StyleGAN2: lrelu uses
alpha 0.2, and relu/lrelu/swish use gain sqrt(2) so that activations keep unit variance.
"""
from typing import Callable, Dict, NamedTuple, Optional

import numpy as np
import torch
import torch.nn.functional as F

from . import bias_act_fast
from .dispatch import resolve_impl


class Activation(NamedTuple):
    """One activation: its PyTorch definition, default alpha/gain, and its CUDA kernel code."""
    func: Callable[[torch.Tensor, float], torch.Tensor]
    def_alpha: float
    def_gain: float
    cuda_idx: int


activation_funcs: Dict[str, Activation] = {
    'linear': Activation(lambda x, _: x, 0.0, 1.0, 1),
    'relu': Activation(lambda x, _: F.relu(x), 0.0, float(np.sqrt(2)), 2),
    'lrelu': Activation(lambda x, alpha: F.leaky_relu(x, alpha), 0.2, float(np.sqrt(2)), 3),
    'tanh': Activation(lambda x, _: torch.tanh(x), 0.0, 1.0, 4),
    'sigmoid': Activation(lambda x, _: torch.sigmoid(x), 0.0, 1.0, 5),
    'elu': Activation(lambda x, _: F.elu(x), 0.0, 1.0, 6),
    'selu': Activation(lambda x, _: F.selu(x), 0.0, 1.0, 7),
    'softplus': Activation(lambda x, _: F.softplus(x), 0.0, 1.0, 8),
    'swish': Activation(lambda x, _: torch.sigmoid(x) * x, 0.0, float(np.sqrt(2)), 9),
}


def _resolve_params(act: str, alpha, gain, clamp):
    """Fill in the activation's defaults; clamp < 0 means no clamping."""
    if act not in activation_funcs:
        raise ValueError(f"act: unknown activation {act!r}; valid: {', '.join(activation_funcs)}")
    spec = activation_funcs[act]
    alpha = float(spec.def_alpha if alpha is None else alpha)
    gain = float(spec.def_gain if gain is None else gain)
    clamp = float(-1 if clamp is None else clamp)
    return spec, alpha, gain, clamp


def _validate(x: torch.Tensor, b: Optional[torch.Tensor], dim: int) -> None:
    """Raise ValueError naming the first bad argument."""
    if not isinstance(x, torch.Tensor) or not x.dtype.is_floating_point:
        raise ValueError(f'x: expected a floating-point tensor, got {getattr(x, "dtype", type(x).__name__)}')
    if b is None:
        return
    if not 0 <= dim < x.ndim:
        raise ValueError(f'dim: {dim} is out of range for x with {x.ndim} dimensions')
    if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.shape[0] != x.shape[dim]:
        shape = list(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
        raise ValueError(f'b: expected a 1-D tensor of size x.shape[{dim}] = {x.shape[dim]}, got {shape}')
    if b.dtype != x.dtype or b.device != x.device:
        raise ValueError(f'b: dtype/device {b.dtype}/{b.device} differ from x ({x.dtype}/{x.device})')


def _bias_act_ref(x, b, dim, spec: Activation, alpha: float, gain: float, clamp: float):
    """Definition of bias_act in plain PyTorch ops."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    x = spec.func(x, alpha)
    if gain != 1:
        x = x * gain
    if clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def _cuda_available() -> bool:
    """Whether the CUDA plugin builds (once per process)."""
    from . import bias_act_cuda
    return bias_act_cuda.available()


def _auto_impl(act: str, alpha: float, gain: float) -> str:
    """'fast' wherever its two-pass form applies (relu/lrelu, gain > 0), else 'ref'.

    The fast path is plain PyTorch with fewer passes over memory, so it suits any device
    without the plugin (measured on the CPU: docs/performance.md).
    """
    return 'fast' if bias_act_fast.applies(act, alpha, gain) else 'ref'


def bias_act(x: torch.Tensor, b: Optional[torch.Tensor] = None, dim: int = 1, act: str = 'linear',
             alpha: Optional[float] = None, gain: Optional[float] = None, clamp: Optional[float] = None,
             impl: str = 'auto') -> torch.Tensor:
    """Add bias `b` along `dim`, apply `act`, scale by `gain`, clamp to [-clamp, clamp]. Same shape as x.

    impl='fast' covers relu/lrelu with gain > 0 and computes the reference for everything else.
    """
    _validate(x, b, dim)
    spec, alpha, gain, clamp = _resolve_params(act, alpha, gain, clamp)
    impl = resolve_impl('bias_act', impl, x, _cuda_available, auto_fallback=lambda _: _auto_impl(act, alpha, gain))
    if impl == 'cuda':
        from .bias_act_cuda import bias_act_cuda
        return bias_act_cuda(x, b, dim, act, alpha, gain, clamp)
    if impl == 'fast' and bias_act_fast.applies(act, alpha, gain):
        return bias_act_fast.bias_act_fast(x, b, dim, act, alpha, gain, clamp)
    return _bias_act_ref(x, b, dim, spec, alpha, gain, clamp)
