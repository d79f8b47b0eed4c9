"""Analytic ray casting of posed synthetic figures: closed-form ray-quadric hits, shading, background.

Independent of the generator's volume renderer and deformation. Each pinhole ray x = o + t d
(d has camera-z component 1, so t is the camera-space depth) meets every primitive in one batched
pass over images x primitives x rays. For a quadric |A (x - c)|^2 = 1 with Q = A^T A,
w = Q (o - c) and e = |A (o - c)|^2 - 1, the hits solve a t^2 + 2 b t + e = 0 with a = d^T Q d,
b = d . w. The quantities a, b, the discriminant D = b^2 - a e = d^T (w w^T - e Q) d and the clip
slopes d . n are linear in the monomials of d, so one matrix product of per-ray monomials with
per-primitive weights yields them all. The weights are assembled in float64 (D's terms are large
and nearly cancel for small, distant primitives); the per-ray work runs in float32. The nearest
root in front of the camera that passes all clip half-spaces wins (a far root shows the inside
of a clipped shell).
"""
import math
from typing import NamedTuple, Tuple

import torch

from portrait_data.synthetic_figure import CLIPPED, Identity
from portrait_data.synthetic_pose import PosedPrimitives, pose_primitives
from training.cameras import unpack_camera

LIGHT_DIRECTION_CAMERA = (0.0, -0.5, -1.0)   # toward the key light, camera axes: above and behind the camera
AMBIENT_SKY = 0.38                           # ambient light on normals facing world +y
AMBIENT_GROUND = 0.12                        # ambient light on normals facing world -y
DIFFUSE = 0.62                               # Lambertian key-light strength
RAYS_PER_CHUNK = 1 << 16                     # images are traced in chunks of about this many rays


class Hits(NamedTuple):
    """Per-pixel ray hits: depth [N, H, W] (camera z, inf on a miss), index [N, H, W] (primitive,
    -1 on a miss), normal [N, 3, H, W] (world, unit, facing the camera; zero on a miss)."""
    depth: torch.Tensor
    index: torch.Tensor
    normal: torch.Tensor


