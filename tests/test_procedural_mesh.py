"""Exact-count watertight meshing of signed distance functions (training/deformation/procedural_mesh.py)."""
import numpy as np
import pytest
import trimesh

from training.deformation import procedural_mesh

RADIUS = 0.3


def _sphere(points):
    return np.linalg.norm(points, axis=1) - RADIUS


def _torus(points):
    ring = np.linalg.norm(points[:, [0, 2]], axis=1) - 0.3
    return np.hypot(ring, points[:, 1]) - 0.1


def _check_closed(vertices, faces, euler):
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == euler
    assert mesh.volume > 0                                       # outward normals
    return mesh


def test_marching_tetrahedra_sphere_and_torus():
    vertices, faces = procedural_mesh.marching_tetrahedra(_sphere, [-RADIUS] * 3, [RADIUS] * 3, 0.05)
    mesh = _check_closed(vertices, faces, euler=2)
    assert abs(mesh.volume / (4 / 3 * np.pi * RADIUS ** 3) - 1) < 0.05
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), RADIUS, atol=0.01)
    vertices, faces = procedural_mesh.marching_tetrahedra(_torus, [-0.4, -0.1, -0.4], [0.4, 0.1, 0.4], 0.03)
    _check_closed(vertices, faces, euler=0)


@pytest.mark.parametrize('target', [1500, 1501, 3333])
def test_relax_and_split_to_exact_count(target):
    vertices, faces = procedural_mesh.marching_tetrahedra(_sphere, [-RADIUS] * 3, [RADIUS] * 3, 0.06)
    vertices = procedural_mesh.relax(_sphere, vertices, faces, iterations=3)
    vertices, faces = procedural_mesh.split_to_count(_sphere, vertices, faces, target)
    assert len(vertices) == target and len(faces) == 2 * target - 4
    _check_closed(vertices, faces, euler=2)
    np.testing.assert_allclose(np.linalg.norm(vertices, axis=1), RADIUS, atol=1e-9)
    assert len(procedural_mesh.unique_edges(faces)) == 3 * target - 6


def test_split_refuses_fewer_vertices():
    vertices, faces = procedural_mesh.marching_tetrahedra(_sphere, [-RADIUS] * 3, [RADIUS] * 3, 0.06)
    with pytest.raises(ValueError, match='more than'):
        procedural_mesh.split_to_count(_sphere, vertices, faces, len(vertices) - 1)
