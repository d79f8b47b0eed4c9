"""The canonical body and its neck + head posing (system.md §2.5).

Canonical space: the zero-pose, zero-shape body mesh translated so that its regressed neck joint
(SMPL joint 12) is the origin; metres, y up, the body faces +z. A body pose is 6 floats: the
axis-angle of the neck (SMPL joint 12, body_pose index 11) then of the head (joint 15, body_pose
index 14); every other joint stays at zero and the shape at the mean. Posing is standard linear
blend skinning with pose blend shapes, restricted to that chain: all other joints keep identity
rotations, so only the neck and head transforms differ from the identity. Posed vertices stay in
the canonical frame (the neck joint does not move).

The model is read through smplx (optional extra, `pip install smplx`) from SMPL's data layout:
the licensed SMPL model (`from_path`) or the portrait3d procedural stand-in (`procedural`). The
module keeps tensors only, has no batch size and moves with `.to()`.
"""
import contextlib
import io
from typing import Dict

import torch

from training.deformation import procedural_body, smpl_io

NECK_JOINT = 12                      # SMPL joint indices of the posed chain
HEAD_JOINT = 15
POSE_DIM = 6                         # axis-angle of the neck, then of the head
_ROTATION_ENTRIES = 9                # pose blend-shape features per joint: R - I, row-major
_SMALL_ANGLE_SQ = 1e-8               # below this squared angle Rodrigues uses its Taylor series


def _import_smplx():
    """The smplx module, or ImportError with an install hint."""
    try:
        import smplx
    except ImportError as error:
        raise ImportError('the SMPL body model needs smplx: pip install smplx '
                          '(or pip install -e ".[smpl]")') from error
    return smplx


def axis_angle_to_matrix(axis_angle: torch.Tensor) -> torch.Tensor:
    """Rodrigues: axis-angle [..., 3] (radians) -> rotation matrices [..., 3, 3].

    Exactly the identity for a zero vector; finite gradients everywhere (Taylor series of
    sin(t)/t and (1 - cos t)/t^2 near zero).
    """
    angle_sq = (axis_angle * axis_angle).sum(-1, keepdim=True)[..., None]
    small = angle_sq < _SMALL_ANGLE_SQ
    angle = torch.where(small, torch.ones_like(angle_sq), angle_sq).sqrt()
    sin_term = torch.where(small, 1.0 - angle_sq / 6.0, torch.sin(angle) / angle)
    cos_term = torch.where(small, 0.5 - angle_sq / 24.0, (1.0 - torch.cos(angle)) / angle ** 2)
    x, y, z = axis_angle.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))
    eye = torch.eye(3, dtype=axis_angle.dtype, device=axis_angle.device)
    return eye + sin_term * skew + cos_term * (skew @ skew)


def _chain_error(parents: torch.Tensor) -> str:
    """Why `parents` [24] breaks the neck -> head chain assumption ('' if it holds)."""
    children = {joint: [child for child, parent in enumerate(parents.tolist()) if parent == joint]
                for joint in (NECK_JOINT, HEAD_JOINT)}
    if children[NECK_JOINT] != [HEAD_JOINT] or children[HEAD_JOINT]:
        return (f'joint {NECK_JOINT} must have the single child {HEAD_JOINT} and joint {HEAD_JOINT} none '
                f'(SMPL tree); got children {children}')
    return ''


