"""The tri-grid decoder MLP: features -> raw density and colour features (system.md §2.4).

FC(C -> hidden) -> softplus -> FC(hidden -> 1 + C_out), both layers equalized-lr with the
decoder learning-rate multiplier. Output channel 0 is the raw density sigma (the renderer applies
softplus(sigma + density_bias)); channels 1.. are the features, passed through the feature
activation. No view direction is used.
"""
import math

import torch
import torch.nn.functional as F

from configs.schema import RenderingConfig
from training.networks.layers import FullyConnectedLayer

FEATURE_ACTIVATIONS = ('none', 'sigmoid', 'lrelu')
LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2)


def feature_activation(x: torch.Tensor, activation: str, sigmoid_margin: float) -> torch.Tensor:
    """'sigmoid': sigmoid(x) (1 + 2 m) - m (EG3D); 'lrelu': leaky_relu(x, 0.2) sqrt(2); 'none': x."""
    if activation == 'sigmoid':
        return torch.sigmoid(x) * (1 + 2 * sigmoid_margin) - sigmoid_margin
    if activation == 'lrelu':
        return F.leaky_relu(x, LRELU_SLOPE) * LRELU_GAIN
    return x


class TriGridDecoder(torch.nn.Module):
    """Per-point MLP on aggregated tri-grid features: x [N, P, C] -> (sigma [N, P, 1], features [N, P, C_out])."""

    def __init__(self, cfg: RenderingConfig = RenderingConfig()):
        super().__init__()
        if cfg.decoder_activation not in FEATURE_ACTIVATIONS:
            raise ValueError(f'decoder_activation: expected one of {", ".join(FEATURE_ACTIVATIONS)}, '
                             f'got {cfg.decoder_activation!r}')
        self.cfg = cfg   # the activation settings are read from it (G.set_rendering may replace it)
        self.in_features = cfg.triplane_features
        self.fc0 = FullyConnectedLayer(cfg.triplane_features, cfg.decoder_hidden, activation='softplus',
                                       lr_multiplier=cfg.decoder_lr_mul)
        self.fc1 = FullyConnectedLayer(cfg.decoder_hidden, 1 + cfg.decoder_output, lr_multiplier=cfg.decoder_lr_mul)

    @property
    def activation(self) -> str:
        """The feature activation (cfg.decoder_activation)."""
        return self.cfg.decoder_activation

    @property
    def sigmoid_margin(self) -> float:
        """Margin m of the 'sigmoid' feature activation (cfg.sigmoid_margin)."""
        return self.cfg.sigmoid_margin

    def forward(self, x: torch.Tensor):
        """x [N, P, C] (mean of the three plane samples) -> (sigma [N, P, 1], features [N, P, C_out])."""
        if x.ndim != 3 or x.shape[-1] != self.in_features:
            raise ValueError(f'x: expected [N, P, {self.in_features}], got {list(x.shape)}')
        n, p, c = x.shape
        y = self.fc1(self.fc0(x.reshape(n * p, c))).reshape(n, p, -1)
        sigma, features = y.split([1, y.shape[-1] - 1], dim=-1)   # its backward is one concatenation
        return sigma, feature_activation(features, self.activation, self.sigmoid_margin)

    def extra_repr(self) -> str:
        return f'activation={self.activation}'
