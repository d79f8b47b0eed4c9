"""The compiled CPU kernel (csrc/): exact nearest-triangle search and the fused §2.5 warp.

Search: a bounding-volume hierarchy whose topology is built once from one pose of the mesh
(build_tree) and refitted to every posed mesh (refit, about 0.2 ms for SMPL), traversed per point
with children bounded by axis-aligned and normal-oriented boxes, each point warm-started with the
previous point's nearest leaf (csrc/bvh.h, csrc/bvh_search.h). Same contract as
point_to_mesh.clustered_nearest_triangles (the reference): exact, face -1 and distance inf beyond
max_distance, ties broken by the smallest face index, results independent of point order and
threads. Points ordered ray by ray (samples of a ray contiguous) are searched fastest.

Fused warp (FusedWarp): the search and the frame transfer x + A_f x + t_f (warp.face_transforms) in
one pass, differentiable w.r.t. the points and the per-face transforms (hence the posed vertices).
"""
import math
import os
from typing import Optional, Tuple

import torch

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
_SOURCES = ['nearest_triangle.cpp']


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('nearest_triangle_plugin', _SOURCES, cuda=False, source_dir=SOURCE_DIR)


def available() -> bool:
    """Whether the CPU kernel builds (and is loaded) in this process."""
    return _plugin() is not None


def _require_plugin():
    """The plugin, or RuntimeError when it could not be built."""
    plugin = _plugin()
    if plugin is None:
        raise RuntimeError("nearest_triangles: method='cpp' requested but the CPU plugin could not be built "
                           "(see the message above)")
    return plugin


@torch.no_grad()
def nearest_triangles(points, vertices, faces, max_distance: float = math.inf) -> Tuple[torch.Tensor, torch.Tensor]:
    """points [B,P,3], vertices [B,V,3] (CPU), faces [F,3] -> (face_index [B,P] long, sq_distance [B,P]).

    Builds a tree per posed mesh. Computes in float32 and returns sq_distance in the points' dtype.
    Uses torch.get_num_threads() OpenMP threads. Raises RuntimeError if the plugin cannot be built.
    """
    face, sq = _require_plugin().nearest_triangles(points.float().contiguous(), vertices.float().contiguous(),
                                                   faces.long().contiguous(), float(max_distance),
                                                   torch.get_num_threads())
    return face, sq.to(points.dtype)


@torch.no_grad()
def build_tree(vertices, faces):
    """Tree topology (opaque) from one pose of the mesh: vertices [V,3], faces [F,3] (CPU)."""
    return _require_plugin().build_tree(vertices.float().contiguous(), faces.long().contiguous())


@torch.no_grad()
def refit(tree, vertices, faces):
    """The tree refitted to posed meshes vertices [B,V,3] (opaque; faces as given to build_tree)."""
    return _require_plugin().refit(tree, vertices.float().contiguous(), faces.long().contiguous(),
                                   torch.get_num_threads())


@torch.no_grad()
def search(posed, points, max_distance: float = math.inf) -> Tuple[torch.Tensor, torch.Tensor]:
    """Nearest faces of points [B,P,3] on refitted meshes -> (face_index [B,P] long, sq_distance [B,P])."""
    face, sq = _require_plugin().search(posed, points.float().contiguous(), float(max_distance),
                                        torch.get_num_threads())
    return face, sq.to(points.dtype)


class FusedWarp(torch.autograd.Function):
    """warped = x + A_f x + t_f for the nearest face f within max_distance, else x (system.md §2.5).

    Inputs: points [B,P,3] (float32 or float64), transforms [B,F,12] (warp.face_transforms, same
    dtype), posed (refit of the posed meshes), max_distance. Outputs warped [B,P,3] and face
    [B,P] (long, -1 beyond max_distance; not differentiable). The face choice is piecewise constant,
    so the gradients are those of the transfer with the faces fixed.
    """

    @staticmethod
    def forward(ctx, points, transforms, posed, max_distance):
        """One pass of search and transfer over contiguous inputs."""
        points, transforms = points.contiguous(), transforms.contiguous()
        warped, face = _require_plugin().warp(posed, points, transforms, float(max_distance), torch.get_num_threads())
        ctx.save_for_backward(points, face, transforms)
        ctx.mark_non_differentiable(face)
        return warped, face

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_warped, grad_face):
        """Gradients w.r.t. points (grad + A_f^T grad where warped) and the per-face transforms."""
        points, face, transforms = ctx.saved_tensors
        need_points, need_transforms = ctx.needs_input_grad[:2]
        grad_points, grad_transforms = _require_plugin().warp_backward(
            grad_warped.contiguous(), points, face, transforms, need_points, torch.get_num_threads())
        return (grad_points if need_points else None), (grad_transforms if need_transforms else None), None, None
