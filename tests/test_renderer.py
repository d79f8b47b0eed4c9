"""Rendering orchestration (training/rendering/renderer.py): analytic scenes, warp, crop, chunking, noise."""
import dataclasses
import math

import numpy as np
import pytest
import torch

from configs.schema import RenderingConfig
from training import cameras
from training.networks.decoder import TriGridDecoder
from training.rendering.planes import sample_trigrid
from training.rendering.ray_sampler import camera_rays
from training.rendering.renderer import VolumeRenderer, draw_randoms, evaluate_points, render_rays

CFG = RenderingConfig()
RADIUS = 0.12
SPACING = (CFG.ray_end - CFG.ray_start) / (CFG.depth_resolution - 1)


def sphere_field(points, centre=(0.0, 0.0, 0.0)):
    """An opaque sphere of RADIUS: raw sigma 1e3 inside, -1e3 outside; features = the canonical points."""
    inside = (points - torch.tensor(centre)).norm(dim=-1, keepdim=True) < RADIUS
    return torch.where(inside, 1e3, -1e3), points


def rays(resolution=8, yaw=(math.pi / 2, 2.0)):
    """Rays [N, R*R, 3] of preset cameras at the given yaws."""
    return camera_rays(cameras.camera_vector(torch.tensor(yaw), math.pi / 2), resolution)


def sphere_hit(origins, directions, centre):
    """Analytic first intersection distance of rays with the sphere (nan where missed)."""
    oc = origins - torch.tensor(centre)
    b = (directions * oc).sum(-1)
    disc = b ** 2 - (oc.norm(dim=-1) ** 2 - RADIUS ** 2)
    return -b - disc.sqrt()


@pytest.mark.parametrize('perturb', [False, True])
def test_sphere_depth_is_ray_sphere_intersection(perturb):
    origins, directions = rays()
    out = render_rays(sphere_field, origins, directions, CFG, perturb=perturb,
                      generator=torch.Generator().manual_seed(0))
    hit = sphere_hit(origins, directions, (0.0, 0.0, 0.0))
    opaque = out['opacity'][..., 0] > 0.99
    missed = hit.isnan()
    assert opaque.sum() > 20 and missed.sum() > 20 and (out['opacity'][missed] < 1e-6).all()
    error = out['depth'][..., 0][opaque] - hit[opaque]
    assert error.abs().max() < SPACING
    assert out['features'].shape == (2, 64, 3) and out['depth'].shape == out['opacity'].shape == (2, 64, 1)


def test_translation_warp_shifts_the_surface_and_sees_both_passes():
    origins, directions = rays()
    shift = torch.tensor([0.0, 0.0, 0.1])
    calls = []

    def warp(points):
        calls.append(points.shape)
        return points - shift          # the canonical sphere appears at +shift in the world

    out = render_rays(sphere_field, origins, directions, CFG, warp=warp, perturb=False)
    assert calls == [(2, 64 * CFG.depth_resolution, 3), (2, 64 * CFG.depth_resolution_importance, 3)]
    hit = sphere_hit(origins, directions, tuple(shift.tolist()))
    opaque = out['opacity'][..., 0] > 0.99
    assert (out['depth'][..., 0][opaque] - hit[opaque]).abs().max() < SPACING
    centre = out['depth'][0, 27:29, 0].mean() - render_rays(sphere_field, origins, directions, CFG, perturb=False)[
        'depth'][0, 27:29, 0].mean()
    assert centre.item() == pytest.approx(-0.1, abs=SPACING / 2)   # camera 0 looks along -z: 0.1 closer


def test_crop_applies_to_canonical_points_after_the_warp():
    field = lambda p: (torch.full_like(p[..., :1], 5.0), p)    # noqa: E731 (uniform density)
    points = torch.tensor([[[0.2, 0.0, 0.0], [-0.6, 0.0, 0.0], [0.0, 2.0, 0.0]]])
    sigma, _ = evaluate_points(field, points, CFG)
    assert sigma[0, :, 0].tolist() == [5.0, CFG.empty_density, 5.0]
    sigma, _ = evaluate_points(field, points, CFG, warp=lambda p: p + torch.tensor([0.3, 0.0, 0.0]))
    assert sigma[0, :, 0].tolist() == [CFG.empty_density, 5.0, 5.0]


def random_scene(seed=0, depth=3):
    """Small random planes [2, 3, 32*D, 16, 16] and a decoder with a non-zero density bias."""
    torch.manual_seed(seed)
    cfg = dataclasses.replace(CFG, depth_resolution=12, depth_resolution_importance=12, triplane_depth=depth)
    decoder = TriGridDecoder(cfg)
    with torch.no_grad():
        decoder.fc1.bias[0] = 2.0
    return cfg, torch.randn(2, 3, 32 * depth, 16, 16), decoder


