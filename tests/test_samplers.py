"""Stratified and inverse-CDF depth sampling (training/rendering/samplers.py) against analytic and numpy references."""
import numpy as np
import pytest
import torch

from training.rendering.samplers import (draw_uniform, importance_depths, inverse_cdf, merge_sorted, smooth_weights,
                                         stratified_depths, unmerge)

START, END, N_SAMPLES = 2.25, 3.3, 48


def test_stratified_deterministic_is_equally_spaced():
    depths = stratified_depths(2, 5, START, END, N_SAMPLES)
    assert depths.shape == (2, 5, N_SAMPLES)
    np.testing.assert_allclose(depths[1, 3].numpy(), np.linspace(START, END, N_SAMPLES), rtol=1e-6)


def test_stratified_jitter_stays_in_its_stratum():
    g = torch.Generator().manual_seed(0)
    base = stratified_depths(4, 100, START, END, N_SAMPLES)
    jitter = draw_uniform((4, 100, N_SAMPLES), base, g)
    depths = stratified_depths(4, 100, START, END, N_SAMPLES, jitter)
    spacing = (END - START) / (N_SAMPLES - 1)
    offset = (depths - base) / spacing
    assert offset.min() >= 0 and offset.max() <= 1
    assert offset.mean().item() == pytest.approx(0.5, abs=0.01)
    assert (depths[..., 1:] >= depths[..., :-1]).all()


def numpy_smooth(w, floor):
    """Independent max-pool(2, 1, pad 1) then avg-pool(2, 1) of one weight row, plus floor."""
    padded = np.concatenate([[-np.inf], w, [-np.inf]])
    maxed = np.maximum(padded[:-1], padded[1:])
    return (maxed[:-1] + maxed[1:]) / 2 + floor


def test_smooth_weights_matches_numpy():
    w = torch.rand(3, 7, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = smooth_weights(w, 0.01)
    assert out.shape == w.shape
    np.testing.assert_allclose(out[2, 4].numpy(), numpy_smooth(w[2, 4].numpy(), 0.01), rtol=1e-12)


def test_inverse_cdf_matches_analytic_piecewise_constant_inverse():
    edges = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=torch.float64)
    masses = torch.tensor([1.0, 2.0, 1.0], dtype=torch.float64)     # CDF: 0 -> .25 -> .75 -> 1
    u = torch.tensor([0.0, 0.125, 0.25, 0.5, 0.7, 0.875, 1.0], dtype=torch.float64)
    expected = [0.0, 0.5, 1.0, 2.0, 2.8, 3.5, 4.0]
    np.testing.assert_allclose(inverse_cdf(edges, masses, u).numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(inverse_cdf(edges, masses, u).numpy(),
                               np.interp(u.numpy(), [0, 0.25, 0.75, 1], edges.numpy()), atol=1e-12)


def test_importance_depths_deterministic_quantiles_follow_the_pdf():
    depths = stratified_depths(1, 1, START, END, 5, dtype=torch.float64)     # 4 intervals
    weights = torch.tensor([[[0.0, 1.0, 0.0, 0.0]]], dtype=torch.float64)
    fine = importance_depths(depths, weights, 8, floor=0.0)
    masses = smooth_weights(weights, 0.0)[0, 0].numpy()                     # [1, 1, .5, 0]
    cdf = np.concatenate([[0], np.cumsum(masses) / masses.sum()])
    u = (np.arange(8) + 0.5) / 8
    np.testing.assert_allclose(fine[0, 0].numpy(), np.interp(u, cdf, depths[0, 0].numpy()), atol=1e-12)


def test_importance_samples_sorted_inside_range_and_concentrated():
    g = torch.Generator().manual_seed(2)
    depths = stratified_depths(2, 64, START, END, N_SAMPLES)
    weights = torch.zeros(2, 64, N_SAMPLES - 1)
    weights[..., 20] = 0.9
    u = draw_uniform((2, 64, 48), depths, g)
    fine = importance_depths(depths, weights, 48, 0.01, u)
    assert fine.shape == (2, 64, 48)
    assert (fine[..., 1:] >= fine[..., :-1]).all()
    assert fine.min() >= START and fine.max() <= END
    near_peak = ((fine >= depths[0, 0, 19]) & (fine <= depths[0, 0, 22])).float().mean()
    assert near_peak > 0.7


def test_merge_sorted_gathers_values_in_depth_order():
    a = torch.tensor([[[1.0, 3.0, 5.0]]])
    b = torch.tensor([[[2.0, 4.0]]])
    depths, order, values = merge_sorted(a, b, (a[..., None] * 10, b[..., None] * 10))
    np.testing.assert_array_equal(depths[0, 0].numpy(), [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(order[0, 0].numpy(), [0, 3, 1, 4, 2])
    np.testing.assert_array_equal(values[0, 0, :, 0].numpy(), [10, 20, 30, 40, 50])


def test_unmerge_inverts_merge_sorted():
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(2, 3, 5, generator=g), torch.rand(2, 3, 4, generator=g)
    depths, order = merge_sorted(a, b)
    back_a, back_b = unmerge(depths * 10, order, 5)
    torch.testing.assert_close(back_a, a * 10)
    torch.testing.assert_close(back_b, b * 10)
