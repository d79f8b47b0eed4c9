"""bias_act through the compiled CUDA kernel (torch_utils/ops/cuda/bias_act.{h,cu,cpp}).

One kernel has three modes (bias_act.h): the forward y = clamp(act(x + b) * gain), the gradient
dx = dy * gain * act'(u) and the second-order term. Two autograd Functions chain them: the
forward's backward is `_BiasActCudaGrad`, whose own backward calls `_BiasActCudaGrad` again (for
the part linear in dy) and the second-order mode, so double backward (R1) works like in the
PyTorch reference. Third and higher derivatives through the second-order term are not supported.

Which variable the gradient is computed from (`_grad_formulas[act].source`):
  'y'  linear, relu, lrelu (alpha >= 0), tanh, sigmoid, elu, selu: act' is a function of a = y / gain,
       so only y is kept for backward (usually alive anyway as the next layer's input);
  'x'  softplus, swish (and lrelu with alpha < 0, which cannot be inverted from y): act' needs
       u = x + b, so x and b are kept (plus y when clamping).
"""
from typing import Callable, Dict, NamedTuple, Optional

import torch

from .. import custom_ops
from .bias_act import activation_funcs

_SOURCES = ['bias_act.cpp', 'bias_act.cu']
_FORWARD, _GRAD, _GRAD_GRAD = 0, 1, 2  # BiasActMode in bias_act.h
_SELU_SCALE, _SELU_ALPHA = 1.0507009873554804934193349852946, 1.6732632423543772848170429916717


class _GradFormula(NamedTuple):
    """act'(u) = d1(v, alpha) and d d1 / dv = d2(v) in v = u ('x') or v = act(u) ('y'); d2 None means 0."""
    source: str
    d1: Callable[[torch.Tensor, float], torch.Tensor]
    d2: Optional[Callable[[torch.Tensor], torch.Tensor]]


def _swish_d1(v: torch.Tensor, _alpha: float) -> torch.Tensor:
    """Derivative of u * sigmoid(u): s (1 + u (1 - s))."""
    s = torch.sigmoid(v)
    return s * (1 + v * (1 - s))


def _swish_d2(v: torch.Tensor) -> torch.Tensor:
    """Second derivative of u * sigmoid(u): s (1 - s) (2 + u (1 - 2 s))."""
    s = torch.sigmoid(v)
    return s * (1 - s) * (2 + v * (1 - 2 * s))


def _step(v: torch.Tensor, above: float, below: float) -> torch.Tensor:
    """`above` where v > 0, else `below`, in v's dtype."""
    return torch.where(v > 0, torch.full_like(v, above), torch.full_like(v, below))


# The PyTorch statement of act_d1 / act_d2 in bias_act.h: the spec the kernel is tested against.
_grad_formulas: Dict[str, _GradFormula] = {
    'linear': _GradFormula('y', lambda v, _: torch.ones_like(v), None),
    'relu': _GradFormula('y', lambda v, _: _step(v, 1, 0), None),
    'lrelu': _GradFormula('y', lambda v, alpha: _step(v, 1, alpha), None),
    'tanh': _GradFormula('y', lambda v, _: 1 - v * v, lambda v: -2 * v),
    'sigmoid': _GradFormula('y', lambda v, _: v * (1 - v), lambda v: 1 - 2 * v),
    'elu': _GradFormula('y', lambda v, _: torch.where(v > 0, 1.0, v + 1), lambda v: _step(v, 0, 1)),
    'selu': _GradFormula('y', lambda v, _: torch.where(v > 0, _SELU_SCALE, v + _SELU_SCALE * _SELU_ALPHA),
                        lambda v: _step(v, 0, 1)),
    'softplus': _GradFormula('x', lambda v, _: torch.sigmoid(v), lambda v: torch.sigmoid(v) * (1 - torch.sigmoid(v))),
    'swish': _GradFormula('x', _swish_d1, _swish_d2),
}


