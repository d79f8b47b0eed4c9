"""A tiny TorchScript STAND-IN for the Inception feature detector, built by the tests (it is not Inception).

It follows the detector calling convention of metrics/detector.py: module(images uint8 [N, 3, H, W],
return_features=True) -> float32 features [N, FEATURE_DIM]. Features: 8x8 average pooling of the
image in [0, 1], a fixed random projection, tanh. With return_features=False it returns one
"logit" per image instead, so a loader that forgets the flag fails the shape check.
"""
import warnings

import numpy as np
import torch

FEATURE_DIM = 16
POOL = 8


class StandInDetector(torch.nn.Module):
    """images uint8 [N, 3, H, W] -> tanh(pool8(images / 255).flatten() @ projection) [N, FEATURE_DIM]."""

    def __init__(self, seed: int = 0):
        super().__init__()
        self.pool = POOL
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer('projection', torch.randn(3 * POOL * POOL, FEATURE_DIM, generator=generator) / 8)

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        pooled = torch.nn.functional.adaptive_avg_pool2d(images.to(torch.float32) / 255, self.pool).flatten(1)
        features = torch.tanh(pooled @ self.projection)
        if return_features:
            return features
        return features.sum(dim=1, keepdim=True)


def save_standin_detector(path, seed: int = 0) -> str:
    """Script the stand-in and save it as a TorchScript archive at `path`; returns str(path)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)     # torch.jit.script: still how TorchScript is made
        torch.jit.save(torch.jit.script(StandInDetector(seed)), str(path))
    return str(path)


def standin_features_numpy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """The stand-in's features computed with NumPy (float64): images uint8 [N, 3, H, W], H and W multiples of 8."""
    projection = StandInDetector(seed).projection.double().numpy()
    n, c, h, w = images.shape
    pooled = images.astype(np.float64).reshape(n, c, POOL, h // POOL, POOL, w // POOL).mean(axis=(3, 5)) / 255
    return np.tanh(pooled.reshape(n, -1) @ projection)
