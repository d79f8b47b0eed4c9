"""Midpoint compositing (training/rendering/ray_marcher.py) against numpy and analytic slabs."""
import math

import numpy as np
import pytest
import torch

from training.rendering.ray_marcher import composite, midpoint_weights

BIAS, EPS = -1.0, 1e-10


def numpy_composite(t, sigma, f):
    """Independent float64 loop implementation of the MipNeRF midpoint compositing of one ray."""
    w, T = [], 1.0
    for i in range(len(t) - 1):
        s = np.log1p(np.exp((sigma[i] + sigma[i + 1]) / 2 + BIAS))
        alpha = 1 - np.exp(-s * (t[i + 1] - t[i]))
        w.append(alpha * T)
        T *= 1 - alpha + EPS
    w = np.array(w)
    f_mid = (f[1:] + f[:-1]) / 2
    t_mid = (t[1:] + t[:-1]) / 2
    depth = np.clip((w * t_mid).sum() / w.sum(), t.min(), t.max())
    return w, (w[:, None] * f_mid).sum(0), depth, w.sum()


def test_matches_numpy_and_weights_sum_below_one():
    g = torch.Generator().manual_seed(0)
    t = torch.sort(2 + torch.rand(3, 4, 20, generator=g, dtype=torch.float64), dim=-1).values
    sigma = torch.randn(3, 4, 20, generator=g, dtype=torch.float64) * 20
    f = torch.randn(3, 4, 20, 5, generator=g, dtype=torch.float64)
    out = composite(t, sigma, f, BIAS, EPS)
    assert out.features.shape == (3, 4, 5) and out.depth.shape == out.opacity.shape == (3, 4, 1)
    assert out.weights.shape == (3, 4, 19)
    assert (out.opacity <= 1 + 1e-12).all() and (out.weights >= 0).all()
    for n, r in [(0, 0), (1, 3), (2, 2)]:
        w, feat, depth, opacity = numpy_composite(t[n, r].numpy(), sigma[n, r].numpy(), f[n, r].numpy())
        np.testing.assert_allclose(out.weights[n, r].numpy(), w, rtol=1e-10, atol=1e-15)
        np.testing.assert_allclose(out.features[n, r].numpy(), feat, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(out.depth[n, r, 0].item(), depth, rtol=1e-10)
        np.testing.assert_allclose(out.opacity[n, r, 0].item(), opacity, rtol=1e-10)


def test_constant_density_slab_has_analytic_opacity():
    t = torch.linspace(2.0, 3.0, 101, dtype=torch.float64)[None, None]
    inside = (t >= 2.3 - 1e-9) & (t <= 2.5 + 1e-9)     # slab [2.3, 2.5] resolved by samples on its faces
    raw = 4.47
    sigma = torch.where(inside, torch.full_like(t, raw), torch.full_like(t, -1000.0))
    out = composite(t, sigma, torch.ones(*t.shape, 1, dtype=torch.float64), BIAS, EPS)
    density = math.log1p(math.exp(raw + BIAS))
    expected = 1 - math.exp(-density * 0.2)
    assert out.opacity.item() == pytest.approx(expected, rel=1e-6)
    assert out.features.item() == pytest.approx(expected, rel=1e-6)    # constant feature 1 -> opacity
    mean_depth = 2.3 + 1 / density - 0.2 * math.exp(-density * 0.2) / expected   # continuous expectation
    assert out.depth.item() == pytest.approx(mean_depth, abs=0.01)


def test_empty_ray_depth_is_far_and_gradients_finite():
    t = torch.linspace(2.0, 3.0, 10)[None, None].requires_grad_()
    sigma = torch.full((1, 1, 10), -1000.0, requires_grad=True)
    out = composite(t, sigma, torch.ones(1, 1, 10, 2), BIAS, EPS)
    assert out.opacity.item() == 0 and out.depth.item() == pytest.approx(3.0)
    (out.depth.sum() + out.features.sum()).backward()
    assert torch.isfinite(sigma.grad).all() and torch.isfinite(t.grad).all()


def test_opaque_wall_depth_and_density_bias():
    t = torch.linspace(2.0, 3.0, 11, dtype=torch.float64)[None, None]
    sigma = torch.where(t >= 2.5 - 1e-9, torch.full_like(t, 1e4), torch.full_like(t, -1e4))
    out = composite(t, sigma, torch.zeros(1, 1, 11, 1, dtype=torch.float64), BIAS, EPS)
    assert out.opacity.item() == pytest.approx(1.0, abs=1e-9)
    # interval [2.4, 2.5] averages sigma to 0 (alpha of softplus(0 + bias) over 0.1); [2.5, 2.6] is opaque
    alpha_edge = 1 - math.exp(-math.log1p(math.exp(BIAS)) * 0.1)
    assert out.depth.item() == pytest.approx(alpha_edge * 2.45 + (1 - alpha_edge) * 2.55, rel=1e-9)
    w_low = midpoint_weights(t, torch.zeros_like(t), density_bias=-1.0, eps=EPS)
    w_high = midpoint_weights(t, torch.zeros_like(t), density_bias=+1.0, eps=EPS)
    assert w_low.sum() < w_high.sum()
