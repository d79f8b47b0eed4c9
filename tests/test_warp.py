"""Tests for training/deformation/warp.py: the §2.5 nearest-triangle frame transfer against a direct
per-point transcription, exact identity at zero pose, rigid motions, the thickness cut-off,
gradients w.r.t. posed vertices and pose, chunking, and argument checks; the fused compiled warp
(method 'cpp') against the PyTorch reference (values, gradients, gradcheck in float64), the posed
mesh shared by several calls, and derived data that follows the buffers."""

import copy
import pickle

import numpy as np
import pytest
import torch
import trimesh

from training.deformation import nearest_triangle_cpp
from training.deformation import point_to_mesh as pm
from training.deformation.warp import MeshWarp, face_transforms, transfer_points, warp_points

needs_plugin = pytest.mark.skipif(not nearest_triangle_cpp.available(),
                                  reason='the nearest_triangle CPU plugin could not be built (see stderr)')

THICKNESS = 0.25


def _head(subdivisions=3, dtype=torch.float32):
    """A bumpy head-sized sphere: canonical vertices [V,3], faces [F,3]."""
    sphere = trimesh.creation.icosphere(subdivisions=subdivisions, radius=0.12)
    rng = np.random.default_rng(0)
    vertices = sphere.vertices * (1 + 0.05 * rng.standard_normal((len(sphere.vertices), 1))) + [0, 0.1, 0]
    return torch.tensor(vertices, dtype=dtype), torch.tensor(sphere.faces, dtype=torch.long)


def _rotation(axis_angle):
    """Rotation matrix [3,3] of an axis-angle 3-vector (Rodrigues via the matrix exponential)."""
    skew = torch.cross(torch.eye(3, dtype=axis_angle.dtype), axis_angle.expand(3, 3), dim=-1)
    return torch.linalg.matrix_exp(skew)


def _points(count, seed, dtype=torch.float32, spread=0.35):
    """Sample points [1, count, 3] around the head, some within and some beyond THICKNESS."""
    g = torch.Generator().manual_seed(seed)
    return ((torch.rand(1, count, 3, generator=g, dtype=dtype) * 2 - 1) * spread + torch.tensor([0, 0.1, 0]))


def _paper_formula(x, face, posed, canonical, faces):
    """x_c of system.md §2.5 steps 2-5 for one point x [3] and face index, transcribed directly."""
    p0, p1, p2 = posed[faces[face]]
    c0, c1, c2 = canonical[faces[face]]
    e1, n = (p1 - p0) / (p1 - p0).norm(), torch.cross(p1 - p0, p2 - p0, dim=0)
    n = n / n.norm()
    e3 = torch.cross(e1, n, dim=0)
    l1, l2, l3 = [torch.dot(x - p0, e) for e in (e1, n, e3)]
    f1, fn = (c1 - c0) / (c1 - c0).norm(), torch.cross(c1 - c0, c2 - c0, dim=0)
    fn = fn / fn.norm()
    return c0 + l1 * f1 + l2 * fn + l3 * torch.cross(f1, fn, dim=0)


def test_zero_pose_is_exactly_the_identity():
    canonical, faces = _head()
    points = _points(4000, seed=1).expand(2, -1, -1)
    warped, inside = warp_points(points, canonical.expand(2, -1, -1), canonical, faces, THICKNESS)
    assert torch.equal(warped, points)
    assert 0.2 < inside.float().mean() < 0.95


def test_rigid_motion_maps_every_point_within_thickness_back():
    canonical, faces = _head()
    rotation = _rotation(torch.tensor([0.3, -0.5, 0.2]))
    pivot = torch.tensor([0.0, 0.02, 0.01])
    posed = (canonical - pivot) @ rotation.T + pivot + torch.tensor([0.01, 0.0, -0.02])
    points = _points(4000, seed=2)
    warped, inside = warp_points(points, posed[None], canonical, faces, THICKNESS)
    expected = (points - pivot - torch.tensor([0.01, 0.0, -0.02])) @ rotation + pivot
    assert inside.float().mean() > 0.2
    torch.testing.assert_close(warped[inside], expected[inside], atol=2e-6, rtol=0)
    assert torch.equal(warped[~inside], points[~inside])


