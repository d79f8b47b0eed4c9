"""The compiled CPU nearest-triangle kernel (training/deformation/nearest_triangle_cpp.py) against the
float64 brute-force reference and the clustered search: exact distances, the same face wherever the
nearest face is unique, -1 beyond max_distance, and results independent of point order and threads."""

import math

import numpy as np
import pytest
import torch
import trimesh

from torch_utils import custom_ops
from training.deformation import nearest_triangle_cpp
from training.deformation import point_to_mesh as pm
from training.deformation.triangle_distance import point_triangle_sq_distance
from mesh_testing import query_points

needs_plugin = pytest.mark.skipif(not nearest_triangle_cpp.available(),
                                  reason='the nearest_triangle CPU plugin could not be built (see stderr)')

TIE = 1e-6  # squared-distance gap below which two faces count as equally near (float32)
RTOL = 1e-5  # float32 cancellation near long edges (measured up to 1e-5 against float64)


def _meshes():
    """(name, vertices [V,3] float32, faces [F,3] long): closed, bumpy, flat, soup and degenerate meshes."""
    rng = np.random.default_rng(12)
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=0.3)
    bumpy = sphere.vertices * (1 + 0.15 * rng.standard_normal((len(sphere.vertices), 1)))
    grid = trimesh.creation.box(extents=(0.6, 0.02, 0.6)).subdivide().subdivide()
    soup = rng.uniform(-0.5, 0.5, size=(300, 3, 3))
    degenerate = soup.copy()
    degenerate[0::3, 1] = degenerate[0::3, 0]  # a repeated vertex
    degenerate[1::3, 2] = degenerate[1::3, 0] + 0.5 * (degenerate[1::3, 1] - degenerate[1::3, 0])  # collinear
    degenerate[2::9] = degenerate[2::9, :1]  # all three vertices equal
    out = [('icosphere', sphere.vertices, sphere.faces), ('bumpy sphere', bumpy, sphere.faces),
           ('flat box', grid.vertices, grid.faces),
           ('triangle soup', soup.reshape(-1, 3), np.arange(900).reshape(-1, 3)),
           ('degenerate soup', degenerate.reshape(-1, 3), np.arange(900).reshape(-1, 3))]
    return [(name, torch.tensor(v, dtype=torch.float32), torch.tensor(f, dtype=torch.long)) for name, v, f in out]


def _assert_exact(points, vertices, faces, face, sq, max_distance=math.inf):
    """face/sq equal the float64 brute force: same distances, -1 beyond max_distance, same face where unique."""
    all_sq = point_triangle_sq_distance(points.double()[:, None], *vertices.double()[faces].unbind(1))  # [P, F]
    ref_sq, ref_face = all_sq.min(dim=1)
    inside = ref_sq < max_distance ** 2
    assert torch.equal(face[~inside], torch.full_like(face[~inside], -1)) and torch.isinf(sq[~inside]).all()
    scale = max(points.abs().max().item(), vertices.abs().max().item())
    atol = 16 * torch.finfo(torch.float32).eps * scale ** 2  # float32 rounding of squared distances
    ref = ref_sq[inside].numpy()
    np.testing.assert_allclose(sq[inside].numpy(), ref, rtol=RTOL, atol=atol)
    own = all_sq[inside].gather(1, face[inside, None])[:, 0]
    np.testing.assert_allclose(own.numpy(), ref, rtol=RTOL, atol=atol)  # the face is (one of) the nearest
    second = all_sq.topk(2, dim=1, largest=False).values[:, 1] if len(faces) > 1 else all_sq[:, 0] + 1
    unique = inside & (second - ref_sq > TIE)
    assert torch.equal(face[unique], ref_face[unique])
    return unique.sum().item()


@needs_plugin
@pytest.mark.parametrize('name, vertices, faces', _meshes(), ids=lambda v: v if isinstance(v, str) else '')
def test_equals_brute_force(name, vertices, faces):
    points = query_points(vertices, faces, np.random.default_rng(13), 300)
    face, sq = pm.nearest_triangles(points, vertices, faces, method='cpp')
    assert face.dtype == torch.long and sq.dtype == torch.float32 and face.shape == sq.shape == points.shape[:1]
    assert _assert_exact(points, vertices, faces, face, sq) > len(points) // 10  # not vacuous


@needs_plugin
@pytest.mark.parametrize('max_distance', [0.03, 0.25])
def test_points_beyond_max_distance_get_minus_one(max_distance):
    _, vertices, faces = _meshes()[1]
    points = query_points(vertices, faces, np.random.default_rng(14), 300)
    face, sq = pm.nearest_triangles(points, vertices, faces, max_distance=max_distance, method='cpp')
    assert (face == -1).any() and (face >= 0).any()
    _assert_exact(points, vertices, faces, face, sq, max_distance)


