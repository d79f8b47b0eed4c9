"""Tests for training/deformation/point_to_mesh.py and triangle_distance.py: the point-triangle
distance against scipy's constrained minimiser, and the clustered search against brute force."""

import math

import numpy as np
import pytest
import scipy.optimize
import torch
import trimesh

from training.deformation import point_to_mesh as pm
from training.deformation.triangle_distance import point_triangle_sq_distance
from mesh_testing import query_points

TIE = 1e-6  # squared-distance gap below which two faces count as equally near (float32)


def _scipy_closest(p, a, b, c):
    """Closest point on triangle abc to p by SLSQP over the barycentric simplex -> (sq distance, (u, v, w))."""
    def objective(st):
        q = a + st[0] * (b - a) + st[1] * (c - a)
        return float(((q - p) ** 2).sum())
    best = None
    for start in ([1 / 3, 1 / 3], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0]):
        res = scipy.optimize.minimize(objective, start, method='SLSQP', bounds=[(0, 1), (0, 1)],
                                      constraints=[{'type': 'ineq', 'fun': lambda st: 1 - st[0] - st[1]}],
                                      options={'ftol': 1e-16, 'maxiter': 200})
        if best is None or res.fun < best.fun:
            best = res
    s, t = best.x
    return best.fun, (1 - s - t, s, t)


def _region(bary, eps=1e-6):
    """Voronoi region of the closest point from its barycentric coordinates: 'face', 'edge k' or 'vertex k'."""
    zero = [k for k, w in enumerate(bary) if w < eps]
    if not zero:
        return 'face'
    if len(zero) == 1:
        return f'edge {zero[0]}'
    return f'vertex {({0, 1, 2} - set(zero)).pop()}'


def _region_cases(rng, count):
    """Random triangles with query points aimed at each of the 7 regions (and off the plane)."""
    cases = []
    for i in range(count):
        tri = rng.normal(size=(3, 3))
        normal = np.cross(tri[1] - tri[0], tri[2] - tri[0])
        normal /= np.linalg.norm(normal)
        bary = rng.dirichlet(np.ones(3))
        kind = i % 7
        if kind < 3:  # beyond vertex `kind`, away from the opposite edge's midpoint
            other = tri[[j for j in range(3) if j != kind]].mean(0)
            foot = tri[kind] + (tri[kind] - other) * rng.uniform(0.1, 2)
        elif kind < 6:  # beyond the middle of the edge opposite vertex kind - 3
            j, k = [m for m in range(3) if m != kind - 3]
            mid = tri[j] + rng.uniform(0.2, 0.8) * (tri[k] - tri[j])
            foot = mid + (mid - tri[kind - 3]) * rng.uniform(0.1, 1)
        else:
            foot = bary @ tri
        cases.append((foot + normal * rng.uniform(-1, 1), tri))
    return cases


def test_distance_matches_scipy_minimiser_in_all_seven_regions():
    rng = np.random.default_rng(0)
    cases = _region_cases(rng, 280)
    points = torch.tensor(np.stack([p for p, _ in cases]))
    tris = torch.tensor(np.stack([t for _, t in cases]))
    ours = point_triangle_sq_distance(points, tris[:, 0], tris[:, 1], tris[:, 2]).numpy()
    regions = {}
    for k, (p, tri) in enumerate(cases):
        sq, bary = _scipy_closest(p, *tri)
        regions[_region(bary)] = regions.get(_region(bary), 0) + 1
        assert ours[k] == pytest.approx(sq, abs=1e-9, rel=1e-7), (k, _region(bary))
    assert len(regions) == 7 and min(regions.values()) >= 20, regions


