"""Exponential moving averages of G and D (system.md §1.4): half-life in images, with ramp-up.

After each optimiser step, every parameter p_ema <- beta * p_ema + (1 - beta) * p with
beta = 0.5 ** (batch / ema_nimg), so the weight of a step halves every `ema_nimg` images.
ema_nimg = ema_kimg * 1000, limited to cur_nimg * ema_rampup while training is young (the
ramp-up; None switches it off). Buffers (e.g. the mapping's w_avg, G's NRR) are copied.
"""
from typing import Optional

import torch

MIN_EMA_NIMG = 1e-8          # keeps beta defined at cur_nimg = 0 with ramp-up (beta -> 0: plain copy)


def ema_beta(batch: int, cur_nimg: int, ema_kimg: float, ema_rampup: Optional[float]) -> float:
    """beta = 0.5 ** (batch / max(ema_nimg, 1e-8)), ema_nimg = min(ema_kimg * 1000, cur_nimg * ema_rampup)."""
    ema_nimg = ema_kimg * 1000
    if ema_rampup is not None:
        ema_nimg = min(ema_nimg, cur_nimg * ema_rampup)
    return 0.5 ** (batch / max(ema_nimg, MIN_EMA_NIMG))


@torch.no_grad()
def update_ema_(ema_module: torch.nn.Module, module: torch.nn.Module, beta: float) -> None:
    """ema_module's parameters <- beta * ema + (1 - beta) * module's; buffers copied. Same architecture."""
    params = list(module.parameters())
    ema_params = list(ema_module.parameters())
    if len(params) != len(ema_params):
        raise ValueError(f'EMA: {type(ema_module).__name__} has {len(ema_params)} parameters, '
                         f'the trained module {len(params)}')
    if params:                  # one call each: the tiny networks have ~170 parameters
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - beta)
    buffers, ema_buffers = list(module.buffers()), list(ema_module.buffers())
    if buffers:
        torch._foreach_copy_(ema_buffers, buffers)
