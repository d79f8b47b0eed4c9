"""Depths along rays: stratified coarse samples and inverse-CDF importance samples (system.md §3).

All depths are distances along unit-length rays, shaped [N, R, S] (batch, rays, samples). Random
draws are passed in as tensors (see `draw_uniform`) so that chunked and unchunked renders of
the same rays use identical samples.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def draw_uniform(shape: Sequence[int], like: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """U(0, 1) draws of `shape` with the dtype and device of `like` (optionally from `generator`)."""
    return torch.rand(tuple(shape), dtype=like.dtype, device=like.device, generator=generator)


def stratified_depths(n_batch: int, n_rays: int, start: float, end: float, n_samples: int,
                      jitter: Optional[torch.Tensor] = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Coarse depths [N, R, S]: t_i = start + i Δ (+ jitter_i Δ), Δ = (end - start) / (S - 1).

    `jitter` [N, R, S] holds U(0, 1) draws (training, EG3D's per-sample perturbation); None gives
    the deterministic, equally spaced depths from `start` to `end`.
    """
    depths = torch.linspace(start, end, n_samples, dtype=dtype, device=device).expand(n_batch, n_rays, n_samples)
    if jitter is None:
        return depths
    spacing = (end - start) / max(n_samples - 1, 1)
    return depths + jitter * spacing


def smooth_weights(weights: torch.Tensor, floor: float) -> torch.Tensor:
    """NeRF/EG3D pdf smoothing of interval weights [N, R, K]: max-pool(2, 1, pad 1), avg-pool(2, 1), + floor."""
    flat = weights.reshape(-1, 1, weights.shape[-1])
    flat = F.avg_pool1d(F.max_pool1d(flat, 2, 1, padding=1), 2, 1)
    return flat.reshape(weights.shape) + floor


def inverse_cdf(edges: torch.Tensor, masses: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Samples [..., M] of the piecewise-constant pdf with bin `edges` [..., K+1] and `masses` [..., K] > 0.

    Each u in [0, 1] [..., M] is mapped through the inverse of the piecewise-linear CDF; the
    result is monotone in u and lies in [edges[0], edges[-1]].
    """
    cdf = torch.cumsum(masses, dim=-1) / masses.sum(dim=-1, keepdim=True)
    cdf = torch.cat([torch.zeros_like(cdf[..., :1]), cdf], dim=-1)
    u = u.contiguous()
    n_bins = masses.shape[-1]
    bins = (torch.searchsorted(cdf.contiguous(), u, right=True) - 1).clamp(0, n_bins - 1)
    cdf_lo, cdf_hi = cdf.gather(-1, bins), cdf.gather(-1, bins + 1)
    edge_lo, edge_hi = edges.gather(-1, bins), edges.gather(-1, bins + 1)
    frac = ((u - cdf_lo) / (cdf_hi - cdf_lo)).clamp(0, 1)
    return edge_lo + frac * (edge_hi - edge_lo)


def importance_depths(depths: torch.Tensor, weights: torch.Tensor, n_importance: int, floor: float,
                      u: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Fine depths [N, R, M] drawn from the coarse compositing weights (system.md §3, "Fine samples").

    depths [N, R, S] are sorted coarse depths; weights [N, R, S-1] the midpoint-compositing weight
    of each interval [t_i, t_{i+1}] (centred on the coarse mid-point). The weights are smoothed
    (`smooth_weights`) and used as the masses of those intervals. Deliberate difference from EG3D:
    there the smoothed weights are paired with bins between consecutive mid-points, dropping the
    first and last weight (a half-spacing shift toward the camera); here each interval keeps its
    own mass. `u` [N, R, M] are U(0, 1) draws (training; sorted here so the output is sorted) or
    None for the deterministic quantiles (k + 0.5) / M. Gradients do not flow into the depths.
    """
    depths, weights = depths.detach(), weights.detach()
    masses = smooth_weights(weights, floor)
    if u is None:
        u = (torch.arange(n_importance, dtype=depths.dtype, device=depths.device) + 0.5) / n_importance
        u = u.expand(*depths.shape[:-1], n_importance)
    else:
        u = torch.sort(u, dim=-1).values
    return inverse_cdf(depths, masses, u)


def merge_sorted(depths_a: torch.Tensor, depths_b: torch.Tensor, *values):
    """Merge two sets of samples along the sample axis and sort them by depth.

    depths_* [N, R, S_*]; `values` are pairs (a [N, R, S_a, C], b [N, R, S_b, C]) gathered in the
    same order. Returns (depths [N, R, S_a+S_b], order, merged values ...), where `order`
    [N, R, S_a+S_b] holds each sorted sample's index into concat(a, b) (see `unmerge`).
    """
    depths = torch.cat([depths_a, depths_b], dim=-1)
    depths, order = torch.sort(depths, dim=-1)
    merged = []
    for a, b in values:
        both = torch.cat([a, b], dim=-2)
        merged.append(both.gather(-2, order[..., None].expand(*order.shape, both.shape[-1])))
    return (depths, order, *merged)


def unmerge(values: torch.Tensor, order: torch.Tensor, size_a: int):
    """Inverse of merge_sorted for per-sample values [N, R, S] in depth order -> (a [N, R, S_a], b [N, R, S - S_a])."""
    unsorted = torch.zeros_like(values).scatter(-1, order, values)
    return unsorted[..., :size_a], unsorted[..., size_a:]