def pixel_rays(c: torch.Tensor, resolution: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pinhole rays through pixel centres of cameras [N, 25]: origins [N, 3] and world directions
    [N, 3, H*W] (channel-first, row-major pixels, camera-z component 1), float64.

    Pixel (i, j) has normalised coordinates ((j + 0.5) / W, (i + 0.5) / H); the offsets from the
    image centre are computed as exact odd integers over 2W, so that a horizontally mirrored
    camera gets exactly negated directions."""
    cam2world, K = unpack_camera(c.to(torch.float64))
    steps = torch.arange(resolution, dtype=torch.float64, device=c.device)
    centred = (2 * steps + 1 - resolution) / (2 * resolution)
    x = (centred[None] + (0.5 - K[:, 0, 2:3])) / K[:, 0, 0:1]                    # [N, W]
    y = (centred[None] + (0.5 - K[:, 1, 2:3])) / K[:, 1, 1:2]                    # [N, H]
    n = c.shape[0]
    cam = torch.stack([x[:, None, :].expand(n, resolution, resolution),
                       y[:, :, None].expand(n, resolution, resolution),
                       torch.ones(n, resolution, resolution, dtype=torch.float64, device=c.device)], 1)
    return cam2world[:, :3, 3], cam2world[:, :3, :3] @ cam.flatten(2)


def _ray_features(directions: torch.Tensor) -> torch.Tensor:
    """Monomials [N, 9, R] of ray directions [N, 3, R]: dx^2, dy^2, dz^2, dx dy, dx dz, dy dz, dx, dy, dz."""
    dx, dy, dz = directions.unbind(1)
    return torch.stack([dx * dx, dy * dy, dz * dz, dx * dy, dx * dz, dy * dz, dx, dy, dz], 1)


def _quadratic_weights(matrix: torch.Tensor) -> torch.Tensor:
    """Monomial weights [..., 9] of the quadratic form d^T M d for symmetric M [..., 3, 3]."""
    diagonal = torch.diagonal(matrix, dim1=-2, dim2=-1)
    cross = 2 * torch.stack([matrix[..., 0, 1], matrix[..., 0, 2], matrix[..., 1, 2]], -1)
    return torch.cat([diagonal, cross, torch.zeros_like(diagonal)], -1)


def _linear_weights(vector: torch.Tensor) -> torch.Tensor:
    """Monomial weights [..., 9] of the linear form d . v for v [..., 3]."""
    return torch.cat([torch.zeros_like(vector), torch.zeros_like(vector), vector], -1)


def _coefficients(posed: PosedPrimitives, enabled: torch.Tensor, origins: torch.Tensor):
    """Monomial weights [N, 3P + KC, 9] (float32) for cameras at origins [N, 3], giving per ray
    (D, -a, b, d . n) with a = d^T Q d, b = d . w, D = b^2 - a e = d^T (w w^T - e Q) d (the
    discriminant, assembled per primitive in float64 where the cancellation is harmless) and the
    clip-plane slopes (plane-major); D = -a < 0 for disabled primitives. Also the clip values at
    the origins [N, K, C, 1] (float32) and the gradient table [N, P, 12] (float32): w and Q, so
    that the surface gradient at o + t d is w + t Q d."""
    inv_axes = posed.inv_axes
    quad = inv_axes.transpose(-1, -2) @ inv_axes
    local = (inv_axes @ (origins[:, None] - posed.centre)[..., None])[..., 0]
    w = (inv_axes.transpose(-1, -2) @ local[..., None])[..., 0]
    constant = (local * local).sum(-1) - 1
    disc = w[..., :, None] * w[..., None, :] - constant[..., None, None] * quad
    disc = torch.where(enabled[..., None, None], disc, -quad)
    clip_at_origin = (posed.clip_normal * origins[:, None, None]).sum(-1) - posed.clip_offset
    planes = posed.clip_normal.transpose(1, 2).flatten(1, 2)                         # [N, KC, 3]
    columns = [_quadratic_weights(disc), -_quadratic_weights(quad), _linear_weights(w), _linear_weights(planes)]
    weights = torch.cat(columns, 1).float()
    gradient_table = torch.cat([w, quad.flatten(-2)], -1).float()
    return weights, clip_at_origin.transpose(1, 2)[..., None].float(), gradient_table


def _nearest_hits(posed: PosedPrimitives, enabled: torch.Tensor, origins, directions):
    """Nearest valid hit per ray: depth [N, R] (float32, inf on a miss), primitive index [N, R],
    gradient table [N, P, 12] (see `_coefficients`). Work tensors are [N, P, R] (primitive-major,
    so that per-primitive slices are contiguous).

    Cameras are outside every primitive, so an unclipped primitive is first hit at its near root
    t = (b + sqrt D) / (-a); a clipped one (PRIMITIVES[CLIPPED]) at the nearer of both roots that
    lies in front of the camera and passes its clips. A miss has D < 0 or t <= 0 (a ray parallel
    to a cylinder's axis has a = 0 and t = +-inf or NaN: also a miss)."""
    weights, clip_at_origin, gradient_table = _coefficients(posed, enabled.expand(len(origins), -1), origins)
    num_prims, num_planes = gradient_table.shape[1], clip_at_origin.shape[1]
    terms = weights @ _ray_features(directions.float())
    disc, neg_a, b, slopes = terms.split([num_prims, num_prims, num_prims, terms.shape[1] - 3 * num_prims], 1)
    slopes = slopes.unflatten(1, (num_planes, -1))
    root = disc.abs().sqrt()      # sqrt of negatives (NaN) and of exact zeros is slow on some CPUs
    hit = disc >= 0
    near = (b + root) / neg_a
    depth = near.masked_fill(~(hit & (near > 0)), math.inf)
    neg_a, b, root, hit = neg_a[:, CLIPPED], b[:, CLIPPED], root[:, CLIPPED], hit[:, CLIPPED]
    clipped_depth = torch.full_like(b, math.inf)
    for t in ((b - root) / neg_a, near[:, CLIPPED]):
        keep = hit & (t > 0)
        for k in range(num_planes):
            keep &= clip_at_origin[:, k] + t * slopes[:, k] >= 0
        clipped_depth = torch.where(keep, t, clipped_depth)
    depth[:, CLIPPED] = clipped_depth
    depth, index = depth.min(1)
    return depth, index, gradient_table


def _normals(gradient_table: torch.Tensor, directions: torch.Tensor, depth: torch.Tensor, index: torch.Tensor):
    """Unit world normals [N, 3, R] facing the camera at the hits (depth [N, R] finite, primitive
    index [N, R]) of rays with directions [N, 3, R], from the gradient table [N, P, 12]."""
    n, p, width = gradient_table.shape
    rows = (index + torch.arange(n, device=index.device)[:, None] * p).flatten()
    entry = gradient_table.flatten(0, 1).index_select(0, rows).view(n, -1, width).transpose(1, 2).contiguous()
    d = directions.float()
    grad = entry[:, :3] + depth[:, None] * (entry[:, 3:].unflatten(1, (3, 3)) * d[:, None]).sum(2)
    normal = grad * (grad * grad).sum(1, keepdim=True).clamp(min=torch.finfo(grad.dtype).tiny).rsqrt()
    return torch.where((normal * d).sum(1, keepdim=True) > 0, -normal, normal)


def trace(identity: Identity, c: torch.Tensor, pose: torch.Tensor, resolution: int) -> Hits:
    """Ray-cast N figures (`identity` of N or 1) with cameras [N, 25] (cam2world, OpenCV axes;
    normalised intrinsics) and poses [N, 6] (neck, head axis-angle) at `resolution`^2 pixels."""
    n, r = c.shape[0], resolution * resolution
    chunk = max(1, RAYS_PER_CHUNK // r)
    depths, indices, normals = [], [], []
    for start in range(0, n, chunk):
        part = slice(start, start + chunk)
        sub = identity if len(identity) == 1 else identity.select(part)
        posed = pose_primitives(sub, pose[part])
        origins, directions = pixel_rays(c[part], resolution)
        depth, index, gradient_table = _nearest_hits(posed, sub.enabled, origins, directions)
        missed = torch.isinf(depth)
        normal = _normals(gradient_table, directions, depth.masked_fill(missed, 0), index)
        depths.append(depth)
        indices.append(index.masked_fill(missed, -1))
        normals.append(normal.masked_fill(missed[:, None], 0))
    shape = (n, resolution, resolution)
    normal = torch.cat(normals).unflatten(2, shape[1:])
    return Hits(torch.cat(depths).reshape(shape), torch.cat(indices).reshape(shape), normal)


def background(identity: Identity, resolution: int) -> torch.Tensor:
    """Backgrounds [N, 3, H, W] in [0, 1]: a vertical gradient (top to bottom colour) with vertical
    stripes and a vignette, all functions of |x| and y in image space, so a horizontal flip leaves
    them exactly unchanged."""
    steps = torch.arange(resolution, dtype=torch.float32, device=identity.background_colour.device)
    centred = (2 * steps + 1 - resolution) / resolution                          # (-1, 1), exact odd/res
    x, y = centred.abs()[None, None, None, :], centred[None, None, :, None]
    top, bottom = identity.background_colour[:, 0, :, None, None], identity.background_colour[:, 1, :, None, None]
    cycles, amplitude, vignette = (v[:, None, None, None] for v in identity.background_pattern.unbind(-1))
    gradient = top + (bottom - top) * (y + 1) / 2
    stripes = 1 + amplitude * torch.cos(math.pi * cycles * x)
    falloff = 1 - vignette * (x * x + y * y) / 2
    return (gradient * stripes * falloff).clamp(0, 1)


def shade(identity: Identity, hits: Hits, c: torch.Tensor) -> torch.Tensor:
    """Lambertian + hemispheric ambient colour [N, 3, H, W] of the hit pixels (zero on a miss).
    The key light is fixed in camera axes (x = 0), so mirrored cameras see mirrored lighting."""
    cam2world, _ = unpack_camera(c.to(torch.float32))
    light_camera = torch.nn.functional.normalize(torch.tensor(LIGHT_DIRECTION_CAMERA, device=c.device), dim=0)
    light = cam2world[:, :3, :3] @ light_camera
    lambert = (hits.normal * light[:, :, None, None]).sum(1, keepdim=True).clamp(min=0)
    up = hits.normal[:, 1:2]
    light_amount = AMBIENT_SKY * (1 + up) / 2 + AMBIENT_GROUND * (1 - up) / 2 + DIFFUSE * lambert
    index = hits.index.clamp(min=0)
    colour = identity.colour.expand(index.shape[0], -1, -1)
    albedo = colour[torch.arange(index.shape[0], device=index.device)[:, None, None], index].permute(0, 3, 1, 2)
    return (albedo * light_amount).clamp(0, 1) * (hits.index >= 0)[:, None]


def render(identity: Identity, c: torch.Tensor, pose: torch.Tensor, resolution: int):
    """Images [N, 3, H, W] (float32, [0, 1]) and foreground masks [N, 1, H, W] (float32, 0 or 1)
    of N figures (`identity` of N or 1) under cameras [N, 25] and poses [N, 6]."""
    hits = trace(identity, c, pose, resolution)
    mask = (hits.index >= 0)[:, None]
    backdrop = background(identity, resolution).expand(c.shape[0], -1, -1, -1)
    image = torch.where(mask, shade(identity, hits, c), backdrop)
    return image, mask.float()
