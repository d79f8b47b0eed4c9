"""Dataclasses that name every geometric constant of the system (no magic literals elsewhere)."""
from dataclasses import dataclass
from typing import Tuple


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
