"""Camera rays through pixel centres of the 25-float camera (system.md §3, first bullet; §7).

The camera vector holds cam2world (OpenCV axes: x right, y down, z forward) and intrinsics
normalised by the image size, so rays do not depend on the output image size, only on the
neural rendering resolution R. Pixels are flattened in raster order: index = row * R + column.
"""
import torch

from training.cameras import unpack_camera


def pixel_centres(resolution: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised pixel centres [R*R, 2] = (u, v) = ((column + 0.5) / R, (row + 0.5) / R), raster order."""
    centres = (torch.arange(resolution, dtype=dtype, device=device) + 0.5) / resolution
    v, u = torch.meshgrid(centres, centres, indexing='ij')
    return torch.stack([u.reshape(-1), v.reshape(-1)], dim=-1)


def camera_rays(c: torch.Tensor, resolution: int):
    """World-space rays of cameras c [N, 25] at R = `resolution`: (origins, directions), each [N, R*R, 3].

    Camera-space direction of pixel (u, v) with normalised intrinsics fx, fy, cx, cy and skew s:
    ((u - cx + cy s / fy - s v / fy) / fx, (v - cy) / fy, 1), rotated by cam2world and normalised
    to unit length; the origin is the camera centre (the cam2world translation).
    """
    cam2world, K = unpack_camera(c)
    fx, fy, cx, cy, skew = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2], K[:, 0, 1]
    uv = pixel_centres(resolution, c.dtype, c.device)
    u, v = uv[None, :, 0], uv[None, :, 1]
    fx, fy, cx, cy, skew = (t[:, None] for t in (fx, fy, cx, cy, skew))
    x_cam = (u - cx + cy * skew / fy - skew * v / fy) / fx
    y_cam = (v - cy) / fy
    dirs_cam = torch.stack([x_cam, y_cam, torch.ones_like(x_cam)], dim=-1)
    directions = torch.nn.functional.normalize(dirs_cam @ cam2world[:, :3, :3].transpose(1, 2), dim=-1)
    origins = cam2world[:, None, :3, 3].expand_as(directions)
    return origins, directions
