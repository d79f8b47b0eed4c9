"""The compiled CPU nearest-triangle kernel (training/deformation/nearest_triangle_cpp.py, csrc/) against
the float64 brute-force reference and the clustered search: exact distances, the same face wherever the
nearest face is unique, -1 beyond max_distance (also just inside and outside that shell), results
independent of point order, threads and of the pose the tree topology was built from; and the portable
(non-AVX2) path of the headers, built without torch, against the same reference."""

import ctypes
import functools
import math
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import torch
import trimesh

from torch_utils import custom_ops
from training.deformation import nearest_triangle_cpp
from training.deformation import point_to_mesh as pm
from training.deformation.triangle_distance import point_triangle_sq_distance
from mesh_testing import query_points
from thread_testing import torch_threads

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
    with torch_threads(1 if torch.get_num_threads() > 1 else 2):
        other = pm.nearest_triangles(points, vertices[None], faces, max_distance=0.25, method='cpp')
    assert torch.equal(other[0], face) and torch.equal(other[1], sq)
    _assert_exact(points[0], vertices, faces, face[0], sq[0], 0.25)


@needs_plugin
def test_exact_ties_go_to_the_smallest_face_index():
    """Every face of a sphere twice, at shuffled indices: the two copies are at the same distance to the bit
    (most pairs share a leaf, as they share a centroid), and the search must return the smaller index of the
    nearest pair. Points whose nearest face of the sphere is not unique are left out."""
    _, vertices, faces = _meshes()[1]
    doubled = torch.cat([faces, faces])
    order = torch.randperm(len(doubled), generator=torch.Generator().manual_seed(18))
    position = torch.empty_like(order)
    position[order] = torch.arange(len(order))  # doubled face k sits at index position[k]
    points = query_points(vertices, faces, np.random.default_rng(19), 300)
    face, _ = pm.nearest_triangles(points, vertices, doubled[order], method='cpp')
    all_sq = point_triangle_sq_distance(points.double()[:, None], *vertices.double()[faces].unbind(1))
    two = all_sq.topk(2, dim=1, largest=False)
    unique = two.values[:, 1] - two.values[:, 0] > TIE
    nearest = two.indices[:, 0]
    expected = torch.minimum(position[nearest], position[nearest + len(faces)])
    assert unique.sum() > len(points) // 4  # not vacuous
    assert torch.equal(face[unique], expected[unique])


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


def _shell_points(vertices, faces, max_distance, rng, count):
    """Points [K,3] whose float64 distance to the mesh is within 5% of max_distance, on both sides
    (but not within 1e-4 relative: float32 rounding must not decide the side), and inside [K] bool."""
    tri = vertices.double()[faces]
    pick = torch.tensor(rng.integers(0, len(faces), count))
    bary = torch.tensor(rng.dirichlet([1.0, 1.0, 1.0], count))
    normal = torch.nn.functional.normalize(torch.linalg.cross(tri[pick, 1] - tri[pick, 0], tri[pick, 2] - tri[pick, 0]),
                                           dim=1)
    offset = max_distance * torch.tensor(rng.uniform(0.95, 1.1, (count, 1)) * rng.choice([-1, 1], (count, 1)))
    points = (bary[:, :, None] * tri[pick]).sum(1) + normal * offset  # at most |offset| from the mesh
    d = point_triangle_sq_distance(points[:, None], *tri.unbind(1)).amin(1).sqrt()
    keep = ((d / max_distance - 1).abs() < 0.05) & ((d / max_distance - 1).abs() > 1e-4)
    return points[keep].float(), d[keep] < max_distance


@needs_plugin
@pytest.mark.parametrize('max_distance', [0.05, 0.25])
def test_points_at_the_thickness_shell_are_classified_exactly(max_distance):
    """Points just inside max_distance are searched exactly, points just beyond it get -1 (no culling error).
    The meshes are scaled so that the shell stays thinner than the body (radius 0.3 -> 3 max_distance)."""
    for name, vertices, faces in _meshes()[:3]:
        vertices = vertices * max_distance * 10
        points, inside = _shell_points(vertices, faces, max_distance, np.random.default_rng(20), 1000)
        assert inside.sum() > 10 and (~inside).sum() > 10, name
        face, sq = pm.nearest_triangles(points, vertices, faces, max_distance=max_distance, method='cpp')
        assert torch.equal(face >= 0, inside), name
        _assert_exact(points, vertices, faces, face, sq, max_distance)


