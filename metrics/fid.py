"""Frechet Inception Distance (Heusel et al. 2017; system.md §9).

FID = |mu_g - mu_r|^2 + Tr(Sigma_g + Sigma_r - 2 (Sigma_g Sigma_r)^(1/2)) between Gaussians fitted
to detector features of generated and real images. Means and covariances are the population
moments (divided by N, as StyleGAN's FeatureStats), in float64.
"""
from typing import Tuple

import numpy as np
import scipy.linalg


def mean_cov(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Features [N, D] -> (mean float64 [D], population covariance float64 [D, D])."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1:
        raise ValueError(f'features: expected a non-empty [N, D] array, got shape {list(x.shape)}')
    mu = x.mean(axis=0)
    centred = x - mu
    return mu, centred.T @ centred / x.shape[0]


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2); mu [D], sigma [D, D] symmetric PSD.

    The matrix square root comes from scipy.linalg.sqrtm; its imaginary round-off (Sigma1 Sigma2 is
    not symmetric) is dropped, as in the reference implementations.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f'frechet_distance: mismatched shapes mu {list(mu1.shape)}, {list(mu2.shape)}, '
                         f'sigma {list(sigma1.shape)}, {list(sigma2.shape)}')
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    mean_term = np.square(mu1 - mu2).sum()
    return float(np.real(mean_term + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean)))


def fid_from_features(real: np.ndarray, fake: np.ndarray) -> float:
    """FID between real features [N_r, D] and generated features [N_g, D]."""
    return frechet_distance(*mean_cov(fake), *mean_cov(real))
