"""MipNeRF-style midpoint alpha compositing along rays (system.md §3, "Compositing").

For sorted depths t_0..t_{S-1} with raw densities sigma_i and features f_i, interval i spans
[t_i, t_{i+1}] (delta_i = t_{i+1} - t_i) and carries the averages of its two end samples:

    sigma'_i = softplus(mean(sigma_i, sigma_{i+1}) + density_bias),  alpha_i = 1 - exp(-sigma'_i delta_i),
    T_i = prod_{j<i} (1 - alpha_j + eps),  w_i = alpha_i T_i,
    feature = sum_i w_i mean(f_i, f_{i+1}),  opacity = sum_i w_i,
    depth = sum_i w_i mean(t_i, t_{i+1}) / opacity   (inf where opacity = 0), clamped per ray to [t_0, t_{S-1}].

No background colour is added (the generator composites its own background, system.md §2.8).

The feature sum is regrouped per sample, sum_i w_i mean(f_i, f_{i+1}) = sum_j v_j f_j with
v_j = (w_{j-1} + w_j) / 2 (w_{-1} = w_{S-1} = 0; `sample_weights`), so no midpoint features are
formed, and samples may be summed in any order: the renderer keeps its coarse and fine features
apart and only sorts depths and densities (renderer.py).
"""
from typing import NamedTuple

import torch
import torch.nn.functional as F


class Composite(NamedTuple):
    """Composited ray quantities: features [N, R, C], depth [N, R, 1], opacity [N, R, 1], weights [N, R, S-1]."""
    features: torch.Tensor
    depth: torch.Tensor
    opacity: torch.Tensor
    weights: torch.Tensor


def midpoint_weights(depths: torch.Tensor, sigma: torch.Tensor, density_bias: float, eps: float) -> torch.Tensor:
    """Compositing weights [N, R, S-1] of the intervals between sorted depths [N, R, S] with raw sigma [N, R, S]."""
    delta = depths[..., 1:] - depths[..., :-1]
    sigma_mid = (sigma[..., 1:] + sigma[..., :-1]) / 2
    alpha = 1 - torch.exp(-F.softplus(sigma_mid + density_bias) * delta)
    survive = 1 - alpha + eps
    transmittance = torch.cumprod(torch.cat([torch.ones_like(survive[..., :1]), survive[..., :-1]], dim=-1), dim=-1)
    return alpha * transmittance


def sample_weights(weights: torch.Tensor) -> torch.Tensor:
    """Interval weights [N, R, S-1] -> per-sample weights [N, R, S]: v_j = (w_{j-1} + w_j) / 2 (module docstring)."""
    padded = F.pad(weights, (1, 1))
    return (padded[..., 1:] + padded[..., :-1]) / 2


def depth_and_opacity(depths: torch.Tensor, weights: torch.Tensor):
    """(depth [N, R, 1], opacity [N, R, 1]) from sorted depths [N, R, S] and interval weights [N, R, S-1]."""
    depths_mid = (depths[..., 1:] + depths[..., :-1]) / 2
    opacity = weights.sum(dim=-1, keepdim=True)
    depth_sum = (weights * depths_mid).sum(dim=-1, keepdim=True)
    seen = opacity > 0
    depth = torch.where(seen, depth_sum / torch.where(seen, opacity, torch.ones_like(opacity)),
                        torch.full_like(opacity, float('inf')))
    near, far = depths.min(dim=-1, keepdim=True).values, depths.max(dim=-1, keepdim=True).values
    return torch.minimum(torch.maximum(depth, near), far), opacity


def weighted_features(v: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """sum_j v_j f_j: per-sample weights v [N, R, S], features [N, R, S, C] -> [N, R, C]."""
    return torch.einsum('nrs,nrsc->nrc', v, features)


def composite(depths: torch.Tensor, sigma: torch.Tensor, features: torch.Tensor, density_bias: float,
              eps: float) -> Composite:
    """Composite sorted samples: depths [N, R, S], raw sigma [N, R, S], features [N, R, S, C] (formulas above)."""
    weights = midpoint_weights(depths, sigma, density_bias, eps)
    depth, opacity = depth_and_opacity(depths, weights)
    return Composite(weighted_features(sample_weights(weights), features), depth, opacity, weights)
