"""StyleGAN2 generator and conditional residual discriminator (Karras et al. 2020; ADA 2020 for c).

G(z, c) = G.synthesis(G.mapping(z, c)); D(img, c) is a residual CNN down to 4x4 whose logit is
projected onto cmap = D.mapping(c) (projection discriminator). These are the backbones that the
tri-plane generator, the background generator and the dual discriminator build on.
"""
from typing import Optional

import numpy as np
import torch

from torch_utils import persistence
from training.networks.discriminator_blocks import DiscriminatorBlock, DiscriminatorEpilogue
from training.networks.layers import check_shape
from training.networks.mapping import MappingNetwork
from training.networks.synthesis import SynthesisNetwork


@persistence.persistent_class
class Generator(torch.nn.Module):
    """z [N, z_dim], c [N, c_dim] -> img [N, img_channels, img_resolution, img_resolution]."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, img_resolution: int, img_channels: int,
                 mapping_kwargs: Optional[dict] = None, **synthesis_kwargs):
        super().__init__()
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=img_resolution, img_channels=img_channels,
                                          **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws,
                                      **(mapping_kwargs or {}))

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False,
                **synthesis_kwargs) -> torch.Tensor:
        """Map then synthesise; synthesis_kwargs: noise_mode, fused_modconv, force_fp32."""
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff,
                          update_emas=update_emas)
        return self.synthesis(ws, update_emas=update_emas, **synthesis_kwargs)


@persistence.persistent_class
class Discriminator(torch.nn.Module):
    """img [N, img_channels, R, R], c [N, c_dim] -> logits [N, 1].

    Channels at resolution r: min(channel_base // r, channel_max); the `num_fp16_res` highest
    resolutions use float16 on CUDA only. cmap_dim defaults to the 4x4 channel count.
    """

    def __init__(self, c_dim: int, img_resolution: int, img_channels: int, architecture: str = 'resnet',
                 channel_base: int = 32768, channel_max: int = 512, num_fp16_res: int = 4,
                 conv_clamp: Optional[float] = 256, cmap_dim: Optional[int] = None,
                 block_kwargs: Optional[dict] = None, mapping_kwargs: Optional[dict] = None,
                 epilogue_kwargs: Optional[dict] = None):
        super().__init__()
        log2 = int(np.log2(img_resolution)) if img_resolution > 0 else 0
        if img_resolution < 8 or 2 ** log2 != img_resolution:
            raise ValueError(f'img_resolution: expected a power of two >= 8, got {img_resolution}')
        self.c_dim = c_dim
        self.img_resolution = img_resolution
        self.img_channels = img_channels
        self.block_resolutions = [2 ** i for i in range(log2, 2, -1)]
        channels = {res: min(channel_base // res, channel_max) for res in self.block_resolutions + [4]}
        fp16_resolution = max(2 ** (log2 + 1 - num_fp16_res), 8)
        cmap_dim = channels[4] if cmap_dim is None else cmap_dim
        self.cmap_dim = 0 if c_dim == 0 else cmap_dim
        common = dict(img_channels=img_channels, architecture=architecture, conv_clamp=conv_clamp)
        layer_idx = 0
        for res in self.block_resolutions:
            in_channels = channels[res] if res < img_resolution else 0
            block = DiscriminatorBlock(in_channels, channels[res], channels[res // 2], resolution=res,
                                       first_layer_idx=layer_idx, use_fp16=(res >= fp16_resolution),
                                       **(block_kwargs or {}), **common)
            setattr(self, f'b{res}', block)
            layer_idx += block.num_layers
        if c_dim > 0:
            self.mapping = MappingNetwork(z_dim=0, c_dim=c_dim, w_dim=self.cmap_dim, num_ws=None, w_avg_beta=None,
                                          **(mapping_kwargs or {}))
        self.b4 = DiscriminatorEpilogue(channels[4], cmap_dim=self.cmap_dim, resolution=4,
                                        **(epilogue_kwargs or {}), **common)

    def run_blocks(self, img: torch.Tensor, **block_kwargs):
        """img [N, C, R, R] -> (x [N, C4, 4, 4], img at 4x4 for 'skip' else None) after all blocks."""
        check_shape('img', img, [None, self.img_channels, self.img_resolution, self.img_resolution])
        x = None
        for res in self.block_resolutions:
            x, img = getattr(self, f'b{res}')(x, img, **block_kwargs)
        return x, img

    def conditioning(self, c: Optional[torch.Tensor]) -> Optional[torch.Tensor]:
        """c [N, c_dim] -> cmap [N, cmap_dim] (None without conditioning)."""
        return self.mapping(None, c) if self.c_dim > 0 else None

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor], update_emas: bool = False,
                **block_kwargs) -> torch.Tensor:
        """img [N, img_channels, R, R], c [N, c_dim] -> logits [N, 1]; update_emas unused (D keeps no EMA)."""
        if self.c_dim > 0:
            check_shape('c', c, [img.shape[0] if isinstance(img, torch.Tensor) else None, self.c_dim])
        x, img = self.run_blocks(img, **block_kwargs)
        return self.b4(x, img, self.conditioning(c))

    def extra_repr(self) -> str:
        return f'c_dim={self.c_dim}, img_resolution={self.img_resolution}, img_channels={self.img_channels}'
