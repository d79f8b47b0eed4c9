"""Body-pose predictors (system.md §4): the G pose branch P_G(z, c) and D's pose predictor P_D.

Both output 6 floats, the neck and head axis-angles (§2.2). Both are equalized-lr MLPs with lrelu
hidden layers and a linear output. The G branch applies the explicit symmetry (§2.6, see
symmetry.py) itself; the D predictor works in whatever frame its features come from, and the
dual discriminator folds its whole input before the backbone (dual_discriminator.py).
"""
from typing import Sequence

import torch

from torch_utils import persistence
from training.networks.layers import FullyConnectedLayer, check_shape
from training.networks.symmetry import CAMERA_DIM, POSE_DIM, fold_camera, is_left, unfold_pose


class PoseMLP(torch.nn.Module):
    """x [N, in_features] -> [N, 6]: FC + lrelu for each hidden width, then a linear FC to 6 (§4.1-4.2)."""

    def __init__(self, in_features: int, hidden_features: Sequence[int]):
        super().__init__()
        widths = [int(in_features)] + [int(h) for h in hidden_features]
        if min(widths) < 1:
            raise ValueError(f'hidden_features: expected positive widths, got {list(hidden_features)}')
        self.num_layers = len(widths)
        for idx in range(len(widths) - 1):
            setattr(self, f'fc{idx}', FullyConnectedLayer(widths[idx], widths[idx + 1], activation='lrelu'))
        setattr(self, f'fc{len(widths) - 1}', FullyConnectedLayer(widths[-1], POSE_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [N, in_features] -> pose [N, 6]."""
        for idx in range(self.num_layers):
            x = getattr(self, f'fc{idx}')(x)
        return x


@persistence.persistent_class
class GPoseBranch(torch.nn.Module):
    """P_G(z, c): z [N, z_dim], camera c [N, 25] -> pose [N, 6] (system.md §4.1, with §2.6 symmetry).

    MLP on concat(z, c): (z_dim + 25) -> 128 -> 32 (lrelu) -> 6 (linear) at the paper widths. For
    left cameras (t_x >= 0) the camera is mirrored before the MLP and the pose mirrored back; z is
    not mirrored, so P_G(z, mirror(c)) == mirror_pose(P_G(z, c)) exactly for t_x != 0.
    """

    def __init__(self, z_dim: int, hidden_features: Sequence[int] = (128, 32)):
        super().__init__()
        if z_dim < 0:
            raise ValueError(f'z_dim: expected >= 0, got {z_dim}')
        self.z_dim = z_dim
        self.mlp = PoseMLP(z_dim + CAMERA_DIM, hidden_features)

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """z [N, z_dim], c [N, 25] (cam2world + intrinsics) -> pose [N, 6] (neck, head axis-angle)."""
        check_shape('z', z, [None, self.z_dim])
        check_shape('c', c, [z.shape[0], CAMERA_DIM])
        left = is_left(c)
        pose = self.mlp(torch.cat([z.to(torch.float32), fold_camera(c.to(torch.float32), left)], dim=1))
        return unfold_pose(pose, left)

    def extra_repr(self) -> str:
        return f'z_dim={self.z_dim}'


@persistence.persistent_class
class DPosePredictor(torch.nn.Module):
    """P_D: D epilogue features [N, feature_dim], camera c [N, 25] -> pose [N, 6] (system.md §4.2).

    MLP on concat(features, c): (8192 + 25) -> 2048 -> 512 -> 128 -> 32 (lrelu) -> 6 (linear) at
    the paper widths. No symmetry here: the pose is in the frame of (features, c); the dual
    discriminator folds images and camera before the backbone and unfolds the result.
    """

    def __init__(self, feature_dim: int, hidden_features: Sequence[int] = (2048, 512, 128, 32)):
        super().__init__()
        self.feature_dim = feature_dim
        self.mlp = PoseMLP(feature_dim + CAMERA_DIM, hidden_features)

    def forward(self, features: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """features [N, feature_dim], c [N, 25] -> pose [N, 6] in the same frame as the inputs."""
        check_shape('features', features, [None, self.feature_dim])
        check_shape('c', c, [features.shape[0], CAMERA_DIM])
        return self.mlp(torch.cat([features.to(torch.float32), c.to(torch.float32)], dim=1))

    def extra_repr(self) -> str:
        return f'feature_dim={self.feature_dim}'
