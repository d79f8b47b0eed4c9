"""Density volume -> mesh file: marching cubes (scikit-image) and .ply/.obj/.glb (trimesh) or .mrc (mrcfile).

Volumes follow density_grid.py: [N, N, N] indexed (x, y, z), grid point (i, j, k) at
origin + (i, j, k) * spacing. Mesh vertices are written in the same world (canonical) units,
not voxel units, with faces wound so that normals point out of the dense region (density
decreases outward). `.mrc` stores the raw volume for ChimeraX (data laid out z, y, x as the MRC
format expects; voxel size = spacing, origin = the grid origin, both in world units).
The packages are optional and imported where used.
"""
import importlib
import os

import numpy as np

from torch_utils.checkpoint import atomic_path, atomic_write

MESH_FORMATS = ('.ply', '.obj', '.glb')
SHAPE_FORMATS = MESH_FORMATS + ('.mrc',)
MESH_HINT = 'pip install scikit-image trimesh  (or pip install -e ".[mesh]")'
MRC_HINT = 'pip install mrcfile'


def import_optional(module: str, purpose: str, hint: str):
    """Import `module`, or raise ImportError saying what needs it and how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f'{purpose} needs the {module.split(".")[0]} package: {hint}') from None


def shape_format(path: str) -> str:
    """The lower-case extension of `path` if it is one of SHAPE_FORMATS, else ValueError."""
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext not in SHAPE_FORMATS:
        raise ValueError(f'unknown shape format {ext or "(none)"!r} of {path}; '
                         f'expected one of {", ".join(SHAPE_FORMATS)}')
    return ext


def marching_cubes(volume: np.ndarray, level: float, origin, spacing: float):
    """Iso-surface of `volume` [N, N, N] at `level` -> (vertices float32 [V, 3] world units, faces int64 [F, 3]).

    ValueError (one line) if `level` is not strictly inside the volume's value range.
    """
    measure = import_optional('skimage.measure', 'mesh export', MESH_HINT)
    volume = np.asarray(volume, dtype=np.float32)
    low, high = float(volume.min()), float(volume.max())
    if not low < level < high:
        raise ValueError(f'no surface at level {level:g}: the density ranges from {low:.4g} to {high:.4g}')
    vertices, faces, _, _ = measure.marching_cubes(volume, level=level, spacing=(spacing,) * 3,
                                                   gradient_direction='ascent')
    vertices = vertices + np.asarray(origin, dtype=np.float64)
    return vertices.astype(np.float32), faces.astype(np.int64)


def save_mesh(path: str, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Atomically write a triangle mesh as .ply, .obj or .glb (chosen by the extension)."""
    ext = shape_format(path)
    if ext not in MESH_FORMATS:
        raise ValueError(f'{path}: a mesh needs one of {", ".join(MESH_FORMATS)}')
    trimesh = import_optional('trimesh', 'mesh export', MESH_HINT)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, process=False)
    with atomic_write(path) as file:
        mesh.export(file_obj=file, file_type=ext[1:])


def save_mrc(path: str, volume: np.ndarray, origin, spacing: float) -> None:
    """Atomically write `volume` [N, N, N] (x, y, z) as a float32 MRC map with world voxel size and origin."""
    mrcfile = import_optional('mrcfile', '.mrc export', MRC_HINT)
    with atomic_path(path) as tmp_path:
        with mrcfile.new(tmp_path, overwrite=True) as mrc:
            mrc.set_data(np.ascontiguousarray(np.asarray(volume, dtype=np.float32).transpose(2, 1, 0)))
            mrc.voxel_size = spacing
            mrc.header.origin.x, mrc.header.origin.y, mrc.header.origin.z = (float(v) for v in origin)


def export_shape(path: str, volume: np.ndarray, origin, spacing: float, level: float) -> None:
    """Write `volume` to `path`: the raw volume for .mrc, else its marching-cubes mesh at `level`."""
    if shape_format(path) == '.mrc':
        save_mrc(path, volume, origin, spacing)
    else:
        save_mesh(path, *marching_cubes(volume, level, origin, spacing))