def _grad_source(act: str, alpha: float) -> str:
    """'x' or 'y': the variable the gradient of `act` is computed from (lrelu with alpha < 0 needs x)."""
    if act == 'lrelu' and alpha < 0:
        return 'x'
    return _grad_formulas[act].source


def _plugin():
    """The compiled extension module, or None when it is unavailable (built at most once)."""
    return custom_ops.get_plugin('bias_act_plugin', _SOURCES)


def available() -> bool:
    """Whether the CUDA kernel can be used in this process (a CUDA device and a successful build)."""
    return _plugin() is not None


class _Settings(NamedTuple):
    """The non-tensor arguments of one bias_act call, as the kernel takes them."""
    dim: int
    act_idx: int
    alpha: float
    gain: float
    clamp: float
    grad_from_x: bool
    curved: bool  # act'' is not identically zero


def _launch(s: _Settings, mode: int, x, b, y, g1, g2) -> torch.Tensor:
    """Run the kernel in `mode`; empty tensors stand for operands the mode does not read."""
    x, b, y, g1, g2 = (t.contiguous() for t in (x, b, y, g1, g2))
    return _plugin().bias_act(x, b, y, g1, g2, s.dim, s.act_idx, mode, s.grad_from_x, s.alpha, s.gain, s.clamp)


def _sum_to_bias(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Reduce a gradient with respect to x + b to the gradient of the 1-D bias along `dim`."""
    return t.sum([i for i in range(t.ndim) if i != dim])


class _BiasActCuda(torch.autograd.Function):
    """y = clamp(act(x + b) * gain); keeps only what its gradient source needs for backward."""

    @staticmethod
    def forward(ctx, x, b, s: _Settings):
        empty = x.new_empty([0])
        y = _launch(s, _FORWARD, x, b, empty, empty, empty)
        keep_y = not s.grad_from_x or s.clamp >= 0
        ctx.save_for_backward(x if s.grad_from_x else empty, b if s.grad_from_x else empty, y if keep_y else empty)
        ctx.settings = s
        return y

    @staticmethod
    def backward(ctx, dy):
        x, b, y = ctx.saved_tensors
        dx = _BiasActCudaGrad.apply(dy, x, b, y, ctx.settings)
        db = _sum_to_bias(dx, ctx.settings.dim) if ctx.needs_input_grad[1] else None
        return dx, db, None


class _BiasActCudaGrad(torch.autograd.Function):
    """dx = dy * gain * act'(u), masked by the clamp; differentiable in dy and in x (or y)."""

    @staticmethod
    def forward(ctx, dy, x, b, y, s: _Settings):
        ctx.save_for_backward(dy, x, b, y)
        ctx.settings = s
        return _launch(s, _GRAD, x, b, y, dy, dy.new_empty([0]))

    @staticmethod
    def backward(ctx, ddx):
        dy, x, b, y = ctx.saved_tensors
        s = ctx.settings
        d_dy = _BiasActCudaGrad.apply(ddx, x, b, y, s) if ctx.needs_input_grad[0] else None
        d_x = d_b = d_y = None
        if s.curved and any(ctx.needs_input_grad[1:4]):
            d2 = _launch(s, _GRAD_GRAD, x, b, y, ddx, dy)
            if s.grad_from_x:
                d_x = d2
                d_b = _sum_to_bias(d2, s.dim) if ctx.needs_input_grad[2] else None
            else:
                d_y = d2
        return d_dy, d_x, d_b, d_y, None


def bias_act_cuda(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
                  clamp: float) -> torch.Tensor:
    """bias_act of CUDA tensor x with the compiled kernel; alpha/gain/clamp already resolved (clamp < 0: none).

    `b` is None or 1-D with x.shape[dim] elements, same dtype and device as x. Same shape as x.
    """
    source = _grad_source(act, alpha)
    s = _Settings(dim, activation_funcs[act].cuda_idx, float(alpha), float(gain), float(clamp), source == 'x',
                  _grad_formulas[act].d2 is not None)
    return _BiasActCuda.apply(x, x.new_empty([0]) if b is None else b, s)
