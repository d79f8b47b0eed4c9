"""StyleGAN2 discriminator parts: downsampling block, minibatch standard deviation, 4x4 epilogue.

The residual discriminator (StyleGAN2, Karras et al. 2020, Fig. 7c) halves the resolution per
block with FIR-filtered ([1, 3, 3, 1]) strided convolutions; residual paths are summed with gain
sqrt(0.5) to keep unit variance. Minibatch stddev (ProGAN, Karras et al. 2018, §3) appends the
average per-feature standard deviation over a group of samples as an extra channel. Conditioning
uses the projection discriminator (Miyato & Koyama 2018): logit = <out(x), cmap(c)> / sqrt(cmap_dim).
"""
from typing import Optional, Sequence

import numpy as np
import torch

from torch_utils.ops import upfirdn2d
from training.networks.layers import (DEFAULT_RESAMPLE_FILTER, Conv2dLayer, FullyConnectedLayer, check_shape,
                                      compute_dtype, setup_resample_filter)

ARCHITECTURES = ('orig', 'skip', 'resnet')


def _check_architecture(architecture: str) -> None:
    """Raise ValueError for an unknown architecture name."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f'architecture: expected one of {ARCHITECTURES}, got {architecture!r}')


class DiscriminatorBlock(torch.nn.Module):
    """One resolution: (FromRGB on the first block or 'skip') -> conv 3x3 -> conv 3x3 down 2 (+ 1x1 skip).

    Layers with index < freeze_layers (counted over the whole D from `first_layer_idx`) are frozen.
    """

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 first_layer_idx: int = 0, architecture: str = 'resnet', activation: str = 'lrelu',
                 resample_filter: Sequence[float] = DEFAULT_RESAMPLE_FILTER, conv_clamp: Optional[float] = None,
                 use_fp16: bool = False, fp16_channels_last: bool = False, freeze_layers: int = 0):
        super().__init__()
        _check_architecture(architecture)
        self.in_channels = in_channels
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        self.use_fp16 = use_fp16
        self.channels_last = use_fp16 and fp16_channels_last
        self.register_buffer('resample_filter', setup_resample_filter(resample_filter))
        self.num_layers = 0

        def trainable() -> bool:
            """Whether the next layer is trainable; counts the block's layers."""
            idx = first_layer_idx + self.num_layers
            self.num_layers += 1
            return idx >= freeze_layers

        common = dict(activation=activation, conv_clamp=conv_clamp, channels_last=self.channels_last)
        if in_channels == 0 or architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, trainable=trainable(), **common)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, trainable=trainable(), **common)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, down=2, resample_filter=resample_filter,
                                 trainable=trainable(), **common)
        if architecture == 'resnet':
            self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                    resample_filter=resample_filter, trainable=trainable(),
                                    channels_last=self.channels_last)

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], force_fp32: bool = False):
        """x [N, in, R, R] (None on the first block), img [N, C, R, R] -> (x [N, out, R/2, R/2], img or None)."""
        device = (x if x is not None else img).device
        dtype = compute_dtype(self.use_fp16, force_fp32, device)
        memory_format = torch.channels_last if (self.channels_last and dtype == torch.float16) \
            else torch.contiguous_format
        if x is not None:
            x = x.to(dtype=dtype, memory_format=memory_format)
        if self.in_channels == 0 or self.architecture == 'skip':
            check_shape('img', img, [None, self.img_channels, self.resolution, self.resolution])
            y = self.fromrgb(img.to(dtype=dtype, memory_format=memory_format))
            x = y if x is None else x + y
            img = upfirdn2d.downsample2d(img, self.resample_filter) if self.architecture == 'skip' else None
        if self.architecture == 'resnet':
            y = self.skip(x, gain=np.sqrt(0.5))
            x = self.conv0(x)
            x = self.conv1(x, gain=np.sqrt(0.5))
            x = y + x
        else:
            x = self.conv1(self.conv0(x))
        return x, img

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, architecture={self.architecture}'


class MinibatchStdLayer(torch.nn.Module):
    """Append num_channels feature maps holding the per-group stddev averaged over features and pixels.

    With N samples and group size G, group m holds samples m, m + N/G, m + 2N/G, ... (strided, as
    in StyleGAN2). The C channels are split into num_channels chunks; each chunk gives one channel.
    """

    def __init__(self, group_size: Optional[int], num_channels: int = 1):
        super().__init__()
        self.group_size = group_size
        self.num_channels = num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, C, H, W] -> [N, C + num_channels, H, W]."""
        n, c, h, w = x.shape
        group = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % group != 0 or c % f != 0:
            raise ValueError(f'x: batch {n} must be divisible by the group size {group} and channels {c} '
                             f'by num_channels {f}')
        y = x.reshape(group, -1, f, c // f, h, w)
        y = y - y.mean(dim=0)
        y = (y.square().mean(dim=0) + 1e-8).sqrt()
        y = y.mean(dim=[2, 3, 4]).reshape(-1, f, 1, 1)
        y = y.repeat(group, 1, h, w)
        return torch.cat([x, y], dim=1)

    def extra_repr(self) -> str:
        return f'group_size={self.group_size}, num_channels={self.num_channels}'


class DiscriminatorEpilogue(torch.nn.Module):
    """4x4 head: (FromRGB for 'skip') -> minibatch std -> conv 3x3 -> FC -> out FC -> projection.

    `features` returns the flattened post-conv feature [N, C * R * R] (consumed by pose predictors);
    `head` maps it to the logit [N, 1].
    """

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 architecture: str = 'resnet', mbstd_group_size: Optional[int] = 4, mbstd_num_channels: int = 1,
                 activation: str = 'lrelu', conv_clamp: Optional[float] = None):
        super().__init__()
        _check_architecture(architecture)
        self.in_channels = in_channels
        self.cmap_dim = cmap_dim
        self.resolution = resolution
        self.img_channels = img_channels
        self.architecture = architecture
        if architecture == 'skip':
            self.fromrgb = Conv2dLayer(img_channels, in_channels, kernel_size=1, activation=activation)
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution ** 2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    @property
    def feature_dim(self) -> int:
        """Length of the vector returned by `features`."""
        return self.in_channels * self.resolution ** 2

    def features(self, x: torch.Tensor, img: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x [N, in, R, R] (+ img [N, C, R, R] for 'skip') -> flattened feature [N, in * R * R], float32."""
        check_shape('x', x, [None, self.in_channels, self.resolution, self.resolution])
        x = x.to(dtype=torch.float32, memory_format=torch.contiguous_format)
        if self.architecture == 'skip':
            check_shape('img', img, [x.shape[0], self.img_channels, self.resolution, self.resolution])
            x = x + self.fromrgb(img.to(torch.float32))
        if self.mbstd is not None:
            x = self.mbstd(x)
        return self.conv(x).flatten(1)

    def head(self, features: torch.Tensor, cmap: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Feature [N, in * R * R] (+ cmap [N, cmap_dim]) -> logit [N, 1]."""
        x = self.out(self.fc(features))
        if self.cmap_dim > 0:
            check_shape('cmap', cmap, [x.shape[0], self.cmap_dim])
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / np.sqrt(self.cmap_dim))
        return x

    def forward(self, x: torch.Tensor, img: Optional[torch.Tensor], cmap: Optional[torch.Tensor]) -> torch.Tensor:
        """x [N, in, R, R], img (for 'skip'), cmap [N, cmap_dim] -> logit [N, 1]; always float32."""
        return self.head(self.features(x, img), cmap)

    def extra_repr(self) -> str:
        return f'resolution={self.resolution}, cmap_dim={self.cmap_dim}, architecture={self.architecture}'
