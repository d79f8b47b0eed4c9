"""StyleGAN2 mapping network: (z, c) -> ws, with the running average w_avg and truncation.

StyleGAN (Karras et al. 2019, §2) maps a latent z through an MLP to the intermediate latent w;
StyleGAN2-ADA adds conditioning by embedding c and concatenating it to z. The truncation trick
(§3 / appendix B) lerps w toward its running mean: w' = w_avg + psi * (w - w_avg).
"""
from typing import Optional

import torch

from torch_utils import persistence
from training.networks.layers import FullyConnectedLayer, check_shape, normalize_2nd_moment


@persistence.persistent_class
class MappingNetwork(torch.nn.Module):
    """z [N, z_dim] and c [N, c_dim] -> ws [N, num_ws, w_dim] (or [N, w_dim] when num_ws is None).

    z_dim may be 0 (c-only mapping, e.g. the discriminator's conditioning) and c_dim may be 0.
    """

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = 'lrelu', lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.998):
        super().__init__()
        if z_dim + c_dim <= 0:
            raise ValueError(f'z_dim, c_dim: at least one must be positive, got z_dim={z_dim}, c_dim={c_dim}')
        if num_layers < 1:
            raise ValueError(f'num_layers: expected >= 1, got {num_layers}')
        self.z_dim = z_dim
        self.c_dim = c_dim
        self.w_dim = w_dim
        self.num_ws = num_ws
        self.num_layers = num_layers
        self.w_avg_beta = w_avg_beta
        embed_features = w_dim if embed_features is None else embed_features
        embed_features = 0 if c_dim == 0 else embed_features
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                        lr_multiplier=lr_multiplier)
            setattr(self, f'fc{idx}', layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer('w_avg', torch.zeros([w_dim]))

    def _check_inputs(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> None:
        """Raise ValueError unless z and c have shapes [N, z_dim] and [N, c_dim] with a common N."""
        batch = None
        if self.z_dim > 0:
            check_shape('z', z, [None, self.z_dim])
            batch = int(z.shape[0])
        if self.c_dim > 0:
            check_shape('c', c, [batch, self.c_dim])

    def embed_inputs(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor]) -> torch.Tensor:
        """Normalised z concatenated with the normalised c embedding: [N, z_dim + embed_features]."""
        self._check_inputs(z, c)
        parts = []
        if self.z_dim > 0:
            parts.append(normalize_2nd_moment(z.to(torch.float32)))
        if self.c_dim > 0:
            parts.append(normalize_2nd_moment(self.embed(c.to(torch.float32))))
        return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]

    def update_w_avg(self, w: torch.Tensor) -> None:
        """w_avg <- lerp(batch mean of w, w_avg, beta), i.e. move toward the mean by (1 - beta)."""
        with torch.no_grad():
            self.w_avg.copy_(w.detach().float().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))

    def truncate(self, ws: torch.Tensor, truncation_psi: float, truncation_cutoff: Optional[int]) -> torch.Tensor:
        """w_avg + psi * (w - w_avg) on the first `truncation_cutoff` ws (all when None); out of place."""
        if truncation_psi == 1:
            return ws
        truncated = self.w_avg.lerp(ws, truncation_psi)
        if self.num_ws is None or truncation_cutoff is None:
            return truncated
        return torch.cat([truncated[:, :truncation_cutoff], ws[:, truncation_cutoff:]], dim=1)

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor], truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        """z [N, z_dim], c [N, c_dim] -> ws [N, num_ws, w_dim]; update_emas tracks w_avg (training)."""
        x = self.embed_inputs(z, c)
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        has_avg = self.num_ws is not None and self.w_avg_beta is not None
        if update_emas and has_avg:
            self.update_w_avg(x)
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])
        if truncation_psi != 1:
            if not has_avg:
                raise ValueError('truncation_psi: truncation needs w_avg (num_ws and w_avg_beta must be set)')
            x = self.truncate(x, truncation_psi, truncation_cutoff)
        return x

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim}, c_dim={self.c_dim}, w_dim={self.w_dim}, num_ws={self.num_ws}'
