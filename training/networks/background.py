"""The 2-D background generator of the portrait G and its compositing (system.md §2.8).

A StyleGAN2 synthesis network at the super-resolution input resolution emits a feature image
with as many channels as the rendered features. It consumes the first `num_ws` of its own ws
(`ws_bcg`, normally G's ws; the loss may swap them between samples), padded by repeating the last
w when G has fewer. The image is resized (bilinear, antialiased) to the neural rendering
resolution and composited behind the foreground: feature = fg + (1 - opacity) * bg.
"""
import torch

from training.networks.layers import check_shape
from training.networks.superresolution import resize_antialiased
from training.networks.synthesis import SynthesisNetwork


def composite(foreground: torch.Tensor, opacity: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """fg [N, C, r, r] + (1 - opacity [N, 1, r, r]) * bg [N, C, r, r] (§2.8)."""
    return foreground + (1 - opacity) * background


class BackgroundNetwork(torch.nn.Module):
    """ws_bcg [N, *, w_dim] -> background features [N, channels, r, r] at a requested resolution r (§2.8)."""

    def __init__(self, w_dim: int, resolution: int, channels: int, channel_base: int, channel_max: int,
                 **synthesis_kwargs):
        """resolution: the native resolution of the StyleGAN2 network (the SR input resolution);
        synthesis_kwargs: num_fp16_res, conv_clamp, fused_modconv_default, ..."""
        super().__init__()
        self.w_dim = w_dim
        self.synthesis = SynthesisNetwork(w_dim=w_dim, img_resolution=resolution, img_channels=channels,
                                          channel_base=channel_base, channel_max=channel_max, **synthesis_kwargs)
        self.num_ws = self.synthesis.num_ws

    def select_ws(self, ws_bcg: torch.Tensor) -> torch.Tensor:
        """The first num_ws of ws_bcg [N, K, w_dim], padded with copies of the last w when K < num_ws."""
        check_shape('ws_bcg', ws_bcg, [None, None, self.w_dim])
        if ws_bcg.shape[1] >= self.num_ws:
            return ws_bcg[:, :self.num_ws]
        pad = ws_bcg[:, -1:].expand(-1, self.num_ws - ws_bcg.shape[1], -1)
        return torch.cat([ws_bcg, pad], dim=1)

    def forward(self, ws_bcg: torch.Tensor, resolution: int, **synthesis_kwargs) -> torch.Tensor:
        """ws_bcg [N, K, w_dim] -> features [N, channels, resolution, resolution] (antialiased resize).

        synthesis_kwargs: noise_mode, fused_modconv, update_emas, force_fp32.
        """
        return resize_antialiased(self.synthesis(self.select_ws(ws_bcg), **synthesis_kwargs), resolution)
