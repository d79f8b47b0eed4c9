"""Throughput of the synthetic portrait renderer and of the full sample generator (images/s).

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
        python -m bench.synthetic --threads=2        # from the repository root

Prints, per resolution, the best of `--repeats` wall-clock timings for `render` (a batch of
identities, cameras and poses drawn as `generate` draws them) and for `generate` end to end
(sampling, rendering, uint8 conversion). Other jobs on the machine lower the figures; the best
of several repeats is the closest to an idle machine.
"""
import time

import click
import torch

from portrait_data import synthetic


def _best_time(fn, repeats: int) -> float:
    """The fastest of `repeats` wall-clock timings (seconds) of fn(), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@click.command()
@click.option('--resolutions', default='64,128', show_default=True, help='Comma-separated image sizes')
@click.option('--images', type=int, default=256, show_default=True, help='Images per timed call')
@click.option('--threads', type=int, default=2, show_default=True, help='torch.set_num_threads')
@click.option('--repeats', type=int, default=5, show_default=True, help='Timed calls; the best is shown')
def main(resolutions, images, threads, repeats):
    """Print images/s of `render` and `generate` at each resolution."""
    torch.set_num_threads(threads)
    identity, camera, pose = synthetic.sample_batch(torch.Generator().manual_seed(0), images, 'uniform')
    print(f'{threads} threads, {images} images per call, best of {repeats}')
    for resolution in (int(r) for r in resolutions.split(',')):
        for name, fn in (('render', lambda: synthetic.render(identity, camera, pose, resolution)),
                         ('generate', lambda: list(synthetic.generate(images, resolution)))):
            print(f'{resolution:4d}^2  {name:8s} {images / _best_time(fn, repeats):7.1f} img/s')


if __name__ == '__main__':
    main()
