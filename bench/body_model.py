"""Time BodyModel.posed_vertices (neck + head LBS of the 6890-vertex body) on the CPU.

Usage (from the repository root; see scripts/env.sh for the allocator setting):

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \\
        python bench/body_model.py [--batch 32] [--warmup 3] [--runs 20] [--smpl DIR] [--threads N]

Prints the median wall time in ms of the no-grad forward and of forward+backward w.r.t. the
pose. Without --smpl it uses the portrait3d procedural body (a stand-in for SMPL, zero posedirs;
the pose blend-shape matmul runs all the same, so the cost equals SMPL's).
"""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.deformation.body_model import BodyModel  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--batch', type=int, default=32)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--runs', type=int, default=20)
    parser.add_argument('--smpl', default=None, help='SMPL folder or file (default: the procedural stand-in)')
    parser.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch default)')
    return parser.parse_args(argv)


def _median_ms(step, warmup: int, runs: int) -> float:
    """Median wall time of `step()` in milliseconds."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main(argv=None):
    """Run the benchmark and print one line per measurement."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    body = BodyModel.from_path(args.smpl) if args.smpl else BodyModel.procedural()
    pose = torch.randn(args.batch, 6, generator=torch.Generator().manual_seed(0)) * 0.3

    def forward():
        """One posing pass without autograd."""
        with torch.no_grad():
            body.posed_vertices(pose)

    def forward_backward():
        """One posing pass and the backward pass to the pose."""
        trainable = pose.clone().requires_grad_(True)
        body.posed_vertices(trainable).square().sum().backward()

    print(f'posed_vertices B={args.batch} V={body.num_vertices} threads={torch.get_num_threads()}')
    print(f'  forward (no grad):  {_median_ms(forward, args.warmup, args.runs):7.2f} ms')
    print(f'  forward + backward: {_median_ms(forward_backward, args.warmup, args.runs):7.2f} ms')


if __name__ == '__main__':
    main()
