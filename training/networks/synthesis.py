"""StyleGAN2 synthesis network (Karras et al. 2020, §2 and Fig. 7): ws -> image.

A learned 4x4 constant is refined block by block; each block doubles the resolution with two
modulated 3x3 convolutions (plus noise), and in the 'skip' architecture adds its own ToRGB
output to the upsampled image of the previous block. Each conv consumes one w; a block's ToRGB
shares its w with the next block's first conv, so num_ws = number of convs + 1 (final ToRGB).
"""
from typing import Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import persistence
from torch_utils.ops import bias_act, bias_act_fast, upfirdn2d
from training.networks import layer_epilogue, torgb_skip
from training.networks.layers import (DEFAULT_RESAMPLE_FILTER, Conv2dLayer, FullyConnectedLayer, check_shape,
                                      compute_dtype, setup_resample_filter)
from training.networks.modulated_conv import demodulation_coefficients, modulate_and_convolve, modulated_conv2d

NOISE_MODES = ('random', 'const', 'none')
ARCHITECTURES = ('orig', 'skip', 'resnet')


class SynthesisLayer(torch.nn.Module):
    """Modulated conv (eq. 1-3) + per-pixel noise * learned strength + bias + lrelu, optional up=2."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = 'lrelu',
                 resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER, conv_clamp: Optional[float] = None,
                 channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.resolution = resolution
        self.up = up
        self.use_noise = use_noise
        self.activation = activation
        self.conv_clamp = conv_clamp
        self.register_buffer('resample_filter', setup_resample_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = bias_act.activation_funcs[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        if use_noise:
            self.register_buffer('noise_const', torch.randn([resolution, resolution]))
            self.noise_strength = torch.nn.Parameter(torch.zeros([]))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))

    def _noise(self, x: torch.Tensor, noise_mode: str) -> Optional[torch.Tensor]:
        """Noise image [N, 1, R, R] (random), [R, R] (const) or None, already scaled by the strength."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f'noise_mode: expected one of {NOISE_MODES}, got {noise_mode!r}')
        if not self.use_noise or noise_mode == 'none':
            return None
        if noise_mode == 'random':
            shape = [x.shape[0], 1, self.resolution, self.resolution]
            return torch.randn(shape, device=x.device, dtype=torch.float32) * self.noise_strength
        return self.noise_const * self.noise_strength

    def _offset(self, noise: Optional[torch.Tensor], gain: float) -> torch.Tensor:
        """gain * (noise + bias), broadcastable to the output: [1 or N, O, R, R], or [1, O, 1, 1] without noise."""
        bias = self.bias.reshape(1, -1, 1, 1) * gain
        if noise is None:
            return bias
        return torch.add(bias, noise.reshape(-1, 1, self.resolution, self.resolution), alpha=gain)

    def _compiled_epilogue(self, x: torch.Tensor, styles: torch.Tensor, noise: Optional[torch.Tensor],
                           act_gain: float, alpha: float, clamp: float, resample: dict) -> torch.Tensor:
        """The non-fused layer with demodulation, gain, noise, bias and activation in one compiled pass
        (alpha is relu's 0 or lrelu's slope)."""
        y = modulate_and_convolve(x, self.weight, styles, **resample)
        scale = demodulation_coefficients(self.weight, styles) * act_gain
        noise = noise * act_gain if noise is not None else None
        return layer_epilogue.layer_epilogue(y, scale, self.bias * act_gain, noise,
                                             *bias_act_fast.clamp_bounds(self.activation, alpha, clamp), alpha)

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = 'random', fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        """x [N, in, R/up, R/up], w [N, w_dim] -> [N, out, R, R].

        act(demod(conv) + noise + bias) * gain, clamped. For lrelu (positively homogeneous) the gain,
        noise and bias are folded into the convolution's epilogue, act(z) * g = act(g z), and the clamp
        to [-c, c] after lrelu equals a clamp to [-c / alpha, c] before it, so one pass adds the
        offset and one or two passes apply the activation (see bias_act_fast.py).
        """
        styles = self.affine(w)
        noise = self._noise(x, noise_mode)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        act_gain = self.act_gain * gain
        resample = dict(up=self.up, padding=self.padding, resample_filter=self.resample_filter,
                        flip_weight=(self.up == 1))
        alpha = bias_act.activation_funcs[self.activation].def_alpha
        if bias_act_fast.applies(self.activation, alpha, act_gain):
            fast_clamp = -1 if clamp is None else clamp
            if not fused_modconv and layer_epilogue.applies(x):
                return self._compiled_epilogue(x, styles, noise, act_gain, alpha, fast_clamp, resample)
            x = modulated_conv2d(x, self.weight, styles, noise=self._offset(noise, act_gain), gain=act_gain,
                                 fused_modconv=fused_modconv, **resample)
            return bias_act_fast.activate_(x, self.activation, alpha, fast_clamp)
        x = modulated_conv2d(x, self.weight, styles, noise=noise, fused_modconv=fused_modconv, **resample)
        return bias_act.bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=act_gain, clamp=clamp)

    def extra_repr(self) -> str:
        return (f'in_channels={self.in_channels}, out_channels={self.out_channels}, '
                f'resolution={self.resolution}, up={self.up}, activation={self.activation}')


