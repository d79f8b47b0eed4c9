"""Nearest-triangle search through the compiled CPU kernel (csrc/nearest_triangle.cpp): a BVH per
posed mesh, nearest-child-first traversal, warm-started with the previous point's nearest face.

Same contract as point_to_mesh.clustered_nearest_triangles (the reference): exact, face -1 and
distance inf beyond max_distance, ties broken by the smallest face index. Consecutive points along
a ray reuse each other's nearest face as a first upper bound, so points ordered ray by ray (samples
contiguous per ray) are searched about 2-3x faster than shuffled ones, with identical results.
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


@torch.no_grad()
def nearest_triangles(points, vertices, faces, max_distance: float = math.inf) -> Tuple[torch.Tensor, torch.Tensor]:
    """points [B,P,3], vertices [B,V,3] (CPU), faces [F,3] -> (face_index [B,P] long, sq_distance [B,P]).

    Computes in float32 and returns sq_distance in the points' dtype. Uses torch.get_num_threads()
    OpenMP threads. Raises RuntimeError if the plugin cannot be built.
    """
    plugin = _plugin()
    if plugin is None:
        raise RuntimeError("nearest_triangles: method='cpp' requested but the CPU plugin could not be built "
                           "(see the message above)")
    face, sq = plugin.nearest_triangles(points.float().contiguous(), vertices.float().contiguous(),
                                        faces.long().contiguous(), float(max_distance), torch.get_num_threads())
    return face, sq.to(points.dtype)
