"""Fast pure-PyTorch bias_act for relu/lrelu: two passes over memory instead of three or four.

relu and lrelu are positively homogeneous, act(g * z) = g * act(z) for g > 0, so
    act(x + b) * g = act(g * x + g * b),
and `torch.add(g * b, x, alpha=g)` does the bias and the gain in one pass. Clamping to [-c, c]
after lrelu equals clamping z to [-c / alpha, c] before it (relu: [-c, c]). The activation runs
in place last (autograd saves its output, which nothing modifies afterwards). Under autograd the
clamp is a `hardtanh` (out of place), whose backward is one pass over its saved input; an
in-place clamp would make autograd save a copy of its input and take four passes in the backward
(ge, le, and, where). The two differ only for inputs exactly on a clamp bound, where hardtanh
passes no gradient. Without autograd the clamp runs in place. Other activations, and gains <= 0,
gain nothing from this and use the reference.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

HOMOGENEOUS = ('relu', 'lrelu')


def applies(act: str, alpha: float, gain: float) -> bool:
    """Whether the two-pass form is exact for this activation and these parameters."""
    return act in HOMOGENEOUS and gain > 0 and (act == 'relu' or alpha > 0)


def clamp_bounds(act: str, alpha: float, clamp: float) -> Tuple[float, float]:
    """(low, high) such that clamp(act(z), -clamp, clamp) = act(clamp(z, low, high)) for relu/lrelu
    (see applies()); clamp < 0 means none: (-inf, inf)."""
    if clamp < 0:
        return -math.inf, math.inf
    return (-clamp / alpha if act == 'lrelu' else -clamp), clamp


def activate_(z: torch.Tensor, act: str, alpha: float, clamp: float) -> torch.Tensor:
    """clamp(act(z), -clamp, clamp) for relu/lrelu (see applies(); clamp < 0: none), overwriting z where it can.

    z must be a fresh tensor that autograd has not saved (e.g. the output of an add); shape kept.
    """
    if clamp >= 0:
        low, high = clamp_bounds(act, alpha, clamp)
        z = F.hardtanh(z, low, high) if z.requires_grad else z.clamp_(low, high)
    return F.leaky_relu_(z, alpha) if act == 'lrelu' else z.relu_()


def bias_act_fast(x: torch.Tensor, b: Optional[torch.Tensor], dim: int, act: str, alpha: float, gain: float,
                  clamp: float) -> torch.Tensor:
    """clamp(act(x + b) * gain, -clamp, clamp) for relu/lrelu with gain > 0 (see applies()); same shape as x.

    x: any shape; b: [x.shape[dim]] or None; clamp < 0 means no clamping.
    """
    if b is None:
        y = x * gain
    else:
        y = torch.add((b * gain).reshape([-1 if i == dim else 1 for i in range(x.ndim)]), x, alpha=gain)
    return activate_(y, act, alpha, clamp)
