"""Watertight triangle meshes with an exact vertex count from a smooth signed distance function.

Marching tetrahedra (Kuhn split of each grid cube into six tetrahedra) extracts the zero level
set of the piecewise-linear interpolant of the grid samples: a closed, consistently wound
2-manifold whatever the sign pattern. Tangential relaxation with projection back onto the
surface evens out the sliver triangles, and splitting the longest edges (the midpoint projected
onto the surface) adds one vertex and two faces per split until the count is exact.

Convention: the SDF is negative inside; faces are wound counter-clockwise seen from outside
(outward normals).
"""
from typing import Callable, Tuple

import numpy as np
import scipy.sparse

SDF = Callable[[np.ndarray], np.ndarray]   # points [N, 3] -> signed distance [N]

# Kuhn triangulation of the unit cube: corner k sits at offset (k & 1, k >> 1 & 1, k >> 2 & 1);
# each tetrahedron walks 0 -> 7 along one permutation of the axes.
_KUHN_TETS = np.array([[0, 1, 3, 7], [0, 1, 5, 7], [0, 2, 3, 7],
                       [0, 2, 6, 7], [0, 4, 5, 7], [0, 4, 6, 7]])
# Triangles as corner pairs (positions after sorting a tetrahedron's corners inside-first),
# by the number of inside corners.
_CASE_EDGES = {
    1: [[(0, 1), (0, 2), (0, 3)]],
    2: [[(0, 2), (0, 3), (1, 3)], [(0, 2), (1, 3), (1, 2)]],
    3: [[(3, 0), (3, 1), (3, 2)]],
}
_GRADIENT_STEP = 1e-6          # metres, forward differences of the SDF
_PROJECTION_STEPS = 3          # Newton steps onto the zero level set
_RELAX_RATE = 0.5              # fraction of the way to the neighbour mean per iteration


def _value_and_gradient(sdf: SDF, points: np.ndarray):
    """`sdf` [N] and its forward-difference gradient [N, 3] at `points` [N, 3]."""
    offsets = np.concatenate([np.zeros((1, 3)), np.eye(3) * _GRADIENT_STEP])
    values = sdf((points[None] + offsets[:, None]).reshape(-1, 3)).reshape(4, -1)
    return values[0], (values[1:] - values[0]).T / _GRADIENT_STEP


def sdf_gradient(sdf: SDF, points: np.ndarray) -> np.ndarray:
    """Forward-difference gradient [N, 3] of `sdf` at `points` [N, 3]."""
    return _value_and_gradient(sdf, points)[1]


def project_to_surface(sdf: SDF, points: np.ndarray, steps: int = _PROJECTION_STEPS) -> np.ndarray:
    """Move `points` [N, 3] onto the zero level set by `steps` Newton steps along the gradient."""
    for _ in range(steps):
        value, gradient = _value_and_gradient(sdf, points)
        points = points - (value / np.maximum((gradient ** 2).sum(1), 1e-12))[:, None] * gradient
    return points


def _straddling_tetrahedra(values: np.ndarray, shape) -> np.ndarray:
    """Node ids [T, 4] of the Kuhn tetrahedra of a grid of `shape` crossed by the level set,
    corners sorted inside (value < 0) first."""
    strides = np.array([shape[1] * shape[2], shape[2], 1])
    corner_offsets = np.array([[k & 1, k >> 1 & 1, k >> 2 & 1] for k in range(8)]) @ strides
    cells = np.stack(np.meshgrid(*[np.arange(n - 1) for n in shape], indexing='ij'), axis=-1).reshape(-1, 3)
    corners = (cells @ strides)[:, None] + corner_offsets
    signs = values[corners] < 0
    corners = corners[signs.any(1) & ~signs.all(1)]
    tets = corners[:, _KUHN_TETS].reshape(-1, 4)
    order = np.argsort(values[tets] >= 0, axis=1, kind='stable')
    return np.take_along_axis(tets, order, axis=1)


def marching_tetrahedra(sdf: SDF, lower, upper, spacing: float) -> Tuple[np.ndarray, np.ndarray]:
    """Zero level set of `sdf` sampled on a grid over the box [lower, upper] (metres).

    Returns vertices [V, 3] float64 and outward-wound faces [F, 3] int64. The box must enclose
    the surface (the grid is padded by one cell).
    """
    lower = np.asarray(lower, float) - spacing
    shape = np.ceil((np.asarray(upper, float) + spacing - lower) / spacing).astype(int) + 1
    axes = [lower[a] + spacing * np.arange(shape[a]) for a in range(3)]
    nodes = np.stack(np.meshgrid(*axes, indexing='ij'), axis=-1).reshape(-1, 3)
    values = sdf(nodes)
    values[values == 0] = spacing * 1e-9          # keep every sample off the level set
    tets = _straddling_tetrahedra(values, shape)
    num_inside = (values[tets] < 0).sum(1)
    edge_pairs, outward = [], []
    for count, triangles in _CASE_EDGES.items():
        chosen = tets[num_inside == count]
        direction = (nodes[chosen[:, count:]].mean(1) - nodes[chosen[:, :count]].mean(1))
        for triangle in triangles:
            edge_pairs.append(np.stack([chosen[:, list(pair)] for pair in triangle], axis=1))
            outward.append(direction)
    edge_pairs = np.sort(np.concatenate(edge_pairs), axis=2)          # [F, 3, 2] node ids
    outward = np.concatenate(outward)
    keys = edge_pairs[..., 0] * len(nodes) + edge_pairs[..., 1]
    unique_keys, faces = np.unique(keys, return_inverse=True)
    faces = faces.reshape(-1, 3)
    start, end = unique_keys // len(nodes), unique_keys % len(nodes)
    t = values[start] / (values[start] - values[end])
    vertices = nodes[start] + t[:, None] * (nodes[end] - nodes[start])
    return vertices, _orient(vertices, faces, outward)


