"""Mesh export (training/geometry/mesh_export.py): an analytic sphere's density -> closed mesh files."""
import os
import sys

import numpy as np
import pytest
import torch

from training.geometry import mesh_export
from training.geometry.density_grid import Grid, clear_border, density_grid

trimesh = pytest.importorskip('trimesh')
pytest.importorskip('skimage')

RADIUS, CENTER, LEVEL = 0.3, (0.05, -0.1, 0.02), 10.0


def _sphere(points):
    """Density 100 (R - |p - centre|) + LEVEL: crosses LEVEL exactly on the sphere of radius R."""
    distance = (points - torch.tensor(CENTER, dtype=points.dtype)).norm(dim=-1, keepdim=True)
    return 100 * (RADIUS - distance) + LEVEL


@pytest.fixture(scope='module')
def sphere_volume():
    grid = Grid(48, 1.0)
    return grid, density_grid(_sphere, grid, max_batch=5000)


def test_sphere_mesh_is_closed_and_in_world_units(sphere_volume):
    grid, volume = sphere_volume
    vertices, faces = mesh_export.marching_cubes(volume, LEVEL, grid.origin, grid.spacing)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.volume > 0                                            # normals point outward
    assert mesh.volume == pytest.approx(4 / 3 * np.pi * RADIUS ** 3, rel=0.03)
    distance = np.linalg.norm(vertices - np.asarray(CENTER), axis=1)
    assert np.abs(distance - RADIUS).max() < grid.spacing


def test_border_clearing_closes_a_surface_cut_by_the_cube():
    grid = Grid(32, 1.0)
    slab = density_grid(lambda p: 20 * (0.2 - p[..., 1:2].abs()), grid)   # |y| < 0.2, unbounded in x and z
    vertices, faces = mesh_export.marching_cubes(slab, 0.0, grid.origin, grid.spacing)
    assert not trimesh.Trimesh(vertices, faces, process=False).is_watertight
    vertices, faces = mesh_export.marching_cubes(clear_border(slab, 1, -1000.0), 0.0, grid.origin, grid.spacing)
    mesh = trimesh.Trimesh(vertices, faces, process=False)
    assert mesh.is_watertight and mesh.volume > 0


@pytest.mark.parametrize('ext', ['.ply', '.obj', '.glb'])
def test_formats_round_trip_through_trimesh(sphere_volume, tmp_path, ext):
    grid, volume = sphere_volume
    path = tmp_path / f'sphere{ext}'
    mesh_export.export_shape(str(path), volume, grid.origin, grid.spacing, LEVEL)
    vertices, faces = mesh_export.marching_cubes(volume, LEVEL, grid.origin, grid.spacing)
    loaded = trimesh.load(str(path), force='mesh', process=False)
    assert loaded.faces.shape == faces.shape and loaded.is_watertight
    np.testing.assert_allclose(np.sort(loaded.vertices, axis=0), np.sort(vertices, axis=0), atol=1e-5)
    assert os.listdir(tmp_path) == [path.name]


def test_mrc_stores_the_volume_in_world_units(sphere_volume, tmp_path):
    mrcfile = pytest.importorskip('mrcfile')
    grid, volume = sphere_volume
    path = tmp_path / 'sphere.mrc'
    mesh_export.export_shape(str(path), volume, grid.origin, grid.spacing, LEVEL)
    with mrcfile.open(str(path)) as mrc:
        np.testing.assert_array_equal(mrc.data.transpose(2, 1, 0), volume)
        assert float(mrc.voxel_size.x) == pytest.approx(grid.spacing)
        assert float(mrc.header.origin.x) == pytest.approx(grid.origin[0])


def test_missing_mrcfile_gives_an_install_hint(sphere_volume, tmp_path, monkeypatch):
    grid, volume = sphere_volume
    monkeypatch.setitem(sys.modules, 'mrcfile', None)
    with pytest.raises(ImportError, match='needs the mrcfile package: pip install mrcfile'):
        mesh_export.export_shape(str(tmp_path / 'x.mrc'), volume, grid.origin, grid.spacing, LEVEL)
    monkeypatch.setitem(sys.modules, 'trimesh', None)
    with pytest.raises(ImportError, match=r'pip install scikit-image trimesh'):
        mesh_export.export_shape(str(tmp_path / 'x.ply'), volume, grid.origin, grid.spacing, LEVEL)
    assert os.listdir(tmp_path) == []


def test_bad_level_and_format(sphere_volume, tmp_path):
    grid, volume = sphere_volume
    with pytest.raises(ValueError, match=r'no surface at level 1e\+06: the density ranges from'):
        mesh_export.marching_cubes(volume, 1e6, grid.origin, grid.spacing)
    with pytest.raises(ValueError, match=r"unknown shape format '.stl'.*expected one of .ply, .obj, .glb, .mrc"):
        mesh_export.export_shape(str(tmp_path / 'x.stl'), volume, grid.origin, grid.spacing, LEVEL)
    with pytest.raises(ValueError, match='a mesh needs one of'):
        mesh_export.save_mesh(str(tmp_path / 'x.mrc'), np.zeros((3, 3)), np.zeros((1, 3), dtype=int))
    assert os.listdir(tmp_path) == []


def test_failed_export_keeps_the_previous_file(sphere_volume, tmp_path, monkeypatch):
    grid, volume = sphere_volume
    path = tmp_path / 'sphere.ply'
    path.write_bytes(b'previous')

    def broken_export(self, file_obj=None, file_type=None, **kwargs):
        file_obj.write(b'ply\nhalf')
        raise RuntimeError('interrupted')

    monkeypatch.setattr(trimesh.Trimesh, 'export', broken_export)
    with pytest.raises(RuntimeError, match='interrupted'):
        mesh_export.export_shape(str(path), volume, grid.origin, grid.spacing, LEVEL)
    assert path.read_bytes() == b'previous' and os.listdir(tmp_path) == ['sphere.ply']
