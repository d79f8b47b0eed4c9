"""Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs"; system.md §9).

KID is the unbiased estimate of the squared MMD between generated features x and real features y
under the cubic polynomial kernel k(a, b) = (a . b / D + 1)^3 (D = feature dimension):

    MMD^2_u = 1/(m(m-1)) sum_{i != j} [k(x_i, x_j) + k(y_i, y_j)] - 2/m^2 sum_{i,j} k(x_i, y_j)

averaged over `num_subsets` random subsets of m = min(N_g, N_r, max_subset_size) samples of each
set, drawn without replacement (the StyleGAN/EG3D protocol: 100 subsets of at most 1000).
"""
import numpy as np

KID_NUM_SUBSETS = 100
KID_MAX_SUBSET_SIZE = 1000
KERNEL_DEGREE = 3


def polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """k(a_i, b_j) = (a_i . b_j / D + 1)^3 for a [N, D], b [M, D] -> [N, M] float64."""
    return (a @ b.T / a.shape[1] + 1) ** KERNEL_DEGREE


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased squared MMD of two equally sized samples x, y [m, D] (m >= 2) under polynomial_kernel."""
    m = x.shape[0]
    kxx, kyy, kxy = polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y)
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2 * kxy.sum() / (m * m))


def kernel_inception_distance(real: np.ndarray, fake: np.ndarray, num_subsets: int = KID_NUM_SUBSETS,
                              max_subset_size: int = KID_MAX_SUBSET_SIZE, seed: int = 0) -> float:
    """KID between real features [N_r, D] and generated features [N_g, D]: mean MMD^2_u over random subsets.

    Subset k takes np.random.default_rng(seed) draws: first m fake rows, then m real rows, each
    without replacement.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(f'kernel_inception_distance: expected [N, D] features of one D, got '
                         f'{list(real.shape)} and {list(fake.shape)}')
    m = min(real.shape[0], fake.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f'kernel_inception_distance: needs at least 2 real and 2 generated samples, got '
                         f'{real.shape[0]} and {fake.shape[0]}')
    rng = np.random.default_rng(seed)
    total = 0.0
    for _ in range(num_subsets):
        x = fake[rng.choice(fake.shape[0], m, replace=False)]
        y = real[rng.choice(real.shape[0], m, replace=False)]
        total += mmd2_unbiased(x, y)
    return total / num_subsets
