"""metrics.fid against closed forms (diagonal Gaussians) and an eigen-decomposition computation independent of sqrtm."""
import numpy as np
import pytest

from metrics.fid import fid_from_features, frechet_distance, mean_cov


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def _sym_sqrt(m):
    """Symmetric PSD square root by eigendecomposition."""
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def test_diagonal_covariances_match_the_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    var1, var2 = rng.uniform(0.1, 3, size=6), rng.uniform(0.1, 3, size=6)
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(var1) - np.sqrt(var2)).sum()
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-10)


def test_full_covariances_match_the_symmetric_form():
    """Tr (S1 S2)^(1/2) = Tr (S1^(1/2) S2 S1^(1/2))^(1/2), computed here with eigh only."""
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 8), _random_spd(rng, 8)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    r1 = _sym_sqrt(s1)
    expected = np.square(mu1 - mu2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(_sym_sqrt(r1 @ s2 @ r1))
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-8)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(frechet_distance(mu2, s2, mu1, s1), rel=1e-9)


def test_mean_cov_is_the_population_moment():
    x = np.random.default_rng(2).normal(size=(50, 4))
    mu, sigma = mean_cov(x.astype(np.float32))
    np.testing.assert_allclose(mu, x.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(x, rowvar=False, bias=True), rtol=1e-5, atol=1e-7)


def test_features_of_known_gaussians_approach_the_closed_form():
    rng = np.random.default_rng(3)
    n, mu_r, mu_g = 200000, np.array([0.0, 1.0, -1.0]), np.array([0.5, 1.0, 0.0])
    sd_r, sd_g = np.array([1.0, 2.0, 0.5]), np.array([1.5, 1.0, 0.5])
    real, fake = mu_r + sd_r * rng.normal(size=(n, 3)), mu_g + sd_g * rng.normal(size=(n, 3))
    expected = np.square(mu_r - mu_g).sum() + np.square(sd_r - sd_g).sum()
    assert fid_from_features(real, fake) == pytest.approx(expected, abs=0.03)


def test_mismatched_shapes_raise():
    with pytest.raises(ValueError, match='mismatched shapes'):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match='non-empty'):
        mean_cov(np.zeros((0, 3)))
