"""Exact nearest-triangle search (system.md §2.5 step 1, kaolin's point_to_mesh_distance): a
brute-force reference and a clustered branch-and-bound search that returns the same answer.

Clustered search. Faces are grouped once by median bisection of their centroids into leaves of
LEAF_SIZE faces and top clusters of FANOUTS leaves (cluster_faces; more levels are possible but
were not faster on the CPU). For each posed mesh every cluster gets an oriented bounding box
(principal axes of its vertices); the distance to the box is a lower bound on the distance to each
face inside. Per point: bound all top boxes (one matrix product); search exactly the leaf reached
by following the closest boxes down, which gives an upper bound U; bound the children of every
node whose box is closer than U; search the closest of the resulting leaves, which tightens U;
search every remaining leaf whose box is still closer than U. A skipped leaf's faces
are all at least U away, so the result is the brute-force minimum (up to float rounding: bounds
are compared with a margin of 16 eps times the coordinate scale). With max_distance, U starts at
max_distance and points with nothing closer are reported as (-1, inf) without a full search.
The point-triangle distance itself is in triangle_distance.py. The compiled CPU kernel
(nearest_triangle_cpp.py, method 'cpp') is an accelerator with the same contract.
"""

import math
from typing import NamedTuple

import torch

from training.deformation import nearest_triangle_cpp
from training.deformation.triangle_distance import dot3, face_rows, point_triangle_sq_distance, sq_distance_from_rows

__all__ = ['point_triangle_sq_distance', 'brute_force_nearest_triangles', 'cluster_faces', 'cluster_boxes',
           'build_clustered_meshes', 'clustered_nearest_triangles', 'nearest_triangles', 'resolve_method',
           'default_chunk']

LEAF_SIZE = 8      # faces per leaf, searched exactly when its box is closer than the best distance
FANOUTS = (8,)     # children per node, top level first; every point bounds every top-level box
SEARCH_METHODS = ('auto', 'cpp', 'clustered', 'brute')
CPU_CHUNK = 2048           # points per clustered-search block on the CPU (fits the caches)
ACCELERATOR_CHUNK = 65536  # points per block elsewhere
BRUTE_FORCE_PAIRS = 2 ** 19  # point-face pairs per brute-force block


def _check_inputs(points, vertices, faces):
    """Raise ValueError naming the argument unless points [P,3] / [B,P,3] match vertices and faces."""
    if points.ndim not in (2, 3) or points.shape[-1] != 3:
        raise ValueError(f'points must be [P, 3] or [B, P, 3], got {list(points.shape)}')
    if vertices.ndim != points.ndim or vertices.shape[-1] != 3:
        raise ValueError(f'vertices must be [{"B, " * (points.ndim == 3)}V, 3] like points, '
                         f'got {list(vertices.shape)}')
    if points.ndim == 3 and vertices.shape[0] != points.shape[0]:
        raise ValueError(f'vertices batch {vertices.shape[0]} != points batch {points.shape[0]}')
    if faces.ndim != 2 or faces.shape[-1] != 3 or faces.dtype not in (torch.int32, torch.int64):
        raise ValueError(f'faces must be an integer [F, 3] tensor, got {faces.dtype} {list(faces.shape)}')
    if faces.shape[0] == 0:
        raise ValueError('faces must contain at least one triangle')
    if points.device != vertices.device or faces.device != points.device:
        raise ValueError('points, vertices and faces must be on the same device')


def default_chunk(device) -> int:
    """Points per block of the clustered search: cache-sized on the CPU, large elsewhere (fewer launches)."""
    return CPU_CHUNK if torch.device(device).type == 'cpu' else ACCELERATOR_CHUNK


