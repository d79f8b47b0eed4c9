"""Volume rendering of the tri-grid with an optional posed -> canonical warp (system.md §2.1 step 5, §3).

Per ray: stratified coarse depths -> world points -> warp to canonical space -> field (tri-grid
lookup + decoder) -> density noise -> canonical crop; the coarse compositing weights give
inverse-CDF fine depths, evaluated the same way; both sets are merged, sorted and composited
(ray_marcher.py): only depths and densities are sorted, the features are summed per set with
per-sample weights mapped back to each set's order. Rays are processed in chunks of `RenderingConfig.ray_chunk`. All random draws
(jitter, importance quantiles, density noise) are made once per render for all rays, so a
chunked render equals the unchunked one (up to float rounding: matrix products are blocked
differently, and 'auto' may pick another tri-grid sampler for the smaller calls).

Chunking bounds memory only without autograd (inference): with gradients, every chunk's graph
is kept. With the compiled samplers the chunks' (and passes') planes gradients are added in place
into one buffer (trigrid_cpp.sample_chained); the PyTorch samplers return one dense plane-sized
gradient per chunk and pass, which autograd adds up.
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch

from configs.schema import RenderingConfig
from training.rendering.planes import TriGridSampler, crop_outside
from training.rendering.ray_marcher import (composite, depth_and_opacity, midpoint_weights, sample_weights,
                                            weighted_features)
from training.rendering.samplers import draw_uniform, importance_depths, merge_sorted, stratified_depths, unmerge

# canonical points [N, P, 3] -> (raw sigma [N, P, 1], features [N, P, C])
Field = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
# posed world points [N, P, 3] -> canonical points [N, P, 3]
Warp = Callable[[torch.Tensor], torch.Tensor]


class RayDraws(NamedTuple):
    """Random numbers of one render, for all rays [N, R, ...]; None where not drawn."""
    jitter: Optional[torch.Tensor]          # U(0, 1) [N, R, S]: stratified perturbation
    quantiles: Optional[torch.Tensor]       # U(0, 1) [N, R, S_fine]: importance sampling
    noise_coarse: Optional[torch.Tensor]    # density noise [N, R, S] (already scaled)
    noise_fine: Optional[torch.Tensor]      # density noise [N, R, S_fine]

    def rays(self, part: slice) -> 'RayDraws':
        """The draws of rays `part`."""
        return RayDraws(*(None if t is None else t[:, part] for t in self))


def draw_randoms(n: int, r: int, cfg: RenderingConfig, perturb: bool, density_noise: float, like: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> RayDraws:
    """Draw every random number of a render of n x r rays (dtype/device of `like`)."""
    coarse, fine = (n, r, cfg.depth_resolution), (n, r, cfg.depth_resolution_importance)
    jitter = draw_uniform(coarse, like, generator) if perturb else None
    quantiles = draw_uniform(fine, like, generator) if perturb and cfg.depth_resolution_importance else None
    noise_coarse = noise_fine = None
    if density_noise > 0:
        noise_coarse = torch.randn(coarse, dtype=like.dtype, device=like.device, generator=generator) * density_noise
        noise_fine = torch.randn(fine, dtype=like.dtype, device=like.device, generator=generator) * density_noise
    return RayDraws(jitter, quantiles, noise_coarse, noise_fine)


def evaluate_points(field: Field, points: torch.Tensor, cfg: RenderingConfig, warp: Optional[Warp] = None,
                    noise: Optional[torch.Tensor] = None):
    """Raw sigma [N, P, 1] and features [N, P, C] at posed world points [N, P, 3].

    The warp (if any) maps the points to canonical space; noise [N, P, 1] is added to sigma; then
    canonical points outside the crop get `cfg.empty_density` (system.md §2.7, §3).
    """
    canonical = warp(points) if warp is not None else points
    sigma, features = field(canonical)
    if noise is not None:
        sigma = sigma + noise
    sigma = sigma.masked_fill(crop_outside(canonical, cfg.crop), cfg.empty_density)
    return sigma, features


def _evaluate_depths(field: Field, origins: torch.Tensor, directions: torch.Tensor, depths: torch.Tensor,
                     cfg: RenderingConfig, warp: Optional[Warp], noise: Optional[torch.Tensor]):
    """Sigma [N, R, S] and features [N, R, S, C] at depths [N, R, S] along rays origins/directions [N, R, 3]."""
    n, r, s = depths.shape
    points = origins[:, :, None, :] + depths[..., None] * directions[:, :, None, :]
    noise = None if noise is None else noise.reshape(n, r * s, 1)
    sigma, features = evaluate_points(field, points.reshape(n, r * s, 3), cfg, warp, noise)
    return sigma.reshape(n, r, s), features.reshape(n, r, s, -1)


def _render_chunk(field: Field, origins: torch.Tensor, directions: torch.Tensor, draws: RayDraws,
                  cfg: RenderingConfig, warp: Optional[Warp]) -> Dict[str, torch.Tensor]:
    """Coarse pass, importance pass, merge and composite for rays [N, R, 3] (see the module docstring)."""
    n, r = origins.shape[:2]
    depths = stratified_depths(n, r, cfg.ray_start, cfg.ray_end, cfg.depth_resolution, draws.jitter,
                               origins.dtype, origins.device)
    sigma, features = _evaluate_depths(field, origins, directions, depths, cfg, warp, draws.noise_coarse)
    if cfg.depth_resolution_importance == 0:
        result = composite(depths, sigma, features, cfg.density_bias, cfg.transmittance_eps)
        return {'features': result.features, 'depth': result.depth, 'opacity': result.opacity}
    weights = midpoint_weights(depths, sigma.detach(), cfg.density_bias, cfg.transmittance_eps)
    fine = importance_depths(depths, weights, cfg.depth_resolution_importance, cfg.pdf_floor, draws.quantiles)
    sigma_fine, features_fine = _evaluate_depths(field, origins, directions, fine, cfg, warp, draws.noise_fine)
    merged, order, sigma = merge_sorted(depths, fine, (sigma[..., None], sigma_fine[..., None]))
    weights = midpoint_weights(merged, sigma[..., 0], cfg.density_bias, cfg.transmittance_eps)
    v_coarse, v_fine = unmerge(sample_weights(weights), order, depths.shape[-1])   # features stay unsorted
    depth, opacity = depth_and_opacity(merged, weights)
    features = weighted_features(v_coarse, features) + weighted_features(v_fine, features_fine)
    return {'features': features, 'depth': depth, 'opacity': opacity}


def render_rays(field: Field, ray_origins: torch.Tensor, ray_directions: torch.Tensor, cfg: RenderingConfig,
                warp: Optional[Warp] = None, density_noise: float = 0.0, perturb: bool = True,
                generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
    """Render rays [N, R, 3] (world origins, unit directions) through `field` in chunks of cfg.ray_chunk rays.

    Returns features [N, R, C], depth [N, R, 1] (distance along the ray) and opacity [N, R, 1].
    `perturb` jitters the coarse depths and draws random importance quantiles (training); without
    it the render is deterministic. `density_noise` > 0 adds N(0, density_noise^2) to raw sigma.
    """
    n, r = ray_origins.shape[:2]
    draws = draw_randoms(n, r, cfg, perturb, density_noise, ray_origins, generator)
    chunk = cfg.ray_chunk or r
    parts = [_render_chunk(field, ray_origins[:, s:s + chunk], ray_directions[:, s:s + chunk],
                           draws.rays(slice(s, s + chunk)), cfg, warp) for s in range(0, r, chunk)]
    if len(parts) == 1:
        return parts[0]
    return {key: torch.cat([part[key] for part in parts], dim=1) for key in parts[0]}


def trigrid_field(planes: torch.Tensor, decoder: torch.nn.Module, cfg: RenderingConfig) -> Field:
    """The field of a generated tri-grid: canonical points -> decoder(mean tri-grid features) (§2.3, §2.4)."""
    sampler = TriGridSampler(planes, cfg.triplane_depth, cfg.box_warp, cfg.sampler_impl)
    return lambda points: decoder(sampler(points))


class VolumeRenderer(torch.nn.Module):
    """Renders tri-grids with a decoder (no parameters of its own; the configuration is fixed at construction)."""

    def __init__(self, cfg: RenderingConfig = RenderingConfig()):
        super().__init__()
        self.cfg = cfg

    def forward(self, planes: torch.Tensor, decoder: torch.nn.Module, ray_origins: torch.Tensor,
                ray_directions: torch.Tensor, warp: Optional[Warp] = None, density_noise: float = 0.0,
                perturb: bool = True, generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """planes [N, 3, C*D, H, W], rays [N, R, 3] -> dict(features [N, R, C], depth [N, R, 1], opacity [N, R, 1]).

        `warp` maps posed world points [N, P, 3] to canonical points and is applied to the coarse
        and the fine samples before the tri-grid lookup (system.md §2.5).
        """
        field = trigrid_field(planes, decoder, self.cfg)
        return render_rays(field, ray_origins, ray_directions, self.cfg, warp, density_noise, perturb, generator)

    def sample_canonical(self, planes: torch.Tensor, decoder: torch.nn.Module,
                         coords: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Raw sigma [N, P, 1] and features [N, P, C] at canonical points [N, P, 3] (no warp, crop applied)."""
        sigma, features = evaluate_points(trigrid_field(planes, decoder, self.cfg), coords, self.cfg)
        return {'sigma': sigma, 'features': features}

    def extra_repr(self) -> str:
        return repr(self.cfg)
