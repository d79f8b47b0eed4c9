"""The body inside the portrait G: body model, canonical-box faces and the posed-to-canonical warp (system.md §2.5).

The body is either the licensed SMPL model read from `smpl_path` or, when that is None, the
procedural stand-in (training.deformation.body_model; both print which one they are). All of
its arrays are buffers, so a generator's state_dict carries the body it was trained with.

Rebuilding without the SMPL file: given `sizes` (the buffer sizes, see `BodyWarp.sizes`), the
module allocates zero buffers of those sizes instead of reading any file; load_state_dict then
fills them. PortraitGenerator records `sizes` among its init kwargs for exactly that.
"""
from typing import Callable, Dict, Optional

import torch

from training.deformation.body_model import POSE_DIM, BodyModel
from training.deformation.warp import MeshWarp

_JOINTS_POSED = 2                    # neck and head (skinning weights and pose blend-shape blocks)
_ROTATION_ENTRIES = 9                # pose blend-shape rows per joint
_XYZ = 3


def _placeholder_body(sizes: Dict[str, int]) -> BodyModel:
    """A BodyModel of zero buffers with the given sizes (to be overwritten by load_state_dict)."""
    v, f, s = sizes['vertices'], sizes['faces'], sizes['skinned_vertices']
    return BodyModel(canonical_vertices=torch.zeros(v, _XYZ), faces=torch.zeros(f, _XYZ, dtype=torch.long),
                     head_joint=torch.zeros(_XYZ), skinned_vertices=torch.zeros(s, dtype=torch.long),
                     skinning_weights=torch.zeros(s, _JOINTS_POSED),
                     pose_basis=torch.zeros(_JOINTS_POSED * _ROTATION_ENTRIES, v * _XYZ))


class BodyWarp(torch.nn.Module):
    """Poses the body and warps render samples from posed to canonical space (§2.5).

    Faces searched by the warp: those whose three canonical vertices lie inside the tri-grid box
    |x|, |y|, |z| < box_warp / 2, selected once here (MeshWarp keeps them as its `faces` buffer).
    """

    def __init__(self, box_warp: float, thickness: float, smpl_path: Optional[str] = None,
                 sizes: Optional[Dict[str, int]] = None, chunk: Optional[int] = None):
        """box_warp: side of the canonical box (metres); thickness: the warp cut-off distance (metres);
        smpl_path: SMPL file or folder (None: the procedural stand-in); sizes: allocate zero buffers of
        these sizes and read no file (checkpoint loading); chunk: points per nearest-face search block."""
        super().__init__()
        if sizes is not None:
            self.body = _placeholder_body(sizes)
            box_faces = torch.zeros(sizes['box_faces'], _XYZ, dtype=torch.long)
        else:
            self.body = BodyModel.procedural() if smpl_path is None else BodyModel.from_path(smpl_path)
            box_faces = self.body.faces[self.body.box_faces(box_warp / 2)]
        self.warp = MeshWarp(self.body.canonical_vertices, box_faces, thickness=thickness, chunk=chunk)

    def sizes(self) -> Dict[str, int]:
        """Buffer sizes that let `BodyWarp(..., sizes=...)` rebuild this module without the body file."""
        return dict(vertices=int(self.body.num_vertices), faces=int(self.body.faces.shape[0]),
                    skinned_vertices=int(self.body.skinned_vertices.shape[0]),
                    box_faces=int(self.warp.faces.shape[0]))

    def warp_fn(self, pose: torch.Tensor) -> Optional[Callable[[torch.Tensor], torch.Tensor]]:
        """For body poses [N, 6] (neck, head axis-angle): a map of posed points [N, P, 3] to canonical [N, P, 3].

        Returns None when the warp is exactly the identity: every pose is zero and no gradient
        w.r.t. the pose is needed. The posed mesh, its per-face transforms and its search structure
        are computed once and shared by all calls (coarse and fine samples, every ray chunk); use
        the map for one forward (and its backward) only.
        """
        if pose.ndim != 2 or pose.shape[1] != POSE_DIM:
            raise ValueError(f'pose_params: expected shape [N, {POSE_DIM}], got {list(pose.shape)}')
        if not pose.requires_grad and not bool(pose.any()):
            return None
        posed = self.warp.pose(self.body.posed_vertices(pose))
        return lambda points: self.warp(points, posed)[0]

    def extra_repr(self) -> str:
        """Buffer sizes for print(module)."""
        return ', '.join(f'{key}={value}' for key, value in self.sizes().items())