def test_matches_direct_transcription_of_the_paper_formula():
    canonical, faces = _head(subdivisions=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    posed = canonical @ _rotation(torch.tensor([0.2, 0.4, -0.1], dtype=torch.float64)).T
    posed = posed + 0.01 * torch.randn(posed.shape, generator=g, dtype=torch.float64)  # non-rigid
    points = _points(1500, seed=4, dtype=torch.float64)
    warped, inside = warp_points(points, posed[None], canonical, faces, THICKNESS)
    sq = pm.point_triangle_sq_distance(points[0, :, None], *posed[faces].unbind(1))  # [P, F]
    nearest = sq.amin(dim=1)
    assert torch.equal(inside[0], nearest < THICKNESS ** 2)
    assert torch.equal(warped[~inside], points[~inside])
    tied = 0
    for i in inside[0].nonzero()[:, 0].tolist():
        # Points nearest to a shared vertex or edge have several nearest faces (the paper leaves the
        # choice open); the warp must equal the formula for one of them.
        candidates = (sq[i] <= nearest[i] + 1e-12).nonzero()[:, 0].tolist()
        tied += len(candidates) > 1
        errors = [(warped[0, i] - _paper_formula(points[0, i], f, posed, canonical, faces)).abs().max()
                  for f in candidates]
        assert min(errors) < 1e-12, (i, candidates, errors)
    assert tied > 0


def test_points_beyond_thickness_are_unchanged_and_mask_is_the_distance_test():
    canonical, faces = _head()
    posed = canonical @ _rotation(torch.tensor([0.0, 0.8, 0.0])).T
    points = _points(3000, seed=5, spread=0.6)
    for thickness in (0.02, 0.1):
        warped, inside = warp_points(points, posed[None], canonical, faces, thickness)
        _, sq = pm.brute_force_nearest_triangles(points[0], posed, faces)
        assert torch.equal(inside[0], sq < thickness ** 2)
        assert torch.equal(warped[~inside], points[~inside])
        assert not torch.equal(warped[inside], points[inside])


def test_chunking_and_batching_give_identical_results():
    canonical, faces = _head()
    posed = torch.stack([canonical @ _rotation(torch.tensor([0.1 * b, 0.3, -0.2 * b])).T for b in range(3)])
    points = torch.cat([_points(2000, seed=6 + b) for b in range(3)])
    warped, inside = warp_points(points, posed, canonical, faces, THICKNESS)
    small, small_inside = warp_points(points, posed, canonical, faces, THICKNESS, chunk=333)
    assert torch.equal(small, warped) and torch.equal(small_inside, inside)
    for b in range(3):
        one, one_inside = warp_points(points[b:b + 1], posed[b:b + 1], canonical, faces, THICKNESS)
        assert torch.equal(one_inside, inside[b:b + 1])
        torch.testing.assert_close(one, warped[b:b + 1], atol=0, rtol=0)


def test_module_matches_function_and_moves_with_to():
    canonical, faces = _head()
    posed = canonical @ _rotation(torch.tensor([0.4, 0.1, 0.0])).T
    points = _points(2000, seed=9)
    warp = MeshWarp(canonical, faces, THICKNESS, method='brute')
    assert set(dict(warp.named_buffers())) == {'canonical_vertices', 'faces', 'cluster_order'}
    warped, inside = warp(points, posed[None])
    expected, expected_inside = warp_points(points, posed[None], canonical, faces, THICKNESS, method='brute')
    assert torch.equal(warped, expected) and torch.equal(inside, expected_inside)
    warp64 = MeshWarp(canonical, faces, THICKNESS).double()
    warped64, inside64 = warp64(points.double(), posed[None].double())
    assert warped64.dtype == torch.float64 and inside64.float().mean() > 0.2
    assert 'thickness=0.25' in repr(warp)


def _stable_points(posed, faces, count, seed, margin=1e-3):
    """Points [1,K,3] within THICKNESS whose nearest face beats the runner-up by `margin` (no ties)."""
    points = _points(count, seed, dtype=torch.float64, spread=0.2)[0]
    sq = pm.point_triangle_sq_distance(points[:, None], *posed[faces].unbind(1))
    two = sq.topk(2, dim=1, largest=False).values
    keep = (two[:, 1].sqrt() - two[:, 0].sqrt() > margin) & (two[:, 0] < (THICKNESS * 0.9) ** 2)
    return points[keep][None]


def test_gradcheck_with_respect_to_posed_vertices_and_pose():
    canonical, faces = _head(subdivisions=1, dtype=torch.float64)
    rotation = _rotation(torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64))
    posed = canonical @ rotation.T + 0.005 * torch.randn(canonical.shape, dtype=torch.float64,
                                                         generator=torch.Generator().manual_seed(7))
    points = _stable_points(posed, faces, 400, seed=8)
    assert points.shape[1] >= 20

    def warp_of_vertices(vertices):
        return warp_points(points, vertices[None], canonical, faces, THICKNESS)[0]

    torch.autograd.gradcheck(warp_of_vertices, (posed.clone().requires_grad_(True),), fast_mode=True)

    face_index, _ = pm.nearest_triangles(points, posed[None], faces, THICKNESS)

    def warp_of_pose(axis_angle):
        vertices = canonical @ _rotation(axis_angle).T  # fixed face assignment, as in §2.5
        return transfer_points(points, face_index, face_index >= 0, face_transforms(vertices[None], canonical, faces))

    torch.autograd.gradcheck(warp_of_pose, (torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64, requires_grad=True),))


