"""A tiny TorchScript STAND-IN for the Inception feature detector (it is not Inception).

For tests, and for offline checks where the real detector cannot be downloaded (docs/results.md):
FID/KID computed with it are stand-in figures, not comparable with published FIDs.

    python -m metrics.standin_detector OUT.pt [--seed 0]

It follows the detector calling convention of metrics/detector.py: module(images uint8 [N, 3, H, W],
return_features=True) -> float32 features [N, FEATURE_DIM]. Features: 8x8 average pooling of the
image in [0, 1], a fixed random projection, tanh. With return_features=False it returns one
"logit" per image instead, so a loader that forgets the flag fails the shape check.
"""
import argparse
import warnings

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


def main(argv=None) -> None:
    """Write the stand-in detector to the path given on the command line."""
    parser = argparse.ArgumentParser(description='Write the tiny TorchScript stand-in feature detector (not Inception).')
    parser.add_argument('out', help='output .pt path')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random projection')
    args = parser.parse_args(argv)
    print(save_standin_detector(args.out, args.seed))


if __name__ == '__main__':
    main()