def _orient(vertices: np.ndarray, faces: np.ndarray, outward: np.ndarray) -> np.ndarray:
    """Flip faces [F, 3] whose normal disagrees with the `outward` directions [F, 3]."""
    a, b, c = (vertices[faces[:, k]] for k in range(3))
    flip = (np.cross(b - a, c - a) * outward).sum(1) < 0
    faces = faces.copy()
    faces[flip] = faces[flip][:, ::-1]
    return faces


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """Undirected edges [E, 2] (sorted vertex pairs, sorted rows) of `faces` [F, 3]."""
    edges = np.sort(faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2), axis=1)
    return np.unique(edges, axis=0)


def relax(sdf: SDF, vertices: np.ndarray, faces: np.ndarray, iterations: int) -> np.ndarray:
    """Uniform-Laplacian smoothing of `vertices` [V, 3], each step projected back onto the surface."""
    edges = unique_edges(faces)
    n = len(vertices)
    adjacency = scipy.sparse.coo_matrix((np.ones(2 * len(edges)), (edges.ravel(), edges[:, ::-1].ravel())),
                                        shape=(n, n)).tocsr()
    mean = scipy.sparse.diags(1.0 / np.asarray(adjacency.sum(1)).ravel()) @ adjacency
    for _ in range(iterations):
        vertices = project_to_surface(sdf, vertices + _RELAX_RATE * (mean @ vertices - vertices), steps=1)
    return project_to_surface(sdf, vertices)


def _independent_longest_edges(vertices, faces, count):
    """Up to `count` longest edges, no two touching the same face: directed half-edge face ids.

    Returns (face_ab, face_ba) [K] where edge a->b lies in face_ab and b->a in face_ba, and the
    local corner index [K] of a in each face.
    """
    half = faces[:, [0, 1, 1, 2, 2, 0]].reshape(-1, 2)                  # row 3f+k: corner k -> k+1
    n = len(vertices)
    key = half[:, 0] * n + half[:, 1]
    twin_key = half[:, 1] * n + half[:, 0]
    sorter = np.argsort(key)
    twin = sorter[np.searchsorted(key, twin_key, sorter=sorter)]
    primary = np.flatnonzero(half[:, 0] < half[:, 1])
    length = np.linalg.norm(vertices[half[primary, 0]] - vertices[half[primary, 1]], axis=1)
    used = np.zeros(len(faces), bool)
    chosen = []
    for h in primary[np.argsort(-length, kind='stable')]:
        f, g = h // 3, twin[h] // 3
        if not (used[f] or used[g]):
            used[f] = used[g] = True
            chosen.append(h)
            if len(chosen) == count:
                break
    chosen = np.array(chosen, dtype=np.int64)
    return chosen // 3, twin[chosen] // 3, chosen % 3, twin[chosen] % 3


def split_to_count(sdf: SDF, vertices: np.ndarray, faces: np.ndarray, num_vertices: int):
    """Split longest edges (midpoints projected onto the surface) until exactly `num_vertices`.

    Each split of an edge a-b shared by faces (a, b, c) and (b, a, d) adds a vertex m and turns
    them into (a, m, c), (m, b, c), (b, m, d), (m, a, d): +1 vertex, +2 faces, winding kept.
    """
    if num_vertices < len(vertices):
        raise ValueError(f'mesh already has {len(vertices)} vertices, more than the {num_vertices} asked for')
    while len(vertices) < num_vertices:
        face_ab, face_ba, corner_ab, corner_ba = _independent_longest_edges(
            vertices, faces, num_vertices - len(vertices))
        a = faces[face_ab, corner_ab]
        b = faces[face_ab, (corner_ab + 1) % 3]
        c = faces[face_ab, (corner_ab + 2) % 3]
        d = faces[face_ba, (corner_ba + 2) % 3]
        m = len(vertices) + np.arange(len(a))
        vertices = np.concatenate([vertices, project_to_surface(sdf, 0.5 * (vertices[a] + vertices[b]))])
        faces = faces.copy()
        faces[face_ab] = np.stack([a, m, c], 1)
        faces[face_ba] = np.stack([b, m, d], 1)
        faces = np.concatenate([faces, np.stack([m, b, c], 1), np.stack([m, a, d], 1)])
    return vertices, faces
