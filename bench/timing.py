"""Shared timing helper for the benchmark scripts."""
import statistics
import time

import torch


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on asynchronous devices (CUDA); nothing to do on the CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def median_seconds(fn, device: torch.device, warmup: int, runs: int) -> float:
    """Median wall time of fn() in seconds over `runs` calls, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)
