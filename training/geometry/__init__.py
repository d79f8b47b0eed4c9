"""Geometry export: density_grid (a density field sampled on an N^3 grid in chunks) and
mesh_export (marching cubes and .ply/.obj/.glb/.mrc files). scikit-image, trimesh and mrcfile
are optional and imported only when a mesh or map is written."""
