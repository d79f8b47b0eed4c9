"""Posing synthetic figures: the neck+head kinematic chain applied to canonical primitives and landmarks.

A body pose is 6 floats: the axis-angle of the neck joint then of the head joint (the label
convention, system.md §2.2). Rotations act about the joints of the canonical skeleton: a head
point x maps to R_neck (R_head (x - j_head) + j_head - j_neck) + j_neck, a neck point to
R_neck (x - j_neck) + j_neck, and torso points stay put. This is an independent twin of the
generator's deformation: it shares no code with it.
"""
from typing import Dict, NamedTuple

import torch

from configs.schema import SkeletonConfig
from portrait_data.synthetic_figure import CLIPPED, LANDMARK_NAMES, PRIMITIVE_GROUPS, Identity
from portrait_data.synthetic_proportions import GROUPS

SMALL_ANGLE = 1e-4


class PosedPrimitives(NamedTuple):
    """World-space primitives (float64): centre [N, P, 3], inv_axes [N, P, 3, 3], and the
    half-spaces of the clipped primitives PRIMITIVES[CLIPPED]: clip_normal [N, C, K, 3], clip_offset [N, C, K]
    (keep normal . x >= offset)."""
    centre: torch.Tensor
    inv_axes: torch.Tensor
    clip_normal: torch.Tensor
    clip_offset: torch.Tensor


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: rotation matrices [..., 3, 3] of axis-angle vectors [..., 3] (radians)."""
    theta2 = (axis_angle * axis_angle).sum(-1)[..., None, None]
    theta = theta2.clamp(min=SMALL_ANGLE ** 2).sqrt()
    small = theta2 < SMALL_ANGLE ** 2
    sinc = torch.where(small, 1 - theta2 / 6, theta.sin() / theta)
    cosc = torch.where(small, 0.5 - theta2 / 24, (1 - theta.cos()) / theta.clamp(min=SMALL_ANGLE) ** 2)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    cross = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*axis_angle.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sinc * cross + cosc * (cross @ cross)


def group_transforms(pose: torch.Tensor, skeleton: SkeletonConfig = SkeletonConfig()):
    """Rigid transforms x -> R x + t of the groups in `GROUPS` order for poses [N, 6]:
    (R [N, G, 3, 3], t [N, G, 3]), float64."""
    pose = pose.to(torch.float64)
    neck_rot, head_rot = axis_angle_to_matrix(pose[:, :3]), axis_angle_to_matrix(pose[:, 3:])
    j_neck = torch.tensor(skeleton.neck_joint, dtype=torch.float64, device=pose.device)
    j_head = torch.tensor(skeleton.head_joint, dtype=torch.float64, device=pose.device)
    eye = torch.eye(3, dtype=torch.float64, device=pose.device).expand_as(neck_rot)
    head_total = neck_rot @ head_rot
    rotations = {'torso': eye, 'neck': neck_rot, 'head': head_total}
    translations = {
        'torso': torch.zeros_like(pose[:, :3]),
        'neck': j_neck - neck_rot @ j_neck,
        'head': neck_rot @ (j_head - j_neck) + j_neck - head_total @ j_head,
    }
    return (torch.stack([rotations[g] for g in GROUPS], 1), torch.stack([translations[g] for g in GROUPS], 1))


def pose_primitives(identity: Identity, pose: torch.Tensor) -> PosedPrimitives:
    """Move the canonical primitives of `identity` (N or 1 identities) by poses [N, 6] to world space."""
    rotations, translations = group_transforms(pose.to(identity.centre.device))
    groups = PRIMITIVE_GROUPS.to(identity.centre.device)
    rot, trans = rotations[:, groups], translations[:, groups]                  # [N, P, 3, 3], [N, P, 3]
    centre = (rot @ identity.centre[..., None])[..., 0] + trans
    inv_axes = identity.inv_axes @ rot.transpose(-1, -2)
    clip_normal = identity.clip_normal @ rot[:, CLIPPED].transpose(-1, -2)
    clip_offset = identity.clip_offset + (clip_normal * trans[:, CLIPPED, None]).sum(-1)
    return PosedPrimitives(centre, inv_axes, clip_normal, clip_offset)


def posed_landmarks(identity: Identity, pose: torch.Tensor) -> Dict[str, torch.Tensor]:
    """World positions {name: [N, 3]} (float64) of the head landmarks (nose tip, eyes, mouth) under poses [N, 6]."""
    rotations, translations = group_transforms(pose.to(identity.landmarks.device))
    head = GROUPS.index('head')
    points = identity.landmarks @ rotations[:, head].transpose(-1, -2) + translations[:, head, None]
    return {name: points[:, i] for i, name in enumerate(LANDMARK_NAMES)}
