"""Explicit left/right symmetry of the pose predictors (system.md §2.6).

A sample is "left" when its camera centre lies on the +x half-space: cam2world t_x = c[:, 3] >= 0
(the original's atan2(t_z, t_x) in [-pi/2, pi/2]). This is the ONE definition of the boundary;
t_x == 0 (including -0.0) counts as left. The pose networks only ever see right-half inputs:
for left samples the camera is conjugated by S = diag(-1, 1, 1, 1) (training.cameras.mirror_camera)
and images are flipped horizontally ("folding"); the predicted pose is then mirrored back by
negating the y and z components of both axis-angles (training.cameras.mirror_pose, "unfolding").
A predictor wrapped this way is exactly mirror-equivariant for every camera with t_x != 0: the
inputs it sees for (image, c) and for (flipped image, mirrored c) are bit-identical.
"""
import torch

from training.cameras import mirror_camera, mirror_pose
from training.networks.layers import check_shape

CAMERA_DIM = 25
POSE_DIM = 6
CAMERA_TX_INDEX = 3     # cam2world translation x in the row-major 4x4 (system.md §2.2)


def _select(left: torch.Tensor, if_left: torch.Tensor, otherwise: torch.Tensor) -> torch.Tensor:
    """Per-sample choice: left [N] bool, tensors [N, ...] -> [N, ...]."""
    mask = left.reshape([-1] + [1] * (otherwise.ndim - 1))
    return torch.where(mask, if_left, otherwise)


def is_left(c: torch.Tensor) -> torch.Tensor:
    """c [N, 25] -> bool [N]: camera on the +x half-space (t_x >= 0), the side that gets mirrored."""
    check_shape('c', c, [None, CAMERA_DIM])
    return c[:, CAMERA_TX_INDEX] >= 0


def flip_images(img: torch.Tensor) -> torch.Tensor:
    """Horizontal flip (the image of a scene mirrored across x = 0 seen by the mirrored camera). [N, C, H, W]."""
    return img.flip(-1)


def fold_camera(c: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Mirror the cameras [N, 25] of left samples (left [N] bool) onto the right half."""
    return _select(left, mirror_camera(c), c)


def fold_images(img: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Flip the images [N, C, H, W] of left samples (left [N] bool) horizontally."""
    return _select(left, flip_images(img), img)


def unfold_pose(pose: torch.Tensor, left: torch.Tensor) -> torch.Tensor:
    """Mirror poses [N, 6] predicted in the folded frame back for left samples (negate y, z of both joints)."""
    return _select(left, mirror_pose(pose), pose)