@torch.no_grad()
def brute_force_nearest_triangles(points, vertices, faces):
    """Reference search over all faces: points [P,3], vertices [V,3] -> (face_index [P], sq_distance [P])."""
    _check_inputs(points, vertices, faces)
    if points.ndim != 2:
        raise ValueError(f'points must be [P, 3] for the brute-force reference, got {list(points.shape)}')
    tri = vertices[faces.long()]
    rows = face_rows(tri[:, 0], tri[:, 1], tri[:, 2])[:, None, :]  # [20, 1, F]
    index, sq = [], []
    for x in points.split(max(1, BRUTE_FORCE_PAIRS // faces.shape[0])):
        d = sq_distance_from_rows(x[:, :, None].unbind(1), rows)  # [n, F]
        best, arg = d.min(dim=1)
        index.append(arg)
        sq.append(best)
    return torch.cat(index), torch.cat(sq)


def cluster_faces(vertices, faces, leaf_size: int = LEAF_SIZE, fanouts=FANOUTS):
    """Face hierarchy by median bisection of centroids -> order [C, *fanouts, leaf_size] face ids.

    vertices [V,3] (any pose: only compactness depends on it), faces [F,3]. Consecutive blocks of
    leaf_size faces are leaves; going up, each node groups fanouts[k] consecutive nodes of the
    level below (powers of 2). The face list is padded by repeating faces (duplicated work only).
    """
    num_faces = faces.shape[0]
    levels = max(int(math.log2(math.prod(fanouts))), math.floor(math.log2(max(1.0, num_faces / leaf_size))) - 1)
    groups = math.ceil(num_faces / (leaf_size * 2 ** levels))
    order = torch.arange(groups * leaf_size * 2 ** levels, device=faces.device) % num_faces
    centroid = vertices[faces.long()].mean(dim=1)
    axis = (centroid.amax(0) - centroid.amin(0)).argmax()
    order = order[centroid[order, axis].argsort(stable=True)]
    for level in range(levels):
        cent = centroid[order].view(groups * 2 ** level, -1, 3)
        axis = (cent.amax(1) - cent.amin(1)).argmax(dim=1)  # [G] longest extent per group
        key = cent.gather(2, axis[:, None, None].expand(-1, cent.shape[1], 1))[..., 0]
        order = order.view(cent.shape[:2]).gather(1, key.argsort(dim=1, stable=True)).view(-1)
    return order.view(-1, *fanouts, leaf_size)


def cluster_boxes(tri):
    """Oriented bounding boxes of face clusters: tri [B,C,M,3(vertex),3] -> [B,C,15].

    Per box: centre (3), the three axes (principal axes of the cluster's vertices; 9, axis by
    axis), half-extents along them (3). Every face of the cluster lies inside its box.
    """
    pts = tri.flatten(2, 3)
    mean = pts.mean(dim=2)
    centred = pts - mean[:, :, None]
    axes = torch.linalg.eigh(centred.transpose(-1, -2) @ centred).eigenvectors.transpose(-1, -2)
    local = centred @ axes.transpose(-1, -2)  # [B, C, 3M, 3(axis)]
    low, high = local.amin(dim=2), local.amax(dim=2)
    centre = mean + (((low + high) / 2)[..., None] * axes).sum(-2)
    return torch.cat([centre, axes.flatten(2), (high - low) / 2], dim=-1)


class ClusteredMesh(NamedTuple):
    """Search structure of one posed mesh: boxes of every level of the hierarchy and the leaf faces."""
    top_boxes: torch.Tensor  # [15, C] boxes of the top-level nodes (layout of cluster_boxes, transposed)
    child_boxes: list        # per lower level: [parents, 15, fanout] boxes of each parent's children
    leaf_rows: torch.Tensor  # [leaves, 20, M] face_rows of each leaf's faces
    leaf_faces: torch.Tensor  # [leaves * M] face ids, leaf by leaf


def build_clustered_meshes(vertices, faces, order):
    """Search structures for posed meshes vertices [B,V,3] sharing faces [F,3] and order [C,*fanouts,M]."""
    batch, fanouts, leaf_size = vertices.shape[0], order.shape[1:-1], order.shape[-1]
    tri = vertices[:, faces.long()[order.view(-1)]]  # [B, faces in order, 3(vertex), 3]
    nodes = [order.shape[0] * math.prod(fanouts[:k]) for k in range(len(fanouts) + 1)]
    boxes = [cluster_boxes(tri.view(batch, n, -1, 3, 3)) for n in nodes]  # [B, nodes, 15] per level
    top = boxes[0].transpose(1, 2)
    children = [b.view(batch, -1, fanout, 15).transpose(2, 3) for b, fanout in zip(boxes[1:], fanouts)]
    tri = tri.view(batch, nodes[-1], leaf_size, 3, 3)
    rows = face_rows(tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]).permute(1, 2, 0, 3)
    return [ClusteredMesh(top[b].contiguous(), [c[b].contiguous() for c in children], rows[b].contiguous(),
                          order.view(-1)) for b in range(batch)]


def _box_sq_distance(local, half_extent):
    """Squared distance to a box from local coordinates: three (coordinate, half-extent) pairs."""
    out = None
    for coord, half in zip(local, half_extent):
        excess = coord.abs().sub_(half).clamp_min_(0)
        out = excess.mul_(excess) if out is None else out.addcmul_(excess, excess)
    return out


def _top_sq_lower_bounds(x, boxes):
    """Squared distance from points x [N,3] to every box, boxes [15,C] -> [N,C] (one matrix product)."""
    centre, axes = boxes[0:3], boxes[3:12].view(3, 3, -1)  # axes [axis, xyz, C]
    offset = -(axes * centre).sum(1)  # [3, C]
    local = torch.addmm(offset.reshape(1, -1), x, axes.transpose(0, 1).reshape(3, -1))
    return _box_sq_distance(local.view(-1, 3, boxes.shape[1]).unbind(1), boxes[12:15])


def _child_sq_lower_bounds(x, boxes):
    """Squared distance from points x [K,3] to the child boxes of their nodes, boxes [K,15,S] -> [K,S]."""
    rows = boxes.unbind(1)
    p = [x[:, i, None] - rows[i] for i in range(3)]
    local = [dot3(p, rows[3 + 3 * k: 6 + 3 * k]) for k in range(3)]
    return _box_sq_distance(local, rows[12:15])


def _gather(table, index):
    """table[index] along dim 0 through a 2-D view (several times faster than a 3-D index_select on the CPU)."""
    return table.flatten(1).index_select(0, index).view(-1, *table.shape[1:])


def _search_leaves(x, leaf, mesh):
    """Exact nearest face of points x [K,3] within their leaves [K] -> (sq [K], face [K])."""
    rows = _gather(mesh.leaf_rows, leaf)
    d = sq_distance_from_rows(x[:, :, None].unbind(1), rows.unbind(1))
    sq, arg = d.min(dim=1)
    return sq, mesh.leaf_faces[leaf * d.shape[1] + arg]


def _merge(best, face, point, sq, candidate):
    """Per point, the smaller of best [N] and the candidates (point [K], sq [K], face candidate [K]).

    Ties go to the smallest face id among the winners, so the result is deterministic.
    """
    merged = best.scatter_reduce(0, point, sq, 'amin')
    win = sq == merged[point]
    face = face.masked_fill(merged < best, torch.iinfo(face.dtype).max)
    return merged, face.scatter_reduce(0, point[win], candidate[win], 'amin')


def _greedy_leaf(x, lower, mesh):
    """For points x [N,3], the leaf reached by following the closest box down from the closest top node."""
    node = lower.argmin(dim=1)
    for boxes in mesh.child_boxes:
        node = node * boxes.shape[2] + _child_sq_lower_bounds(x, _gather(boxes, node)).argmin(dim=1)
    return node


def _candidate_leaves(x, lower, limit, mesh):
    """(point, leaf, bound) of every leaf whose box, and every ancestor's box, is closer than limit [N]."""
    point, node = (lower <= limit[:, None]).nonzero().unbind(1)
    bound = None
    for boxes in mesh.child_boxes:
        bound = _child_sq_lower_bounds(x[point], _gather(boxes, node))
        pair, slot = (bound <= limit[point, None]).nonzero().unbind(1)
        point, node, bound = point[pair], node[pair] * boxes.shape[2] + slot, bound[pair, slot]
    return point, node, bound


def _prune_limit(sq, cap, tol):
    """Squared distance above which a box cannot hold a face nearer than min(sqrt(sq), cap): (.. + tol)^2."""
    return (sq.clamp(max=cap * cap).sqrt() + tol).square()


def _search_active(x, lower, mesh, cap, tol):
    """Nearest faces of points x [N,3] with lower bounds [N,C] to the top boxes -> (sq [N], face [N]).

    Upper bound from the greedily reached leaf, tightened by each point's closest remaining leaf;
    then every leaf whose box is still closer than the bound is searched exactly.
    """
    first = _greedy_leaf(x, lower, mesh)
    best, face = _search_leaves(x, first, mesh)
    point, leaf, bound = _candidate_leaves(x, lower, _prune_limit(best, cap, tol), mesh)
    fresh = leaf != first[point]
    point, leaf, bound = point[fresh], leaf[fresh], bound[fresh]
    lowest = torch.full_like(best, math.inf).scatter_reduce(0, point, bound, 'amin')
    now = bound == lowest[point]
    best, face = _merge(best, face, point[now], *_search_leaves(x[point[now]], leaf[now], mesh))
    later = ~now & (bound <= _prune_limit(best, cap, tol)[point])
    return _merge(best, face, point[later], *_search_leaves(x[point[later]], leaf[later], mesh))


def _clustered_chunk(x, mesh, cap, tol):
    """Nearest faces for points x [N,3] of one mesh: exact where the distance is below cap, else (-1, inf)."""
    face = torch.full(x.shape[:1], -1, dtype=torch.long, device=x.device)
    sq = torch.full(x.shape[:1], math.inf, dtype=x.dtype, device=x.device)
    lower = _top_sq_lower_bounds(x, mesh.top_boxes)  # [N, C]
    active = (lower.amin(dim=1) <= (cap + tol) ** 2).nonzero()[:, 0]
    if active.numel():
        best, best_face = _search_active(x[active], lower[active], mesh, cap, tol)
        keep = best < cap * cap
        sq[active] = best.masked_fill(~keep, math.inf)
        face[active] = best_face.masked_fill(~keep, -1)
    return face, sq


@torch.no_grad()
def clustered_nearest_triangles(points, vertices, faces, order, max_distance=math.inf, chunk=None):
    """Batched clustered search: points [B,P,3], vertices [B,V,3], faces [F,3], order = cluster_faces(...).

    Returns face_index [B,P] (long, -1 beyond max_distance) and sq_distance [B,P] (inf beyond).
    """
    chunk = chunk or default_chunk(points.device)
    meshes = build_clustered_meshes(vertices, faces, order)
    scale = max(points.abs().max().item(), vertices.abs().max().item(), 1e-30)
    tol = 16 * torch.finfo(points.dtype).eps * scale  # rounding margin of bounds and distances
    face = torch.empty(points.shape[:2], dtype=torch.long, device=points.device)
    sq = torch.empty(points.shape[:2], dtype=points.dtype, device=points.device)
    for b, mesh in enumerate(meshes):
        for start in range(0, points.shape[1], chunk):
            sl = slice(start, start + chunk)
            face[b, sl], sq[b, sl] = _clustered_chunk(points[b, sl], mesh, max_distance, tol)
    return face, sq


def resolve_method(method: str, points) -> str:
    """The concrete search for `method` on `points`: 'auto' is 'cpp' for float32 CPU points when the
    plugin builds, else 'clustered'."""
    if method not in SEARCH_METHODS:
        raise ValueError(f'method must be one of {SEARCH_METHODS}, got {method!r}')
    if method == 'cpp' and points.device.type != 'cpu':
        raise ValueError(f"method='cpp' needs CPU tensors, got points on {points.device}")
    if method != 'auto':
        return method
    cpu_float = points.device.type == 'cpu' and points.dtype == torch.float32
    return 'cpp' if cpu_float and nearest_triangle_cpp.available() else 'clustered'


@torch.no_grad()
def nearest_triangles(points, vertices, faces, max_distance=math.inf, method='auto', chunk=None, order=None):
    """Nearest triangle and its squared distance: points [P,3] or [B,P,3], vertices [V,3] or [B,V,3].

    Returns (face_index, sq_distance), shaped like points without the last axis; face_index indexes
    `faces`. Points with no triangle closer than max_distance get face -1 and distance inf. Ties
    (a point nearest to a shared edge or vertex) go to one of the tied faces, deterministically.
    method: 'auto' (the default: 'cpp' for float32 CPU points when the plugin builds, else
    'clustered'), 'cpp' (compiled CPU kernel, exact, computes in float32; fastest when consecutive
    points are near each other, e.g. ordered ray by ray), 'clustered' (branch and bound in
    PyTorch, exact; the reference on every device) or 'brute' (all faces; O(P F) work).
    chunk: points per block of the clustered search (default per device, see default_chunk).
    order: cluster_faces(...) of these faces, to reuse (clustered only).
    """
    _check_inputs(points, vertices, faces)
    method = resolve_method(method, points)
    batched = points.ndim == 3
    if not batched:
        points, vertices = points[None], vertices[None]
    if method == 'brute':
        results = [brute_force_nearest_triangles(x, v, faces) for x, v in zip(points, vertices)]
        face, sq = (torch.stack(t) for t in zip(*results))
        outside = sq >= max_distance * max_distance
        face, sq = face.masked_fill(outside, -1), sq.masked_fill(outside, math.inf)
    elif method == 'cpp':
        face, sq = nearest_triangle_cpp.nearest_triangles(points, vertices, faces, max_distance)
    else:
        order = cluster_faces(vertices[0], faces) if order is None else order
        face, sq = clustered_nearest_triangles(points, vertices, faces, order, max_distance, chunk)
    return (face, sq) if batched else (face[0], sq[0])