@needs_plugin
def test_ray_order_shuffling_and_threads_do_not_change_the_result():
    _, vertices, faces = _meshes()[1]
    origin = torch.tensor([0.9, 0.2, -0.7])
    target = torch.tensor(np.random.default_rng(15).uniform(-0.3, 0.3, (64, 3)), dtype=torch.float32)
    depth = torch.linspace(0.3, 1.8, 48)
    points = (origin + (target - origin)[:, None] * depth[:, None]).reshape(1, -1, 3)  # 64 rays x 48 samples
    face, sq = pm.nearest_triangles(points, vertices[None], faces, max_distance=0.25, method='cpp')
    perm = torch.randperm(points.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = pm.nearest_triangles(points[:, perm], vertices[None], faces, max_distance=0.25, method='cpp')
    assert torch.equal(shuffled[0], face[:, perm]) and torch.equal(shuffled[1], sq[:, perm])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1 if threads > 1 else 2)
        other = pm.nearest_triangles(points, vertices[None], faces, max_distance=0.25, method='cpp')
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(other[0], face) and torch.equal(other[1], sq)
    _assert_exact(points[0], vertices, faces, face[0], sq[0], 0.25)


@needs_plugin
def test_batch_of_differently_posed_meshes():
    _, vertices, faces = _meshes()[0]
    rng = np.random.default_rng(16)
    posed = torch.stack([vertices, vertices * 1.3 + 0.05, vertices.flip(-1) * torch.tensor([1.0, 0.5, 2.0])])
    points = torch.stack([query_points(v, faces, rng, 300) for v in posed])
    face, sq = pm.nearest_triangles(points, posed, faces, method='cpp')
    assert face.shape == sq.shape == points.shape[:2]
    for b in range(3):
        one = pm.nearest_triangles(points[b], posed[b], faces, method='cpp')
        assert torch.equal(one[0], face[b]) and torch.equal(one[1], sq[b])
        _assert_exact(points[b], posed[b], faces, face[b], sq[b])


@needs_plugin
def test_tiny_meshes():
    rng = np.random.default_rng(17)
    for num_faces in (1, 2, 7, 8, 9, 17):
        vertices = torch.tensor(rng.normal(size=(3 * num_faces, 3)), dtype=torch.float32)
        faces = torch.arange(3 * num_faces).view(-1, 3)
        points = torch.tensor(rng.normal(size=(200, 3)), dtype=torch.float32)
        face, sq = pm.nearest_triangles(points, vertices, faces, method='cpp')
        _assert_exact(points, vertices, faces, face, sq)


@needs_plugin
def test_matches_the_clustered_search_on_the_procedural_body():
    from training.deformation.body_model import BodyModel
    body = BodyModel.procedural()
    faces = body.faces[body.box_faces(0.5)]
    with torch.no_grad():
        posed = body.posed_vertices(torch.tensor([[0.3, 0.2, -0.1, 0.25, -0.4, 0.1]]))
    rng = np.random.default_rng(18)
    centre = posed[0, faces.flatten()].mean(0)
    points = (centre + torch.tensor(rng.uniform(-0.4, 0.4, (1, 800, 3)), dtype=torch.float32))
    face, sq = pm.nearest_triangles(points, posed, faces, max_distance=0.25, method='cpp')
    ref_face, ref_sq = pm.nearest_triangles(points, posed, faces, max_distance=0.25, method='clustered')
    assert torch.equal(face >= 0, ref_face >= 0) and (face >= 0).float().mean() > 0.5
    inside = face[0] >= 0
    np.testing.assert_allclose(sq[0, inside].numpy(), ref_sq[0, inside].numpy(), rtol=1e-5, atol=TIE)
    assert _assert_exact(points[0], posed[0], faces, face[0], sq[0], 0.25) > 50


@needs_plugin
def test_auto_picks_the_kernel_for_float32_cpu_points_only():
    points = torch.zeros(4, 3)
    assert pm.resolve_method('auto', points) == 'cpp'
    assert pm.resolve_method('auto', points.double()) == 'clustered'
    assert pm.resolve_method('clustered', points) == 'clustered'
    with pytest.raises(ValueError, match='method'):
        pm.resolve_method('kaolin', points)


def test_without_the_plugin_auto_falls_back_and_cpp_is_a_clear_error(monkeypatch):
    """A plugin that failed to build (cached None): 'auto' uses the clustered search, 'cpp' raises."""
    monkeypatch.setitem(custom_ops._plugins, 'nearest_triangle_plugin', None)
    _, vertices, faces = _meshes()[0]
    points = query_points(vertices, faces, np.random.default_rng(19), 300)
    assert pm.resolve_method('auto', points) == 'clustered'
    face, sq = pm.nearest_triangles(points, vertices, faces, max_distance=0.25)
    _assert_exact(points, vertices, faces, face, sq, 0.25)
    with pytest.raises(RuntimeError, match='could not be built'):
        pm.nearest_triangles(points, vertices, faces, method='cpp')
