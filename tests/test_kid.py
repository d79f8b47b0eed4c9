"""metrics.kid against a direct polynomial-kernel MMD written with plain loops."""
import numpy as np
import pytest

from metrics.kid import kernel_inception_distance, mmd2_unbiased


def _kernel(a, b):
    return (sum(float(u) * float(v) for u, v in zip(a, b)) / len(a) + 1) ** 3


def _mmd2_loops(x, y):
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) with k(a, b) = (a.b / D + 1)^3, pair by pair."""
    m = len(x)
    kxx = sum(_kernel(x[i], x[j]) for i in range(m) for j in range(m) if i != j)
    kyy = sum(_kernel(y[i], y[j]) for i in range(m) for j in range(m) if i != j)
    kxy = sum(_kernel(x[i], y[j]) for i in range(m) for j in range(m))
    return kxx / (m * (m - 1)) + kyy / (m * (m - 1)) - 2 * kxy / (m * m)


def test_mmd2_matches_the_loops():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(7, 5)), rng.normal(0.5, 1.2, size=(7, 5))
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_loops(x, y), rel=1e-12)


def test_whole_sets_as_subsets_give_the_full_sample_mmd():
    """With m = N every subset is a permutation of both sets, so every draw gives the same MMD^2."""
    rng = np.random.default_rng(1)
    real, fake = rng.normal(size=(9, 4)), rng.normal(0.3, 1.0, size=(9, 4))
    kid = kernel_inception_distance(real, fake, num_subsets=5, max_subset_size=1000)
    assert kid == pytest.approx(_mmd2_loops(fake, real), rel=1e-10)


def test_subsets_follow_the_documented_draws():
    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(11, 3)), rng.normal(0.2, 1.0, size=(8, 3))
    draws = np.random.default_rng(7)
    expected = []
    for _ in range(4):
        x = fake[draws.choice(8, 5, replace=False)]
        y = real[draws.choice(11, 5, replace=False)]
        expected.append(_mmd2_loops(x, y))
    kid = kernel_inception_distance(real, fake, num_subsets=4, max_subset_size=5, seed=7)
    assert kid == pytest.approx(np.mean(expected), rel=1e-10)


def test_same_distribution_is_near_zero_and_a_shift_is_positive():
    rng = np.random.default_rng(3)
    real = rng.normal(size=(600, 8))
    same, shifted = rng.normal(size=(600, 8)), rng.normal(0.5, 1.0, size=(600, 8))
    assert abs(kernel_inception_distance(real, same, num_subsets=10, max_subset_size=300)) < 0.03
    assert kernel_inception_distance(real, shifted, num_subsets=10, max_subset_size=300) > 0.5


def test_bad_inputs():
    with pytest.raises(ValueError, match='at least 2'):
        kernel_inception_distance(np.zeros((1, 3)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match='one D'):
        kernel_inception_distance(np.zeros((4, 3)), np.zeros((4, 2)))
