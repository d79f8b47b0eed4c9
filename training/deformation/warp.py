"""SMPL-guided warp of volume-render sample points from posed (observation) space to canonical space
(system.md §2.5, "nearest-triangle frame transfer").

For a sample point x, let f be the nearest triangle of the posed mesh (restricted to the faces the
caller passes, e.g. those inside the canonical box) and d its distance. With posed vertices P0, P1,
P2 and canonical vertices C0, C1, C2 of f, each triangle gets the orthonormal frame
    e1 = normalise(P1 - P0),  n = normalise((P1 - P0) x (P2 - P0)),  e3 = e1 x n
(stacked as the rows of E_P; likewise E_C), the local coordinates l = E_P (x - P0) and
    x_c = C0 + E_C^T l      if d < thickness,      x_c = x otherwise.
Since E_P^T E_P = I this equals x + A x + t with A = (E_C - E_P)^T E_P and t = C0 - P0 - A P0, which
is how it is evaluated: A and t are computed once per face, and A = 0, t = 0 exactly when the posed
and canonical triangles coincide, so a zero pose is an exact identity. The face index and d are
selected without gradient; gradients reach the posed vertices (hence the pose) through A and t.

A point nearest to an edge or vertex shared by several faces has several nearest faces with
different frames (system.md §12 item 19: the warp is discontinuous there); the search picks one of
them deterministically. The search is exact (point_to_mesh.py), batched over B; on the CPU it is the
compiled kernel (method 'auto' -> 'cpp') when it builds, which is fastest when the points come ray by
ray with the samples of a ray contiguous ([B, rays * samples, 3], as the renderer passes them):
consecutive points start from each other's nearest face. The transfer is a gather of 12 numbers per point.
"""

from typing import Optional

import torch

from training.deformation.point_to_mesh import SEARCH_METHODS, cluster_faces, nearest_triangles, resolve_method


def triangle_frames(v0, v1, v2):
    """Orthonormal frames of triangles (system.md §2.5 step 3): vertices [..., 3] -> E [..., 3, 3], rows e1, n, e3."""
    e1 = torch.nn.functional.normalize(v1 - v0, dim=-1)
    n = torch.nn.functional.normalize(torch.cross(v1 - v0, v2 - v0, dim=-1), dim=-1)
    return torch.stack([e1, n, torch.cross(e1, n, dim=-1)], dim=-2)


def face_transforms(posed_vertices, canonical_vertices, faces):
    """Per-face offset maps Delta(x) = A x + t (§2.5 steps 3-5), from posed space to canonical space.

    posed_vertices [B,V,3], canonical_vertices [V,3], faces [F,3] (long) -> [B,F,12]: columns 0-8
    are A row-major, 9-11 are t. Differentiable w.r.t. posed_vertices.
    """
    posed = posed_vertices[:, faces]  # [B, F, 3(vertex), 3]
    canonical = canonical_vertices[faces].to(posed.dtype)  # [F, 3, 3]
    frame_posed = triangle_frames(*posed.unbind(-2))
    frame_canonical = triangle_frames(*canonical.unbind(-2))
    a = (frame_canonical - frame_posed).transpose(-1, -2) @ frame_posed  # [B, F, 3, 3]
    p0 = posed[..., 0, :]
    t = canonical[:, 0] - p0 - (a @ p0[..., None])[..., 0]
    return torch.cat([a.flatten(-2), t], dim=-1)


def transfer_points(points, face_index, inside, transforms):
    """Apply the frame transfer (§2.5 steps 4-6): points [B,P,3] (posed), face_index [B,P] (long),
    inside [B,P] (bool), transforms [B,F,12] from face_transforms -> canonical points [B,P,3].

    Points where inside is False are returned unchanged; their face_index is ignored.
    """
    batch, num_faces = transforms.shape[:2]
    flat = face_index.clamp(min=0) + torch.arange(batch, device=points.device)[:, None] * num_faces
    table = transforms.flatten(0, 1).index_select(0, flat.flatten()).view(*face_index.shape, 12)
    delta = (table[..., :9].unflatten(-1, (3, 3)) * points[..., None, :]).sum(-1) + table[..., 9:]
    return points + delta * inside[..., None].to(points.dtype)


