"""Modulated convolution with weight demodulation (StyleGAN2, Karras et al. 2020, §2.2, eq. 1-3).

eq. 1  modulate:    w'_ijk  = s_i * w_ijk                       (s = per-sample style, i = input ch.)
eq. 2  std of out:  sigma_j = sqrt(sum_ik w'_ijk^2)
eq. 3  demodulate:  w''_ijk = w'_ijk / sqrt(sum_ik w'_ijk^2 + eps)

Two equivalent forms: the fused form builds one weight per sample and runs a single grouped
convolution; the non-fused form scales the activations instead (x * s, convolve with the shared
weight, multiply the output by 1/sigma_j), which is cheaper to differentiate during training.

Both forms also apply a scalar output `gain` and add a broadcastable `noise` term in the same
pass as the demodulation (out = demod(conv) * gain + noise), so a synthesis layer can fold its
activation gain, noise and bias into the convolution's epilogue (synthesis.py).
"""
from typing import Optional

import numpy as np
import torch

from torch_utils.ops import channels_last_cpu, conv2d_resample

DEMOD_EPS = 1e-8


def _prenormalize_fp16(weight: torch.Tensor, styles: torch.Tensor):
    """Rescale weight and styles before an fp16 demodulated conv to avoid overflow (result unchanged)."""
    in_channels, kh, kw = weight.shape[1:]
    w_max = weight.norm(float('inf'), dim=[1, 2, 3], keepdim=True)
    weight = weight * (1 / np.sqrt(in_channels * kh * kw) / w_max)
    styles = styles / styles.norm(float('inf'), dim=1, keepdim=True)
    return weight, styles


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / sigma_j per sample and output channel (eq. 2-3). weight [O, I, kh, kw], styles [N, I] -> [N, O].

    sum_ik (s_i w_ijk)^2 = sum_i s_i^2 (sum_k w_ijk^2): one [N, I] x [I, O] product, no per-sample weights.
    """
    squared = weight.square().sum(dim=[2, 3]).to(styles.dtype)
    return (styles.square() @ squared.t() + DEMOD_EPS).rsqrt()


def _check_inputs(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor) -> None:
    """Raise ValueError naming weight or styles when their shapes do not fit x [N, I, H, W]."""
    batch, in_channels = x.shape[0], x.shape[1]
    if weight.ndim != 4 or weight.shape[1] != in_channels:
        raise ValueError(f'weight: expected shape [O, {in_channels}, kh, kw], got {list(weight.shape)}')
    if styles.shape != (batch, in_channels):
        raise ValueError(f'styles: expected shape [{batch}, {in_channels}], got {list(styles.shape)}')


def modulate_and_convolve(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, up: int = 1, down: int = 1,
                          padding: int = 0, resample_filter: Optional[torch.Tensor] = None,
                          flip_weight: bool = True) -> torch.Tensor:
    """conv(x * styles, weight) with the resampling: the non-fused form before demodulation, gain and noise."""
    if (down == 1 and not (torch.is_grad_enabled() and styles.requires_grad)
            and conv2d_resample.upsampling_prefers_channels_last(x, weight, up, 1)):
        x = channels_last_cpu.scaled(x, styles)   # written channels-last, as the upsampling convolution reads it
    else:
        x = x * styles.to(x.dtype).reshape(x.shape[0], -1, 1, 1)
    return conv2d_resample.conv2d_resample(x, weight.to(x.dtype), f=resample_filter, up=up, down=down,
                                           padding=padding, flip_weight=flip_weight)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     noise: Optional[torch.Tensor] = None, up: int = 1, down: int = 1, padding: int = 0,
                     resample_filter: Optional[torch.Tensor] = None, demodulate: bool = True,
                     flip_weight: bool = True, fused_modconv: bool = True, gain: float = 1) -> torch.Tensor:
    """x [N, I, H, W], weight [O, I, kh, kw], styles [N, I] -> [N, O, H * up / down, W * up / down].

    Returns demod(conv(x, weight * styles)) * gain + noise. `noise` (broadcastable to the output,
    e.g. [N, 1, H', W'], or a bias [1, O, 1, 1]) is added after demodulation and gain.
    `padding` is the convolution's own padding (kernel_size // 2 keeps the size).
    """
    _check_inputs(x, weight, styles)
    batch, in_channels = x.shape[0], x.shape[1]
    if x.dtype == torch.float16 and demodulate:
        weight, styles = _prenormalize_fp16(weight, styles)
    resample = dict(f=resample_filter, up=up, down=down, padding=padding, flip_weight=flip_weight)
    scale = demodulation_coefficients(weight, styles) * gain if demodulate else None   # [N, O] or None
    noise = noise.to(x.dtype) if noise is not None else None
    if not fused_modconv:
        x = modulate_and_convolve(x, weight, styles, up=up, down=down, padding=padding,
                                  resample_filter=resample_filter, flip_weight=flip_weight)
        if scale is None:
            x = x * gain if gain != 1 else x
            return x + noise if noise is not None else x
        scale = scale.to(x.dtype).reshape(batch, -1, 1, 1)
        return torch.addcmul(noise, x, scale) if noise is not None else x * scale
    coefficients = styles.reshape(batch, 1, -1, 1, 1)
    if scale is not None:
        coefficients = coefficients * scale.reshape(batch, -1, 1, 1, 1)
    elif gain != 1:
        coefficients = coefficients * gain
    w = weight.unsqueeze(0) * coefficients
    out_channels = weight.shape[0]
    x = x.reshape(1, batch * in_channels, *x.shape[2:])
    w = w.reshape(batch * out_channels, in_channels, *weight.shape[2:])
    x = conv2d_resample.conv2d_resample(x, w.to(x.dtype), groups=batch, **resample)
    x = x.reshape(batch, out_channels, *x.shape[2:])
    return x + noise if noise is not None else x
