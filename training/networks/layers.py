"""Equalized-learning-rate layers of StyleGAN2 and the small helpers they share.

Equalized learning rate (Karras et al. 2018, ProGAN §4.1; kept in StyleGAN2): parameters are
stored with unit-variance initialisation and scaled at run time by He's constant, so that Adam
sees every parameter on the same scale. `lr_multiplier` additionally slows a layer down: the
stored weight is randn / lr_multiplier and the run-time gain is lr_multiplier / sqrt(fan_in), so
the effective weight starts as randn / sqrt(fan_in) and moves lr_multiplier times slower.
"""
from typing import Optional, Sequence

import numpy as np
import torch

from torch_utils.ops import bias_act, bias_act_fast, conv2d_resample, softplus_cpu, upfirdn2d

DEFAULT_RESAMPLE_FILTER = (1, 3, 3, 1)


def check_shape(name: str, x, expected: Sequence[Optional[int]]) -> None:
    """Raise ValueError naming `name` unless `x` is a tensor of shape `expected` (None = any size)."""
    shown = ', '.join('N' if (s is None and i == 0) else ('*' if s is None else str(s)) for i, s in enumerate(expected))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f'{name}: expected a tensor of shape [{shown}], got {type(x).__name__}')
    ok = x.ndim == len(expected) and all(s is None or int(d) == s for d, s in zip(x.shape, expected))
    if not ok:
        raise ValueError(f'{name}: expected shape [{shown}], got {list(x.shape)}')


def compute_dtype(use_fp16: bool, force_fp32: bool, device: torch.device) -> torch.dtype:
    """float16 for a reduced-precision layer on a device that supports it (CUDA), else float32."""
    return torch.float16 if (use_fp16 and not force_fp32 and device.type == 'cuda') else torch.float32


def setup_resample_filter(resample_filter: Sequence[float]) -> torch.Tensor:
    """The normalised 2-D FIR filter used for resampling (default [1, 3, 3, 1] -> 4x4 binomial)."""
    return upfirdn2d.setup_filter(list(resample_filter))


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    """x / sqrt(mean(x^2) + eps) along `dim` (StyleGAN pixel norm of z and the c embedding)."""
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


class FullyConnectedLayer(torch.nn.Module):
    """Equalized-lr dense layer: y = act(x @ (w * lr_mul / sqrt(fan_in)).T + b * lr_mul).

    Stored parameters: weight ~ randn / lr_mul, bias = bias_init / lr_mul, so the effective
    initial bias equals `bias_init` whatever `lr_multiplier` is.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = 'linear',
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.activation = activation
        self.weight = torch.nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        init = torch.full([out_features], float(bias_init) / lr_multiplier)
        self.bias = torch.nn.Parameter(init) if bias else None
        self.weight_gain = lr_multiplier / np.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, in_features] -> [N, out_features].

        With a bias, the product and the bias are one addmm; relu/lrelu then fold their gain into
        it too (act(z) g = act(g z)) and run in place, softplus on float CPU tensors runs compiled in
        place (torch_utils/ops/softplus_cpu.py), other activations run on the addmm output.
        """
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is None:
            return bias_act.bias_act(x.matmul(w.t()), None, act=self.activation)
        b = b.to(x.dtype)
        if self.bias_gain != 1:
            b = b * self.bias_gain
        spec = bias_act.activation_funcs[self.activation]
        if bias_act_fast.applies(self.activation, spec.def_alpha, spec.def_gain):
            y = torch.addmm(b.unsqueeze(0) * spec.def_gain, x, w.t(), alpha=spec.def_gain)
            return bias_act_fast.activate_(y, self.activation, spec.def_alpha, -1)
        y = torch.addmm(b.unsqueeze(0), x, w.t())
        if self.activation == 'softplus' and softplus_cpu.applies(y):
            return softplus_cpu.softplus_(y)   # compiled, in place on the fresh product
        return y if self.activation == 'linear' else bias_act.bias_act(y, None, act=self.activation)

    def extra_repr(self) -> str:
        return f'in_features={self.in_features}, out_features={self.out_features}, activation={self.activation}'


class Conv2dLayer(torch.nn.Module):
    """Equalized-lr convolution with optional FIR up/downsampling, bias, activation and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = 'linear', up: int = 1, down: int = 1,
                 resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER, conv_clamp: Optional[float] = None,
                 channels_last: bool = False, trainable: bool = True):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.activation = activation
        self.up = up
        self.down = down
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_resample_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        weight = torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format)
        bias_value = torch.zeros([out_channels]) if bias else None
        if trainable:
            self.weight = torch.nn.Parameter(weight)
            self.bias = torch.nn.Parameter(bias_value) if bias else None
        else:
            self.register_buffer('weight', weight)
            self.register_buffer('bias', bias_value)

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        """x: [N, in_channels, H, W] -> [N, out_channels, H * up / down, W * up / down]."""
        w = (self.weight * self.weight_gain).to(x.dtype)
        x = conv2d_resample.conv2d_resample(x, w, f=self.resample_filter, up=self.up, down=self.down,
                                            padding=self.padding, flip_weight=(self.up == 1))
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        b = self.bias.to(x.dtype) if self.bias is not None else None
        return bias_act.bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, activation={self.activation}, '
                f'up={self.up}, down={self.down}')
