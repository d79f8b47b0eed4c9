"""Dataclasses that name every geometric constant of the system (no magic literals elsewhere)."""
from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class SkeletonConfig:
    """Canonical joints (metres; y up, body faces +z): the neck joint (SMPL joint 12) is the
    world origin and the head joint (SMPL joint 15) sits above it."""
    neck_joint: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    head_joint: Tuple[float, float, float] = (0.0, 0.0649, 0.0)


@dataclass(frozen=True)
class CameraConfig:
    """Where the portrait cameras sit and how they see (system.md §7).

    Cameras lie on a sphere of `radius` around the world origin (the SMPL neck joint) and look
    at `lookat` (the head joint's height above the neck). Intrinsics are normalised by the image
    size: `focal` = f_pixels / image_size (6.5104 = 5000 / (1024 * 0.75), a vertical field of
    view of about 8.78 degrees), principal point (`principal`, `principal`).
    """
    radius: float = 2.7
    lookat: Tuple[float, float, float] = SkeletonConfig().head_joint
    focal: float = 5000.0 / (1024.0 * 0.75)
    principal: float = 0.5


@dataclass(frozen=True)
class RenderingConfig:
    """Tri-grid volume rendering: sampling, decoder and compositing (system.md §2.3, §2.4, §2.7, §3, §15).

    Depths are distances along unit-length rays from the camera centre (world units = SMPL metres).
    Canonical space is the neck-centred T-pose space of the tri-grid (§2.5).
    """
    depth_resolution: int = 48                 # stratified (coarse) samples per ray
    depth_resolution_importance: int = 48      # inverse-CDF (fine) samples per ray; 0 = coarse only
    ray_start: float = 2.25                    # near depth of the stratified samples
    ray_end: float = 3.3                       # far depth of the stratified samples (before jitter)
    box_warp: float = 1.0                      # side of the canonical tri-grid cube [-b/2, b/2]^3
    crop: float = 0.4                          # canonical |x| and |z| limit; density outside is `empty_density`
    empty_density: float = -1000.0             # raw sigma given to cropped (empty) canonical points
    density_bias: float = -1.0                 # sigma' = softplus(sigma + density_bias)
    transmittance_eps: float = 1e-10           # T_i = prod_{j<i} (1 - alpha_j + eps)
    pdf_floor: float = 0.01                    # added to the smoothed coarse weights before inverse-CDF sampling
    triplane_depth: int = 3                    # D: depth of each feature volume (1 = plain tri-plane)
    triplane_features: int = 32                # C: features per tri-grid texel
    decoder_hidden: int = 64                   # decoder MLP hidden width
    decoder_output: int = 32                   # feature channels after the density channel
    decoder_activation: str = 'none'           # feature activation: 'none' | 'sigmoid' | 'lrelu'
    decoder_lr_mul: float = 1.0                # learning-rate multiplier of both decoder layers
    sigmoid_margin: float = 0.001              # 'sigmoid' features: sigmoid * (1 + 2 m) - m (EG3D)
    ray_chunk: Optional[int] = None            # rays per chunk and batch element; None = all rays at once
    sampler_impl: str = 'auto'                 # tri-grid sampler: 'auto' | 'grid_sample' | 'gather' | 'cpp' | 'cuda'
