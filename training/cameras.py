"""Camera conventions: look-at poses, intrinsics, the 25-float camera vector, and mirroring.

World: y up, the canonical body faces +z, origin at the SMPL neck joint. cam2world matrices use
OpenCV camera axes (x right, y down, z forward). Intrinsics are normalised by the image size
(principal point 0.5 means the image centre). The camera vector `c` is the 4x4 cam2world
row-major (16 floats) followed by the 3x3 intrinsics row-major (9 floats). A body pose is 6
floats: the axis-angle of the SMPL neck (joint 12) and of the head (joint 15).
"""
import math
from typing import Sequence, Union

import torch

from configs.schema import CameraConfig

Angle = Union[float, torch.Tensor]
MIRROR = torch.tensor([-1.0, 1.0, 1.0, 1.0])


def _as_tensor(value, dtype=torch.float32, device=None) -> torch.Tensor:
    return torch.as_tensor(value, dtype=dtype, device=device)


def look_at_cam2world(origin: torch.Tensor, target: torch.Tensor, up=(0.0, 1.0, 0.0)) -> torch.Tensor:
    """cam2world [N, 4, 4] for cameras at `origin` [N, 3] looking at `target` [N, 3] or [3].

    Columns of the rotation: x = forward x up_world (image right), y = forward x x (image down),
    z = forward; translation = origin.
    """
    origin = _as_tensor(origin, origin.dtype if torch.is_tensor(origin) else torch.float32)
    target = _as_tensor(target, origin.dtype, origin.device).expand_as(origin)
    up = _as_tensor(up, origin.dtype, origin.device).expand_as(origin)
    forward = torch.nn.functional.normalize(target - origin, dim=-1)
    right = torch.nn.functional.normalize(torch.cross(forward, up, dim=-1), dim=-1)
    down = torch.cross(forward, right, dim=-1)
    cam2world = torch.eye(4, dtype=origin.dtype, device=origin.device).repeat(origin.shape[0], 1, 1)
    cam2world[:, :3, :3] = torch.stack([right, down, forward], dim=-1)
    cam2world[:, :3, 3] = origin
    return cam2world


def sphere_position(yaw: Angle, pitch: Angle, radius: float) -> torch.Tensor:
    """Camera centre [N, 3] on a sphere around the world origin (EG3D's LookAtPoseSampler angles).

    `yaw` h: pi/2 = frontal (camera on +z), 0 = camera on -x, -pi/2 = back. `pitch` v: polar
    angle from +y with pi/2 = level, mapped as phi = arccos(1 - 2 v / pi).
    """
    yaw = _as_tensor(yaw, torch.float64).reshape(-1)
    pitch = _as_tensor(pitch, torch.float64).reshape(-1).clamp(1e-5, math.pi - 1e-5)
    yaw, pitch = torch.broadcast_tensors(yaw, pitch)
    phi = torch.arccos(1 - 2 * pitch / math.pi)
    theta = math.pi - yaw
    return radius * torch.stack([phi.sin() * theta.cos(), phi.cos(), phi.sin() * theta.sin()], dim=-1)


def look_at_pose(yaw: Angle, pitch: Angle, lookat: Sequence[float], radius: float) -> torch.Tensor:
    """cam2world [N, 4, 4] (float32) of cameras on the sphere of `radius` looking at `lookat`."""
    return look_at_cam2world(sphere_position(yaw, pitch, radius), _as_tensor(lookat, torch.float64)).float()


def yaw_pitch_of(cam2world: torch.Tensor) -> torch.Tensor:
    """Inverse of `sphere_position` for the camera centre: [N, 4, 4] -> [N, 2] (yaw, pitch)."""
    t = cam2world[..., :3, 3]
    r = t.norm(dim=-1)
    phi = torch.arccos((t[..., 1] / r).clamp(-1, 1))
    pitch = (1 - phi.cos()) * math.pi / 2
    yaw = math.pi - torch.atan2(t[..., 2], t[..., 0])
    yaw = torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi
    return torch.stack([yaw, pitch], dim=-1)


def focal_to_fov_deg(focal: float) -> float:
    """Full field of view (degrees) of a normalised focal length: fov = 2 atan(1 / (2 f))."""
    return math.degrees(2 * math.atan(0.5 / focal))


