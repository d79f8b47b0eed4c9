"""Super-resolution of the raw rendering (system.md §2.10, EG3D §4.2): antialiased resize + StyleGAN2 blocks.

The raw RGB image and the 32-channel feature image at the neural rendering resolution r are
resized (bilinear, antialiased) to the module's native input resolution, then refined by
StyleGAN2 synthesis blocks in the 'skip' architecture: each block's ToRGB output is added (out of
place, machine.md §5) onto the upsampled RGB of the previous block, starting from the raw RGB.
Every layer is modulated by the LAST w. Blocks that keep the resolution come first, then one
doubling block per factor of two between the native input and the output.

Paper layouts (the EG3D names count the factor from the default NRR of 64):
  x2  (Hybrid2X):   128 output, native input 64,  blocks 32->128 ch @64 px (no up), 128->64 ch @128 px
  x4  (Hybrid4X):   256 output, native input 128, blocks 32->128 ch @128 px (no up), 128->64 ch @256 px
  x8  (Hybrid8XDC): 512 output, native input 128, blocks 32->256 ch @256 px, 256->128 ch @512 px
"""
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from torch_utils import persistence
from training.networks.layers import check_shape
from training.networks.synthesis import SynthesisBlock

IMG_CHANNELS = 3
FEATURE_CHANNELS = 32
NATIVE_INPUT_RESOLUTION = {128: 64, 256: 128, 512: 128}    # output resolution -> native input (§2.10)
DEFAULT_CHANNELS = {2: (128, 64), 4: (256, 128)}            # output / native input -> block channels