class ToRGBLayer(torch.nn.Module):
    """Modulated conv without demodulation (weight gain 1/sqrt(in * k^2)) + bias: features -> image."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None, channels_last: bool = False):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.weight = torch.nn.Parameter(
            torch.randn([out_channels, in_channels, kernel_size, kernel_size]).to(memory_format=memory_format))
        self.bias = torch.nn.Parameter(torch.zeros([out_channels]))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / np.sqrt(in_channels * kernel_size ** 2)

    def _conv(self, x: torch.Tensor, styles: torch.Tensor, fused_modconv: bool) -> torch.Tensor:
        """conv(x, weight * styles) + bias: x [N, in, H, W], styles [N, in] -> [N, out, H, W] (a view if fused).

        The bias is the convolution's own (added in its epilogue, no extra pass over the output).
        """
        check_shape('styles', styles, [x.shape[0], self.in_channels])
        weight, bias, styles = self.weight.to(x.dtype), self.bias.to(x.dtype), styles.to(x.dtype)
        if not fused_modconv:
            return F.conv2d(x * styles[:, :, None, None], weight, bias, padding=self.padding)
        batch = x.shape[0]
        w = (weight.unsqueeze(0) * styles[:, None, :, None, None]).reshape(-1, *weight.shape[1:])
        y = F.conv2d(x.reshape(1, -1, *x.shape[2:]), w, bias.repeat(batch), padding=self.padding, groups=batch)
        return y.reshape(batch, self.out_channels, *y.shape[2:])

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True,
                skip: Optional[torch.Tensor] = None,
                skip_taps: Optional[torgb_skip.PhaseWeights] = None) -> torch.Tensor:
        """x [N, in, H, W], w [N, w_dim] -> clamp(conv(x, weight * styles) + bias) [N, out, H, W].

        With `skip` [N, out, H, W] (float32) returns skip + that, in float32 and contiguous: the
        image sum of the skip architecture, added in place into the fresh output where autograd allows.
        With `skip_taps` too (torgb_skip.phase_weights of an upsampling filter), skip is
        [N, out, H/2, W/2], and its 2x upsampling, the convolution and the sum are one compiled pass;
        the caller has checked torgb_skip.applies.
        """
        styles = self.affine(w) * self.weight_gain
        if skip_taps is not None:
            modulated = self.weight[:, :, 0, 0].unsqueeze(0) * styles.unsqueeze(1)
            return torgb_skip.torgb_skip(x, modulated, self.bias, skip, skip_taps, self.conv_clamp)
        y = self._conv(x, styles, fused_modconv)
        fresh = not fused_modconv
        if self.conv_clamp is not None:
            y, fresh = F.hardtanh(y, -self.conv_clamp, self.conv_clamp), True   # saves its input, not y
        if skip is None:
            return y
        converted = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        fresh = fresh or converted is not y
        return converted.add_(skip) if fresh else converted + skip

    def extra_repr(self) -> str:
        return f'in_channels={self.in_channels}, out_channels={self.out_channels}'


class SynthesisBlock(torch.nn.Module):
    """One resolution: (const or up-conv0) -> conv1 -> ToRGB; 'orig', 'skip' or 'resnet' wiring.

    in_channels == 0 makes the first block, which starts from a learned [out, R, R] constant.
    `up` is 2 for the usual doubling block and 1 for a block that keeps its input resolution.
    """

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, architecture: str = 'skip', up: int = 2,
                 resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER, conv_clamp: Optional[float] = 256,
                 use_fp16: bool = False, fp16_channels_last: bool = False,
                 fused_modconv_default: Union[bool, str] = True, **layer_kwargs):
        super().__init__()
        if architecture not in ARCHITECTURES:
            raise ValueError(f'architecture: expected one of {ARCHITECTURES}, got {architecture!r}')
        if up not in (1, 2):
            raise ValueError(f'up: expected 1 or 2, got {up!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.w_dim = w_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.is_last = is_last
        self.architecture = architecture
        self.up = up
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.fused_modconv_default = fused_modconv_default
        self.register_buffer('resample_filter', setup_resample_filter(resample_filter))
        # Read once here, on the host: per forward it would cost a device sync on CUDA.
        self.skip_taps = torgb_skip.phase_weights(self.resample_filter)
        common = dict(w_dim=w_dim, resolution=resolution, resample_filter=resample_filter, conv_clamp=conv_clamp,
                      channels_last=self.channels_last)
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = torch.nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, up=up, **common, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == 'skip':
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp,
                                    channels_last=self.channels_last)
            self.num_torgb += 1
        if in_channels != 0 and architecture == 'resnet':
            self.skip = Conv2dLayer(in_channels, out_channels, kernel_size=1, bias=False, up=up,
                                    resample_filter=resample_filter, channels_last=self.channels_last)

    def _resolve_fused(self, fused_modconv: Union[bool, str, None]) -> bool:
        """None -> the block default; 'inference_only' -> fused only when not training."""
        fused = self.fused_modconv_default if fused_modconv is None else fused_modconv
        return (not self.training) if fused == 'inference_only' else bool(fused)

    def _check_inputs(self, x, img, ws) -> None:
        """Raise ValueError on a wrongly shaped x, img or ws."""
        check_shape('ws', ws, [None, self.num_conv + self.num_torgb, self.w_dim])
        res_in = self.resolution // self.up
        if self.in_channels != 0:
            check_shape('x', x, [ws.shape[0], self.in_channels, res_in, res_in])
        if img is not None:
            check_shape('img', img, [ws.shape[0], self.img_channels, res_in, res_in])

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                force_fp32: bool = False, fused_modconv: Union[bool, str, None] = None, update_emas: bool = False,
                **layer_kwargs):
        """x [N, in, R/up, R/up] (None for the first block), img [N, C, R/up, R/up] or None,
        ws [N, num_conv + num_torgb, w_dim] -> (x [N, out, R, R], img [N, C, R, R] float32 or None).
        update_emas is accepted for the G(..., update_emas) convention; blocks keep no running stats."""
        self._check_inputs(x, img, ws)
        w_iter = iter(ws.unbind(dim=1))
        dtype = compute_dtype(self.use_fp16, force_fp32, ws.device)
        memory_format = torch.channels_last if (self.channels_last and dtype == torch.float16) \
            else torch.contiguous_format
        fused = self._resolve_fused(fused_modconv)
        if self.in_channels == 0:
            x = self.const.to(dtype).unsqueeze(0).repeat([ws.shape[0], 1, 1, 1]).to(memory_format=memory_format)
            x = self.conv1(x, next(w_iter), fused_modconv=fused, **layer_kwargs)
        elif self.architecture == 'resnet':
            x = x.to(dtype=dtype, memory_format=memory_format)
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x, next(w_iter), fused_modconv=fused, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused, gain=np.sqrt(0.5), **layer_kwargs)
            x = y + x
        else:
            x = x.to(dtype=dtype, memory_format=memory_format)
            x = self.conv0(x, next(w_iter), fused_modconv=fused, **layer_kwargs)
            x = self.conv1(x, next(w_iter), fused_modconv=fused, **layer_kwargs)
        adds_image = self.is_last or self.architecture == 'skip'
        if img is not None and self.up > 1:
            if adds_image and self.up == 2 and torgb_skip.applies(x, img, self.torgb.weight, self.skip_taps):
                # ToRGB upsamples img itself, in one compiled pass with its convolution and the sum
                return x, self.torgb(x, next(w_iter), fused_modconv=fused, skip=img, skip_taps=self.skip_taps)
            img = upfirdn2d.upsample2d(img, self.resample_filter, up=self.up)
        if adds_image:
            if img is None:
                y = self.torgb(x, next(w_iter), fused_modconv=fused)
                img = y.to(dtype=torch.float32, memory_format=torch.contiguous_format)
            else:   # adds into ToRGB's fresh output, never into img: img may be a view autograd saved
                img = self.torgb(x, next(w_iter), fused_modconv=fused, skip=img)
        return x, img

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, architecture={self.architecture}, up={self.up}'


@persistence.persistent_class
class SynthesisNetwork(torch.nn.Module):
    """ws [N, num_ws, w_dim] -> img [N, img_channels, img_resolution, img_resolution] (float32).

    Channels at resolution r: min(channel_base // r, channel_max). The `num_fp16_res` highest
    resolutions are marked for float16, which is used only on CUDA; elsewhere they run float32.
    """

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, num_fp16_res: int = 4, **block_kwargs):
        super().__init__()
        log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 4 or 2 ** log2 != img_resolution:
            raise ValueError(f'img_resolution: expected a power of two >= 4, got {img_resolution}')
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.num_fp16_res = num_fp16_res
        self.block_resolutions = [2 ** i for i in range(2, log2 + 1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = channels[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(in_channels, channels[res], w_dim=w_dim, resolution=res,
                                   img_channels=img_channels, is_last=is_last, use_fp16=(res >= fp16_resolution),
                                   **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f'b{res}', block)

    def split_ws(self, ws: torch.Tensor):
        """Per-block slices of ws; a block's ToRGB w overlaps the next block's first conv w."""
        block_ws, w_idx = [], 0
        for res in self.block_resolutions:
            block = getattr(self, f'b{res}')
            block_ws.append(ws.narrow(1, w_idx, block.num_conv + block.num_torgb))
            w_idx += block.num_conv
        return block_ws

    def forward(self, ws: torch.Tensor, update_emas: bool = False, **block_kwargs) -> torch.Tensor:
        """ws [N, num_ws, w_dim] -> img; block_kwargs: noise_mode, fused_modconv, force_fp32."""
        check_shape('ws', ws, [None, self.num_ws, self.w_dim])
        ws = ws.to(torch.float32)
        x = img = None
        for res, cur_ws in zip(self.block_resolutions, self.split_ws(ws)):
            x, img = getattr(self, f'b{res}')(x, img, cur_ws, update_emas=update_emas, **block_kwargs)
        return img

    def extra_repr(self) -> str:
        return (f'w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, '
                f'img_channels={self.img_channels}, num_fp16_res={self.num_fp16_res}')