def test_chunked_render_equals_unchunked():
    cfg, planes, decoder = random_scene()
    origins, directions = rays()
    outs = [VolumeRenderer(dataclasses.replace(cfg, ray_chunk=chunk))(
        planes, decoder, origins, directions, density_noise=0.5, perturb=True,
        generator=torch.Generator().manual_seed(3)) for chunk in (None, 10)]
    for key in ('features', 'depth', 'opacity'):
        torch.testing.assert_close(outs[1][key], outs[0][key], rtol=1e-5, atol=1e-6)


def test_density_noise_only_when_asked():
    cfg, planes, decoder = random_scene()
    origins, directions = rays()
    assert draw_randoms(2, 64, cfg, True, 0.0, origins).noise_coarse is None
    renderer = VolumeRenderer(cfg)
    clean = [renderer(planes, decoder, origins, directions, perturb=False)['features'] for _ in range(2)]
    noisy = renderer(planes, decoder, origins, directions, density_noise=1.0, perturb=False)['features']
    torch.testing.assert_close(clean[0], clean[1], rtol=0, atol=0)
    assert (noisy - clean[0]).abs().max() > 1e-3


@pytest.mark.parametrize('depth', [1, 3])
def test_samplers_agree_and_gradients_reach_planes_decoder_and_pose(depth):
    cfg, planes, decoder = random_scene(1, depth)
    origins, directions = rays(6)
    images = []
    for impl in ('gather', 'grid_sample'):
        leaf = planes.clone().requires_grad_()
        offset = torch.zeros(3, requires_grad=True)                # stands in for a pose-dependent warp
        out = VolumeRenderer(dataclasses.replace(cfg, sampler_impl=impl))(
            leaf, decoder, origins, directions, warp=lambda p: p + offset, perturb=False)
        (out['features'].square().sum() + out['depth'].sum()).backward()
        images.append((out['features'], leaf.grad, offset.grad))
        assert leaf.grad.abs().sum() > 0 and offset.grad.abs().sum() > 0
    for fast, reference in zip(*images):
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-4)
    assert all(p.grad is not None for p in decoder.parameters())


def test_sample_canonical_is_decoder_of_trigrid_with_crop():
    cfg, planes, decoder = random_scene()
    coords = torch.tensor([[[0.1, 0.2, -0.1], [0.45, 0.0, 0.0]]]).expand(2, 2, 3)
    out = VolumeRenderer(cfg).sample_canonical(planes, decoder, coords)
    sigma, features = decoder(sample_trigrid(planes, coords, cfg.triplane_depth, cfg.box_warp, 'grid_sample'))
    torch.testing.assert_close(out['features'], features, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out['sigma'][:, 0], sigma[:, 0], rtol=1e-5, atol=1e-5)
    assert (out['sigma'][:, 1] == cfg.empty_density).all()


def _numpy_features(t, sigma, f):
    """Composited feature of one ray's sorted samples, as a float64 loop over the midpoint intervals."""
    out, transmittance = np.zeros(f.shape[1]), 1.0
    for i in range(len(t) - 1):
        density = np.log1p(np.exp((sigma[i] + sigma[i + 1]) / 2 + CFG.density_bias))
        alpha = 1 - np.exp(-density * (t[i + 1] - t[i]))
        out += alpha * transmittance * (f[i] + f[i + 1]) / 2
        transmittance *= 1 - alpha + CFG.transmittance_eps
    return out


def test_features_equal_compositing_the_merged_sorted_samples():
    """The renderer sums coarse and fine features per set; that equals compositing all samples in depth order."""
    origins, directions = rays(4)
    seen = []

    def field(points):
        sigma = torch.where(points.norm(dim=-1, keepdim=True) < 0.2, 8 - 100 * points.square().sum(-1, keepdim=True),
                            torch.full_like(points[..., :1], CFG.empty_density))
        features = torch.cat([points, points.square()], dim=-1)
        seen.append((points, sigma, features))
        return sigma, features

    out = render_rays(field, origins, directions, CFG, perturb=True, generator=torch.Generator().manual_seed(5))
    points, sigma, features = (torch.cat(parts, dim=2).double() for parts in zip(*[
        (p.reshape(2, 16, -1, 3), s.reshape(2, 16, -1), f.reshape(2, 16, -1, 6)) for p, s, f in seen]))
    depths = ((points - origins[:, :, None].double()) * directions[:, :, None].double()).sum(-1)
    for n, r in [(0, 5), (0, 6), (1, 9), (1, 10)]:
        order = torch.argsort(depths[n, r])
        expected = _numpy_features(depths[n, r, order].numpy(), sigma[n, r, order].numpy(),
                                   features[n, r, order].numpy())
        np.testing.assert_allclose(out['features'][n, r].numpy(), expected, rtol=1e-4, atol=1e-6)
    assert out['opacity'].max() > 0.5
