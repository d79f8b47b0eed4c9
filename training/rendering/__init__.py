"""Volume rendering of tri-grids (system.md §3): rays (ray_sampler.py), depths along rays
(samplers.py), tri-grid lookup and canonical crop (planes.py, trigrid_gather.py), compositing
(ray_marcher.py) and the orchestration with warp and chunking (renderer.py)."""