def test_outside_points_get_no_gradient_and_inside_points_do():
    canonical, faces = _head(subdivisions=2)
    posed = (canonical @ _rotation(torch.tensor([0.0, 0.5, 0.0])).T).requires_grad_(True)
    points = _points(2000, seed=10, spread=0.6)
    warped, inside = warp_points(points, posed[None], canonical, faces, THICKNESS)
    warped[~inside].sum().backward()
    assert posed.grad is None or torch.count_nonzero(posed.grad) == 0
    posed.grad = None
    warp_points(points, posed[None], canonical, faces, THICKNESS)[0][inside].sum().backward()
    assert torch.count_nonzero(posed.grad) > 0


@pytest.mark.parametrize('change, argument', [
    (dict(points=torch.zeros(100, 3)), 'points'),
    (dict(posed_vertices=torch.zeros(2, 10, 3)), 'posed_vertices'),
    (dict(canonical_vertices=torch.zeros(1, 10, 3)), 'canonical_vertices'),
    (dict(faces=torch.zeros(5, 3)), 'faces'),
    (dict(thickness=0.0), 'thickness'),
    (dict(chunk=0), 'chunk'),
    (dict(method='kaolin'), 'method'),
])
def test_bad_inputs_raise_value_error_naming_the_argument(change, argument):
    canonical, faces = _head(subdivisions=1)
    args = dict(points=torch.zeros(1, 100, 3), posed_vertices=canonical[None], canonical_vertices=canonical,
                faces=faces, thickness=THICKNESS)
    args.update(change)
    with pytest.raises(ValueError, match=argument):
        warp_points(**args)
    if argument not in ('points', 'posed_vertices'):
        with pytest.raises(ValueError, match=argument):
            MeshWarp(args['canonical_vertices'], args['faces'], args['thickness'], **{
                k: v for k, v in change.items() if k in ('chunk', 'method')})


def _posed_batch(canonical, seed):
    """Two non-rigidly posed copies of the mesh [2,V,3] (rotation plus vertex noise)."""
    g = torch.Generator().manual_seed(seed)
    rotations = [_rotation(torch.tensor(aa, dtype=canonical.dtype)) for aa in ([0.3, -0.5, 0.2], [-0.2, 0.9, 0.1])]
    return torch.stack([canonical @ r.T + 0.003 * torch.randn(canonical.shape, generator=g, dtype=canonical.dtype)
                        for r in rotations])


@needs_plugin
def test_fused_warp_equals_the_reference():
    canonical, faces = _head()
    posed = _posed_batch(canonical, seed=11)
    points = torch.cat([_points(1500, seed=12), _points(1500, seed=13)])
    warp = MeshWarp(canonical, faces, THICKNESS, method='cpp')
    warped, inside = warp(points, posed)
    reference, reference_inside = MeshWarp(canonical, faces, THICKNESS, method='brute')(points, posed)
    assert torch.equal(inside, reference_inside) and 0.3 < inside.float().mean() < 0.95
    assert torch.equal(warped[~inside], points[~inside])
    # Where the nearest face is tied the two searches may pick different tied faces: compare with the
    # reference transfer of the face the fused kernel picked, and that face with brute force.
    transforms = face_transforms(posed, canonical, faces)
    _, face = nearest_triangle_cpp.FusedWarp.apply(points, transforms, warp.pose(posed).search_structure(),
                                                   THICKNESS)
    expected = transfer_points(points, face, face >= 0, transforms)
    torch.testing.assert_close(warped, expected, atol=2e-6, rtol=0)
    for b in range(2):
        sq = pm.point_triangle_sq_distance(points[b, :, None].double(), *posed[b].double()[faces].unbind(1))
        two = sq.topk(2, dim=1, largest=False).values
        own = sq.gather(1, face[b].clamp(min=0)[:, None])[:, 0]
        assert ((own - two[:, 0]) <= 1e-6)[inside[b]].all()  # a nearest face, up to float32 ties
        unique = inside[b] & (two[:, 1] - two[:, 0] > 1e-6)
        assert unique.sum() > 10  # on a convex mesh most points are nearest to a shared edge or vertex
        torch.testing.assert_close(warped[b, unique], reference[b, unique], atol=2e-6, rtol=0)