def fov_deg_to_focal(fov_deg: float) -> float:
    """Normalised focal length of a full field of view in degrees: f = 1 / (2 tan(fov / 2))."""
    if not 0 < fov_deg < 180:
        raise ValueError(f'fov_deg: expected a value in (0, 180), got {fov_deg}')
    return 0.5 / math.tan(math.radians(fov_deg) / 2)


def intrinsics(focal: float, principal: float = 0.5, n: int = 1) -> torch.Tensor:
    """Normalised intrinsics [N, 3, 3]: [[f, 0, cx], [0, f, cy], [0, 0, 1]]."""
    k = torch.tensor([[focal, 0.0, principal], [0.0, focal, principal], [0.0, 0.0, 1.0]])
    return k.repeat(n, 1, 1)


def pack_camera(cam2world: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """25-float camera vectors [N, 25] from cam2world [N, 4, 4] and intrinsics [N, 3, 3] or [3, 3]."""
    K = K.to(cam2world).expand(cam2world.shape[0], 3, 3)
    return torch.cat([cam2world.reshape(-1, 16), K.reshape(-1, 9)], dim=1)


def unpack_camera(c: torch.Tensor):
    """Inverse of `pack_camera`: [N, >=25] -> (cam2world [N, 4, 4], intrinsics [N, 3, 3])."""
    if c.ndim != 2 or c.shape[1] < 25:
        raise ValueError(f'c: expected [N, 25] camera vectors, got shape {list(c.shape)}')
    return c[:, :16].reshape(-1, 4, 4), c[:, 16:25].reshape(-1, 3, 3)


def camera_vector(yaw: Angle, pitch: Angle, cfg: CameraConfig = CameraConfig(), focal: float = None) -> torch.Tensor:
    """25-float camera vectors [N, 25] for the given yaw/pitch under the preset `cfg`."""
    cam2world = look_at_pose(yaw, pitch, cfg.lookat, cfg.radius)
    K = intrinsics(cfg.focal if focal is None else focal, cfg.principal)
    return pack_camera(cam2world, K)


def average_camera(cfg: CameraConfig = CameraConfig()) -> torch.Tensor:
    """The frontal, level conditioning camera [1, 25] of the preset (yaw = pitch = pi/2)."""
    return camera_vector(math.pi / 2, math.pi / 2, cfg)


def mirror_cam2world(cam2world: torch.Tensor) -> torch.Tensor:
    """Mirror across the x = 0 plane: S M S with S = diag(-1, 1, 1, 1). [..., 4, 4]."""
    s = MIRROR.to(cam2world)
    return cam2world * s[:, None] * s[None, :]


def mirror_camera(c: torch.Tensor) -> torch.Tensor:
    """Mirror 25-float (or 31-float, pose included) vectors [N, 25|31]; intrinsics are unchanged."""
    cam2world, K = unpack_camera(c)
    out = torch.cat([mirror_cam2world(cam2world).reshape(-1, 16), K.reshape(-1, 9)], dim=1)
    if c.shape[1] == 31:
        out = torch.cat([out, mirror_pose(c[:, 25:])], dim=1)
    elif c.shape[1] != 25:
        raise ValueError(f'c: expected 25 or 31 floats per row, got {c.shape[1]}')
    return out


def mirror_pose(pose: torch.Tensor) -> torch.Tensor:
    """Mirror body poses [N, 6] across x = 0: an axis-angle (a pseudo-vector) keeps x, negates y and z."""
    if pose.shape[-1] != 6:
        raise ValueError(f'pose: expected 6 floats (neck and head axis-angle), got shape {list(pose.shape)}')
    sign = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, -1.0], dtype=pose.dtype, device=pose.device)
    return pose * sign


def project(points: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Project world points [N, P, 3] with cameras [N, 25] to normalised image coords [N, P, 2] (u right, v down, in [0, 1])."""
    cam2world, K = unpack_camera(c)
    world2cam = torch.linalg.inv(cam2world)
    cam = points @ world2cam[:, :3, :3].transpose(1, 2) + world2cam[:, None, :3, 3]
    uvw = cam @ K.transpose(1, 2)
    return uvw[..., :2] / uvw[..., 2:3]