def test_distance_broadcasts_and_handles_degenerate_triangles():
    rng = np.random.default_rng(1)
    p = torch.tensor(rng.normal(size=(50, 1, 3)))
    a, b = torch.tensor(rng.normal(size=(2, 1, 4, 3)))
    c = a + 0.5 * (b - a)  # collinear: the triangle is the segment ab
    for tri in ((a, b, c), (a, a, a), (a, b, b)):
        d = point_triangle_sq_distance(p, *tri)
        assert d.shape == (50, 4)
        seg_t = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
        ends = (tri[0], tri[1]) if not torch.equal(tri[0], tri[1]) else (tri[0], tri[2])
        dense = ((ends[0][..., None, :] + seg_t * (ends[1] - ends[0])[..., None, :] - p[..., None, :]) ** 2)
        np.testing.assert_allclose(d.numpy(), dense.sum(-1).amin(-1).numpy(), atol=1e-8)


def _meshes():
    """(name, vertices [V,3] float32, faces [F,3] long): closed, perturbed, open and soup meshes."""
    rng = np.random.default_rng(2)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    capsule = trimesh.creation.capsule(height=0.4, radius=0.1, count=[24, 24])
    bumpy = sphere.vertices * (1 + 0.15 * rng.standard_normal((len(sphere.vertices), 1)))
    soup = rng.uniform(-0.5, 0.5, size=(300, 3, 3))
    grid = trimesh.creation.box(extents=(0.6, 0.02, 0.6)).subdivide().subdivide()
    out = [('icosphere', sphere.vertices, sphere.faces), ('capsule', capsule.vertices, capsule.faces),
           ('bumpy sphere', bumpy, sphere.faces), ('flat box', grid.vertices, grid.faces),
           ('triangle soup', soup.reshape(-1, 3), np.arange(900).reshape(300, 3))]
    return [(name, torch.tensor(v, dtype=torch.float32), torch.tensor(f, dtype=torch.long)) for name, v, f in out]


def _assert_same_as_brute(points, vertices, faces, face, sq, max_distance=math.inf):
    """face/sq equal brute force: same distances, a truly nearest face, same face where unique."""
    ref_face, ref_sq = pm.brute_force_nearest_triangles(points, vertices, faces)
    inside = ref_sq < max_distance ** 2
    assert torch.equal(face[~inside], torch.full_like(face[~inside], -1))
    assert torch.isinf(sq[~inside]).all()
    np.testing.assert_allclose(sq[inside].numpy(), ref_sq[inside].numpy(), atol=TIE, rtol=0)
    tri = vertices[faces[face[inside]]]
    own = point_triangle_sq_distance(points[inside], tri[:, 0], tri[:, 1], tri[:, 2])
    np.testing.assert_allclose(own.numpy(), ref_sq[inside].numpy(), atol=TIE, rtol=0)
    all_sq = point_triangle_sq_distance(points[inside, None], *vertices[faces].unbind(1))
    second = all_sq.topk(2, dim=1, largest=False).values[:, 1] if len(faces) > 1 else all_sq[:, 0] + 1
    unique = second - ref_sq[inside] > TIE
    assert torch.equal(face[inside][unique], ref_face[inside][unique])
    return unique.sum().item()


@pytest.mark.parametrize('name, vertices, faces', _meshes(), ids=lambda v: v if isinstance(v, str) else '')
def test_clustered_search_equals_brute_force(name, vertices, faces):
    rng = np.random.default_rng(3)
    points = query_points(vertices, faces, rng, 200)
    face, sq = pm.nearest_triangles(points, vertices, faces, method='clustered')
    assert face.dtype == torch.long and face.shape == sq.shape == points.shape[:1]
    assert _assert_same_as_brute(points, vertices, faces, face, sq) > len(points) // 10  # not vacuous


@pytest.mark.parametrize('max_distance', [0.05, 0.25])
def test_max_distance_marks_far_points_and_keeps_near_ones_exact(max_distance):
    _, vertices, faces = _meshes()[2]
    points = query_points(vertices, faces, np.random.default_rng(4), 200)
    for method in ('clustered', 'brute'):
        face, sq = pm.nearest_triangles(points, vertices, faces, max_distance=max_distance, method=method)
        _assert_same_as_brute(points, vertices, faces, face, sq, max_distance)