def resize_antialiased(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """Bilinear, antialiased resize of [N, C, H, W] to [N, C, resolution, resolution] (no-op when equal).

    Computed in float32 for half-precision inputs (the antialiased CPU kernel has no bfloat16 version)
    and returned in the input's dtype.
    """
    if x.shape[-2:] == (resolution, resolution):
        return x
    y = F.interpolate(x if x.dtype == torch.float64 else x.float(), size=(resolution, resolution), mode='bilinear',
                      align_corners=False, antialias=True)
    return y.to(x.dtype)


def _check_square(name: str, x: torch.Tensor) -> None:
    """Raise ValueError naming `name` unless x [N, C, H, W] has H == W."""
    if x.shape[-1] != x.shape[-2]:
        raise ValueError(f'{name}: expected a square image, got shape {list(x.shape)}')


@persistence.persistent_class
class SuperResolution(torch.nn.Module):
    """rgb [N, 3, r, r], x [N, feature_channels, r, r], ws [N, *, w_dim] -> image [N, 3, R, R] (§2.10).

    `channels` lists each block's output channels; with k = log2(img_resolution / input_resolution)
    the last k blocks double the resolution and the ones before keep it. `use_fp16` runs the
    blocks in float16 on CUDA only (float32 elsewhere); `conv_clamp` clamps every conv output.
    """

    def __init__(self, img_resolution: int, input_resolution: int, channels: Sequence[int],
                 feature_channels: int = FEATURE_CHANNELS, w_dim: int = 512, use_fp16: bool = True,
                 conv_clamp: Optional[float] = 256, **block_kwargs):
        super().__init__()
        num_up = _num_doublings(img_resolution, input_resolution)
        channels = [int(ch) for ch in channels]
        if len(channels) < num_up or min(channels, default=1) < 1:
            raise ValueError(f'channels: expected at least {num_up} positive block widths for '
                             f'{input_resolution} -> {img_resolution}, got {channels}')
        self.img_resolution = img_resolution
        self.input_resolution = input_resolution
        self.feature_channels = feature_channels
        self.w_dim = w_dim
        self.num_blocks = len(channels)
        ups = [1] * (len(channels) - num_up) + [2] * num_up
        resolution, in_channels = input_resolution, feature_channels
        for idx, (out_channels, up) in enumerate(zip(channels, ups)):
            resolution *= up
            block = SynthesisBlock(in_channels, out_channels, w_dim=w_dim, resolution=resolution,
                                   img_channels=IMG_CHANNELS, is_last=(idx == len(channels) - 1),
                                   architecture='skip', up=up, use_fp16=use_fp16, conv_clamp=conv_clamp,
                                   **block_kwargs)
            setattr(self, f'block{idx}', block)
            in_channels = out_channels

    def _check_inputs(self, rgb, x, ws) -> None:
        """Raise ValueError naming the argument on wrongly shaped rgb, x or ws."""
        check_shape('rgb', rgb, [None, IMG_CHANNELS, None, None])
        _check_square('rgb', rgb)
        r = int(rgb.shape[-1])
        check_shape('x', x, [rgb.shape[0], self.feature_channels, r, r])
        check_shape('ws', ws, [rgb.shape[0], None, self.w_dim])
        if ws.shape[1] < 1:
            raise ValueError(f'ws: expected at least one w, got shape {list(ws.shape)}')

    def forward(self, rgb: torch.Tensor, x: torch.Tensor, ws: torch.Tensor, noise_mode: str = 'none',
                **block_kwargs) -> torch.Tensor:
        """rgb [N, 3, r, r] (raw RGB), x [N, feature_channels, r, r], ws [N, *, w_dim] -> [N, 3, R, R] float32.

        Only ws[:, -1] is used. block_kwargs: force_fp32, fused_modconv, update_emas.
        """
        self._check_inputs(rgb, x, ws)
        rgb = resize_antialiased(rgb, self.input_resolution)
        x = resize_antialiased(x, self.input_resolution)
        w = ws[:, -1].to(torch.float32).unsqueeze(1)
        for idx in range(self.num_blocks):
            block = getattr(self, f'block{idx}')
            block_ws = w.expand(-1, block.num_conv + block.num_torgb, -1)
            x, rgb = block(x, rgb, block_ws, noise_mode=noise_mode, **block_kwargs)
        return rgb

    def extra_repr(self) -> str:
        return (f'input_resolution={self.input_resolution}, img_resolution={self.img_resolution}, '
                f'feature_channels={self.feature_channels}, w_dim={self.w_dim}')


def _num_doublings(img_resolution: int, input_resolution: int) -> int:
    """log2(img_resolution / input_resolution); ValueError unless it is a positive integer."""
    ratio = img_resolution / input_resolution if input_resolution > 0 else 0
    num_up = int(round(np.log2(ratio))) if ratio > 0 else 0
    if num_up < 1 or input_resolution * 2 ** num_up != img_resolution:
        raise ValueError(f'input_resolution: expected img_resolution ({img_resolution}) / input_resolution '
                         f'({input_resolution}) to be a power of two >= 2')
    return num_up


def build_superresolution(img_resolution: int, input_resolution: Optional[int] = None,
                          channels: Optional[Sequence[int]] = None, **kwargs) -> SuperResolution:
    """The SR module of §2.10 for an output resolution; kwargs go to SuperResolution (w_dim, use_fp16, ...).

    input_resolution (the native NRR) defaults to 64 for 128 output, 128 for 256 and 512 output,
    and img_resolution / 2 otherwise. channels default by scale: x2 -> (128, 64) after a
    resolution-keeping block (Hybrid2X/4X), x4 -> (256, 128) with two doubling blocks (8XDC).
    """
    if input_resolution is None:
        input_resolution = NATIVE_INPUT_RESOLUTION.get(img_resolution, img_resolution // 2)
    scale = 2 ** _num_doublings(img_resolution, input_resolution)
    if channels is None:
        if scale not in DEFAULT_CHANNELS:
            raise ValueError(f'channels: no default layout for a x{scale} upsampling '
                             f'({input_resolution} -> {img_resolution}); pass the block widths')
        channels = DEFAULT_CHANNELS[scale]
    return SuperResolution(img_resolution, input_resolution, channels=tuple(channels), **kwargs)