class BodyModel(torch.nn.Module):
    """Canonical body mesh posed by neck + head axis-angles (restricted LBS, see module doc)."""

    def __init__(self, canonical_vertices: torch.Tensor, faces: torch.Tensor, head_joint: torch.Tensor,
                 skinned_vertices: torch.Tensor, skinning_weights: torch.Tensor, pose_basis: torch.Tensor):
        """Buffers: canonical_vertices [V, 3] (neck joint at the origin), faces [F, 3] long,
        head_joint [3] (canonical), skinned_vertices [S] long (the vertices with a neck or head
        weight), skinning_weights [S, 2] (their neck and head weights), pose_basis [18, V * 3]
        (SMPL posedirs rows of the neck, then the head)."""
        super().__init__()
        self.register_buffer('canonical_vertices', canonical_vertices)
        self.register_buffer('faces', faces.long())
        self.register_buffer('head_joint', head_joint)
        self.register_buffer('skinned_vertices', skinned_vertices.long())
        self.register_buffer('skinning_weights', skinning_weights)
        self.register_buffer('pose_basis', pose_basis)

    @classmethod
    def from_arrays(cls, arrays: Dict[str, object], source: str) -> 'BodyModel':
        """Build from SMPL-layout arrays (see smpl_io) through smplx.SMPL(data_struct=...).

        `source` names the arrays' origin in error messages.
        """
        smplx = _import_smplx()
        with contextlib.redirect_stdout(io.StringIO()):         # smplx prints a note on 10 betas
            smpl = smplx.SMPL('', data_struct=smplx.utils.Struct(**arrays), create_betas=False,
                              create_global_orient=False, create_body_pose=False, create_transl=False)
        error = _chain_error(smpl.parents)
        if error:
            raise ValueError(f'{source}: key \'kintree_table\': {error}')
        with torch.no_grad():
            joints = smpl.J_regressor.double() @ smpl.v_template.double()
            neck = joints[NECK_JOINT]
            rows = [torch.arange(_ROTATION_ENTRIES) + (joint - 1) * _ROTATION_ENTRIES
                    for joint in (NECK_JOINT, HEAD_JOINT)]
            weights = smpl.lbs_weights[:, [NECK_JOINT, HEAD_JOINT]]
            skinned = torch.nonzero(weights.sum(1) > 0).squeeze(1)
            return cls(canonical_vertices=(smpl.v_template.double() - neck).float(),
                       faces=smpl.faces_tensor.clone(),
                       head_joint=(joints[HEAD_JOINT] - neck).float(),
                       skinned_vertices=skinned,
                       skinning_weights=weights[skinned].clone(),
                       pose_basis=smpl.posedirs[torch.cat(rows)].clone())

    @classmethod
    def from_path(cls, path: str, gender: str = 'neutral') -> 'BodyModel':
        """Load SMPL_<GENDER>.pkl/.npz from `path` (a file, a folder, or a folder with smpl/)."""
        file = smpl_io.find_smpl_file(path, gender)
        arrays = smpl_io.load_smpl(file)
        if 'stand_in' in arrays:
            print(f'Body model: {file} is the {arrays["stand_in"]!r}, a stand-in for SMPL (not SMPL)')
        else:
            print(f'Body model: SMPL from {file}')
        return cls.from_arrays(arrays, file)

    @classmethod
    def procedural(cls) -> 'BodyModel':
        """The portrait3d procedural body, a licence-clean stand-in for SMPL (built once per process)."""
        print(f'Body model: the {procedural_body.STAND_IN_NAME!r}, a stand-in for SMPL (not SMPL)')
        return cls.from_arrays(procedural_body.procedural_smpl_arrays(), procedural_body.STAND_IN_NAME)

    @property
    def num_vertices(self) -> int:
        """V, the number of mesh vertices."""
        return self.canonical_vertices.shape[0]

    def posed_vertices(self, pose: torch.Tensor) -> torch.Tensor:
        """Posed vertices [B, V, 3] in the canonical frame for `pose` [B, 6].

        pose[:, 0:3] is the axis-angle of the neck (SMPL joint 12), pose[:, 3:6] of the head
        (joint 15), radians. Differentiable w.r.t. `pose`; zero pose gives canonical_vertices.
        """
        if pose.ndim != 2 or pose.shape[1] != POSE_DIM:
            raise ValueError(f'pose must have shape [B, {POSE_DIM}] (axis-angle of the neck, SMPL joint 12, '
                             f'then of the head, joint 15); got {list(pose.shape)}')
        rotations = axis_angle_to_matrix(pose.to(self.canonical_vertices.dtype).unflatten(1, (2, 3)))
        eye = torch.eye(3, dtype=rotations.dtype, device=rotations.device)
        features = (rotations - eye).flatten(1)                                   # [B, 18]
        vertices = self.canonical_vertices + (features @ self.pose_basis).unflatten(1, (-1, 3))
        # LBS displacement A_j v - v of the two moving joints (all other A_j are the identity):
        # neck A12 v = R12 v (it sits at the origin); head A15 v = R12 R15 (v - h) + R12 h.
        neck = rotations[:, 0] - eye
        head = rotations[:, 0] @ rotations[:, 1] - eye
        skinned = vertices[:, self.skinned_vertices]                              # [B, S, 3]
        neck_offset = skinned @ neck.transpose(1, 2)
        head_offset = (skinned - self.head_joint) @ head.transpose(1, 2) + (neck @ self.head_joint)[:, None]
        weights = self.skinning_weights
        offsets = weights[:, :1] * neck_offset + weights[:, 1:] * head_offset
        return vertices.index_add(1, self.skinned_vertices, offsets)

    def box_faces(self, half_size: float) -> torch.Tensor:
        """Indices [K] (long) of faces whose three canonical vertices lie inside the box
        |x|, |y|, |z| < half_size (metres, around the neck joint)."""
        inside = (self.canonical_vertices.abs() < half_size).all(dim=1)
        return torch.nonzero(inside[self.faces].all(dim=1)).squeeze(1)

    def extra_repr(self) -> str:
        """Vertex and face counts for print(module)."""
        return f'num_vertices={self.num_vertices}, num_faces={self.faces.shape[0]}'