def test_batched_search_matches_per_mesh_calls_and_chunking():
    _, vertices, faces = _meshes()[1]
    rng = np.random.default_rng(5)
    posed = torch.stack([vertices, vertices * 1.3 + 0.05, vertices.flip(-1)])
    points = torch.stack([query_points(v, faces, rng, 200) for v in posed])
    face, sq = pm.nearest_triangles(points, posed, faces)
    assert face.shape == sq.shape == points.shape[:2]
    for b in range(3):
        one_face, one_sq = pm.nearest_triangles(points[b], posed[b], faces, chunk=37)
        _assert_same_as_brute(points[b], posed[b], faces, one_face, one_sq)
        np.testing.assert_allclose(one_sq.numpy(), sq[b].numpy(), atol=TIE, rtol=0)


@pytest.mark.parametrize('leaf_size, fanouts', [(8, (8,)), (2, (4, 2)), (4, (2, 2, 2))])
def test_hierarchies_of_any_depth_give_the_same_answer(leaf_size, fanouts):
    _, vertices, faces = _meshes()[3]
    points = query_points(vertices, faces, np.random.default_rng(7), 200)
    order = pm.cluster_faces(vertices, faces, leaf_size, fanouts)
    assert order.shape[1:] == (*fanouts, leaf_size)
    face, sq = pm.clustered_nearest_triangles(points[None], vertices[None], faces, order, max_distance=0.3)
    _assert_same_as_brute(points, vertices, faces, face[0], sq[0], max_distance=0.3)


def test_tiny_meshes_and_float64():
    rng = np.random.default_rng(6)
    for num_faces in (1, 2, 7, 9):
        vertices = torch.tensor(rng.normal(size=(3 * num_faces, 3)))
        faces = torch.arange(3 * num_faces).view(-1, 3)
        points = torch.tensor(rng.normal(size=(200, 3)))
        face, sq = pm.nearest_triangles(points, vertices, faces)
        assert sq.dtype == torch.float64
        _assert_same_as_brute(points, vertices, faces, face, sq)


def test_cluster_boxes_contain_their_faces_and_order_covers_all_faces():
    _, vertices, faces = _meshes()[0]
    order = pm.cluster_faces(vertices, faces)
    assert order.shape[1:] == (*pm.FANOUTS, pm.LEAF_SIZE)
    assert torch.equal(order.unique(), torch.arange(len(faces)))
    tri = vertices[faces[order.view(-1)]].view(1, -1, pm.LEAF_SIZE, 3, 3)
    boxes = pm.cluster_boxes(tri)[0]  # [L, 15]
    local = torch.einsum('lmvj,laj->lmva', tri[0] - boxes[:, None, None, 0:3], boxes[:, 3:12].view(-1, 3, 3))
    assert (local.abs() <= boxes[:, None, None, 12:15] + 1e-6).all()


@pytest.mark.parametrize('kwargs, argument', [
    (dict(points=torch.zeros(5, 2)), 'points'),
    (dict(vertices=torch.zeros(4, 3, 1)), 'vertices'),
    (dict(faces=torch.zeros(2, 3)), 'faces'),
    (dict(faces=torch.zeros(0, 3, dtype=torch.long)), 'faces'),
    (dict(method='kdtree'), 'method'),
])
def test_bad_inputs_raise_value_error_naming_the_argument(kwargs, argument):
    args = dict(points=torch.zeros(5, 3), vertices=torch.rand(4, 3), faces=torch.tensor([[0, 1, 2], [1, 2, 3]]))
    args.update(kwargs)
    with pytest.raises(ValueError, match=argument):
        pm.nearest_triangles(**args)


def test_default_chunk_is_per_device():
    assert pm.default_chunk('cpu') == pm.CPU_CHUNK
    assert pm.default_chunk(torch.device('cuda', 0)) == pm.ACCELERATOR_CHUNK > pm.CPU_CHUNK
