"""Rays of the 25-float camera (training/rendering/ray_sampler.py) against numpy and the projection."""
import math

import numpy as np
import torch

from training import cameras
from training.rendering.ray_sampler import camera_rays, pixel_centres


def skewed_camera(seed=0):
    """A random-rotation camera [1, 25] with skew and an off-centre principal point."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.det(q))
    cam2world = torch.eye(4, dtype=torch.float64)
    cam2world[:3, :3] = q
    cam2world[:3, 3] = torch.tensor([0.3, -0.2, 2.7])
    K = torch.tensor([[4.0, 0.7, 0.45], [0.0, 3.5, 0.6], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return cameras.pack_camera(cam2world[None], K)


def test_pixel_centres_raster_order():
    uv = pixel_centres(4)
    assert uv.shape == (16, 2)
    np.testing.assert_allclose(uv[1].numpy(), [0.375, 0.125])   # row 0, column 1
    np.testing.assert_allclose(uv[4].numpy(), [0.125, 0.375])   # row 1, column 0


def test_principal_ray_is_forward_axis():
    c = cameras.camera_vector(torch.tensor([0.3, math.pi / 2, 2.0]), torch.tensor([1.2, 1.6, 1.9]))
    origins, directions = camera_rays(c, 5)    # pixel (2, 2) has its centre at (0.5, 0.5)
    cam2world, _ = cameras.unpack_camera(c)
    assert origins.shape == directions.shape == (3, 25, 3)
    torch.testing.assert_close(directions[:, 12], cam2world[:, :3, 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(origins[:, 12], cam2world[:, :3, 3])


def test_directions_match_numpy_inverse_intrinsics_with_skew():
    c = skewed_camera()
    resolution = 6
    _, directions = camera_rays(c, resolution)
    cam2world, K = (m[0].numpy() for m in cameras.unpack_camera(c))
    expected = []
    for row in range(resolution):
        for col in range(resolution):
            pixel = np.array([(col + 0.5) / resolution, (row + 0.5) / resolution, 1.0])
            d = cam2world[:3, :3] @ (np.linalg.inv(K) @ pixel)
            expected.append(d / np.linalg.norm(d))
    np.testing.assert_allclose(directions[0].numpy(), np.array(expected), atol=1e-12)


def test_rays_project_back_to_pixel_centres():
    c = skewed_camera(1).float()
    origins, directions = camera_rays(c, 8)
    points = origins + 2.5 * directions
    uv = cameras.project(points, c)
    torch.testing.assert_close(uv[0], pixel_centres(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(directions.norm(dim=-1), torch.ones(1, 64))