@needs_plugin
def test_tree_built_on_one_pose_is_exact_on_any_other():
    """The warp builds the tree topology on the canonical mesh and refits it to each posed mesh;
    the topology only changes the speed: even one built on scrambled vertices gives exact answers."""
    _, vertices, faces = _meshes()[1]
    rng = np.random.default_rng(21)
    rotation = torch.linalg.matrix_exp(torch.tensor([[0, -1.2, 0.4], [1.2, 0, -0.3], [-0.4, 0.3, 0]]))
    posed = torch.stack([vertices @ rotation.T + 0.2, vertices + 0.03 * torch.randn(vertices.shape)])
    points = torch.stack([query_points(v, faces, rng, 300) for v in posed])
    for tree_vertices in (vertices, vertices[torch.randperm(len(vertices))]):
        tree = nearest_triangle_cpp.build_tree(tree_vertices, faces)
        assert tree.num_faces == len(faces) and tree.num_leaves == math.ceil(len(faces) / 8)
        face, sq = nearest_triangle_cpp.search(nearest_triangle_cpp.refit(tree, posed, faces), points, 0.25)
        for b in range(2):
            _assert_exact(points[b], posed[b], faces, face[b], sq[b], 0.25)


@needs_plugin
def test_refit_and_search_reject_mismatched_inputs():
    _, vertices, faces = _meshes()[0]
    tree = nearest_triangle_cpp.build_tree(vertices, faces)
    with pytest.raises(RuntimeError, match='tree has'):
        nearest_triangle_cpp.refit(tree, vertices[None], faces[:-1])
    with pytest.raises(RuntimeError, match='out of range'):
        nearest_triangle_cpp.refit(tree, vertices[None, :10], faces)
    posed = nearest_triangle_cpp.refit(tree, vertices.expand(2, -1, -1), faces)
    with pytest.raises(RuntimeError, match='points'):
        nearest_triangle_cpp.search(posed, torch.zeros(3, 5, 3))


@functools.lru_cache(maxsize=None)
def _host_search(portable: bool):
    """The search headers compiled without torch (portable: the non-AVX2 path) as a Python function."""
    compiler = shutil.which('g++')
    if compiler is None:
        pytest.skip('g++ is not on PATH: cannot build the host harness of the search headers')
    build_dir = tempfile.mkdtemp(prefix='bvh_harness_')
    library = os.path.join(build_dir, 'bvh_host_harness.so')
    flags = ['-DNEAREST_TRIANGLE_PORTABLE'] if portable else []
    result = subprocess.run([compiler, '-std=c++17', '-O2', '-march=native', '-fopenmp-simd', '-Wall', '-Wextra',
                             '-Werror', '-shared', '-fPIC', *flags, '-I', nearest_triangle_cpp.SOURCE_DIR,
                             os.path.join(os.path.dirname(os.path.abspath(__file__)), 'bvh_host_harness.cpp'),
                             '-o', library], capture_output=True, text=True)
    assert result.returncode == 0, f'building the search harness failed:\n{result.stderr}'
    lib = ctypes.CDLL(library)
    shutil.rmtree(build_dir, ignore_errors=True)  # the loaded library stays mapped

    def search(tree_vertices, vertices, faces, points, cap, run):
        face = torch.empty(len(points), dtype=torch.int32)
        sq = torch.empty(len(points), dtype=torch.float32)
        args = [t.contiguous() for t in (tree_vertices.float(), vertices.float(), faces.long(), points.float())]
        lib.nearest_host(*(ctypes.c_void_p(t.data_ptr()) for t in args[:2]), ctypes.c_int64(len(vertices)),
                         ctypes.c_void_p(args[2].data_ptr()), ctypes.c_int(len(faces)),
                         ctypes.c_void_p(args[3].data_ptr()), ctypes.c_int64(len(points)), ctypes.c_float(cap),
                         ctypes.c_int64(run), ctypes.c_void_p(face.data_ptr()), ctypes.c_void_p(sq.data_ptr()))
        return face.long(), sq
    return search, bool(lib.nearest_host_vectorised())


@pytest.mark.parametrize('portable', [True, False], ids=['portable', 'native'])
def test_host_build_of_both_code_paths_equals_brute_force(portable):
    search, vectorised = _host_search(portable)
    assert not (portable and vectorised)
    rng = np.random.default_rng(22)
    for k, (name, vertices, faces) in enumerate(_meshes()):  # tree topology from another pose (reversed)
        points = query_points(vertices, faces, rng, 200)
        cap, run = ((math.inf, 1), (0.25, 64))[k % 2]
        face, sq = search(vertices.flip(0), vertices, faces, points, cap, run)
        _assert_exact(points, vertices, faces, face, sq, cap)


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