@needs_plugin
def test_non_finite_points_are_left_unchanged_and_do_not_disturb_the_others():
    """A NaN or inf sample point (e.g. from a diverged G) is beyond every face: returned as is, no crash."""
    canonical, faces = _head()
    posed = _posed_batch(canonical, seed=21)
    points = torch.cat([_points(400, seed=22), _points(400, seed=23)])
    bad = points.clone()
    bad[0, 5] = float('nan')
    bad[1, 7, 1] = float('inf')
    bad[1, 9, 2] = -float('inf')
    warp = MeshWarp(canonical, faces, THICKNESS, method='cpp')
    warped, inside = warp(bad, posed)
    clean, _ = warp(points, posed)
    assert torch.isnan(warped[0, 5]).all() and torch.equal(warped[1, 7], bad[1, 7]) and torch.equal(warped[1, 9], bad[1, 9])
    assert not inside[0, 5] and not inside[1, 7] and not inside[1, 9]
    keep = torch.ones(points.shape[:2], dtype=torch.bool)
    keep[0, 5] = keep[1, 7] = keep[1, 9] = False
    torch.testing.assert_close(warped[keep], clean[keep], atol=2e-6, rtol=0)


@needs_plugin
def test_fused_gradients_equal_the_reference():
    canonical, faces = _head(subdivisions=2)
    posed = _posed_batch(canonical.double(), seed=14).float()
    points = torch.cat([_stable_points(posed[b].double(), faces, 2000, seed=15 + b)[:, :40] for b in range(2)]).float()
    grads = {}
    for method in ('cpp', 'brute'):
        x, vertices = points.clone().requires_grad_(True), posed.clone().requires_grad_(True)
        warped, _ = MeshWarp(canonical, faces, THICKNESS, method=method)(x, vertices)
        (warped * torch.linspace(-1, 2, warped.numel()).view_as(warped)).sum().backward()
        grads[method] = (x.grad, vertices.grad)
    for fused, reference in zip(grads['cpp'], grads['brute']):
        torch.testing.assert_close(fused, reference, atol=1e-4, rtol=1e-4)
    assert torch.count_nonzero(grads['cpp'][1]) > 0


@needs_plugin
def test_fused_warp_gradcheck_in_float64():
    """The fused kernel transfers in float64 (its search runs in float32): gradcheck w.r.t. pose and points."""
    canonical, faces = _head(subdivisions=1, dtype=torch.float64)
    warp = MeshWarp(canonical, faces, THICKNESS, method='cpp')
    axis_angle = torch.tensor([0.2, -0.3, 0.1], dtype=torch.float64)
    points = _stable_points(canonical @ _rotation(axis_angle).T, faces, 400, seed=16)
    assert points.shape[1] >= 20

    def warp_of_pose(aa):
        return warp(points, (canonical @ _rotation(aa).T)[None])[0]

    torch.autograd.gradcheck(warp_of_pose, (axis_angle.clone().requires_grad_(True),))
    posed = (canonical @ _rotation(axis_angle).T)[None]
    torch.autograd.gradcheck(lambda x: warp(x, posed)[0], (points.clone().requires_grad_(True),), fast_mode=True)


@needs_plugin
def test_posed_mesh_is_built_once_and_shared_by_calls():
    canonical, faces = _head()
    posed_vertices = _posed_batch(canonical, seed=17).requires_grad_(True)
    warp = MeshWarp(canonical, faces, THICKNESS)
    posed = warp.pose(posed_vertices)
    coarse, fine = torch.cat([_points(1000, 18), _points(1000, 19)]), torch.cat([_points(800, 20), _points(800, 21)])
    shared = [warp(points, posed)[0] for points in (coarse, fine)]
    assert posed.transforms() is posed.transforms() and posed.search_structure() is posed.search_structure()
    separate = [warp(points, posed_vertices)[0] for points in (coarse, fine)]
    assert all(torch.equal(a, b) for a, b in zip(shared, separate))
    sum(t.sum() for t in shared).backward()
    assert torch.count_nonzero(posed_vertices.grad) > 0


def test_derived_data_follows_the_buffers_and_is_not_copied():
    canonical, faces = _head()
    posed = _posed_batch(canonical, seed=22)
    points = torch.cat([_points(1000, 23), _points(1000, 24)])
    expected = MeshWarp(canonical, faces, THICKNESS)(points, posed)
    warp = MeshWarp(torch.zeros_like(canonical), torch.zeros_like(faces), THICKNESS)  # as from BodyWarp sizes
    warp(points, posed)  # derived data (frames, tree) of the zero buffers
    warp.load_state_dict(MeshWarp(canonical, faces, THICKNESS).state_dict())
    for module in (warp, copy.deepcopy(warp), pickle.loads(pickle.dumps(warp))):
        result = module(points, posed)
        assert torch.equal(result[0], expected[0]) and torch.equal(result[1], expected[1])