def _check_mesh(canonical_vertices, faces, thickness, chunk, method):
    """Raise ValueError naming the offending mesh or option argument."""
    if canonical_vertices.ndim != 2 or canonical_vertices.shape[-1] != 3:
        raise ValueError(f'canonical_vertices must be [V, 3], got {list(canonical_vertices.shape)}')
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.dtype not in (torch.int32, torch.int64) or not len(faces):
        raise ValueError(f'faces must be a non-empty integer [F, 3] tensor, got {faces.dtype} {list(faces.shape)}')
    if not thickness > 0:
        raise ValueError(f'thickness must be positive, got {thickness}')
    if chunk is not None and chunk < 1:
        raise ValueError(f'chunk must be None or a positive number of points, got {chunk}')
    if method not in SEARCH_METHODS:
        raise ValueError(f'method must be one of {SEARCH_METHODS}, got {method!r}')


def _check_points(points, posed_vertices, canonical_vertices):
    """Raise ValueError unless points [B,P,3] and posed_vertices [B,V,3] match the canonical mesh."""
    if points.ndim != 3 or points.shape[-1] != 3:
        raise ValueError(f'points must be [B, P, 3], got {list(points.shape)}')
    expected = [points.shape[0], canonical_vertices.shape[0], 3]
    if list(posed_vertices.shape) != expected:
        raise ValueError(f'posed_vertices must be [B, V, 3] = {expected}, got {list(posed_vertices.shape)}')


def _warp(points, posed_vertices, canonical_vertices, faces, thickness, chunk, method, order=None):
    """Nearest-face search without gradient, then the differentiable frame transfer."""
    face_index, _ = nearest_triangles(points.detach(), posed_vertices.detach(), faces, max_distance=thickness,
                                      method=method, chunk=chunk, order=order)
    inside = face_index >= 0
    transforms = face_transforms(posed_vertices, canonical_vertices, faces.long())
    return transfer_points(points, face_index, inside, transforms), inside


def warp_points(points, posed_vertices, canonical_vertices, faces, thickness: float,
                chunk: Optional[int] = None, method: str = 'auto'):
    """Warp sample points from posed to canonical space (system.md §2.5).

    points [B,P,3] (posed/observation space), posed_vertices [B,V,3] (posed mesh, differentiable),
    canonical_vertices [V,3], faces [F,3] (the face subset to use, e.g. the canonical-box faces),
    thickness: points farther than this from the posed mesh are left unchanged.
    chunk: points per block of the clustered search (None: per device); method: 'auto', 'cpp',
    'clustered' or 'brute' (see point_to_mesh.nearest_triangles; all exact). Points ordered ray by
    ray (samples of a ray contiguous) are searched fastest by 'cpp'.
    Returns (canonical_points [B,P,3], inside [B,P] bool: the nearest face is closer than thickness).
    """
    _check_mesh(canonical_vertices, faces, thickness, chunk, method)
    _check_points(points, posed_vertices, canonical_vertices)
    # Grouped on the canonical mesh, so that ties break alike in every call (MeshWarp does the same).
    order = cluster_faces(canonical_vertices, faces) if resolve_method(method, points) == 'clustered' else None
    return _warp(points, posed_vertices, canonical_vertices, faces, thickness, chunk, method, order)


class MeshWarp(torch.nn.Module):
    """The §2.5 warp with its mesh as buffers; the clustered search's face grouping is built once."""

    def __init__(self, canonical_vertices, faces, thickness: float, chunk: Optional[int] = None,
                 method: str = 'auto'):
        """canonical_vertices [V,3] (neck-centred T-pose), faces [F,3] (the subset to search),
        thickness (scene units, the §2.5 cut-off), chunk (points per search block, None: per device),
        method (nearest-triangle search, see point_to_mesh.nearest_triangles)."""
        super().__init__()
        _check_mesh(canonical_vertices, faces, thickness, chunk, method)
        self.thickness = float(thickness)
        self.chunk = chunk
        self.method = method
        self.register_buffer('canonical_vertices', canonical_vertices.clone())
        self.register_buffer('faces', faces.long().clone())
        self.register_buffer('cluster_order', cluster_faces(canonical_vertices, faces))

    def forward(self, points, posed_vertices):
        """points [B,P,3] posed space, posed_vertices [B,V,3] -> (canonical points [B,P,3], inside [B,P])."""
        _check_points(points, posed_vertices, self.canonical_vertices)
        return _warp(points, posed_vertices, self.canonical_vertices, self.faces, self.thickness, self.chunk,
                     self.method, self.cluster_order)

    def extra_repr(self) -> str:
        """Mesh size and cut-off for print(module)."""
        return (f'num_vertices={self.canonical_vertices.shape[0]}, num_faces={self.faces.shape[0]}, '
                f'thickness={self.thickness}, chunk={self.chunk}, method={self.method!r}')
