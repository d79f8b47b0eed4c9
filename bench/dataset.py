"""Benchmark PortraitDataset reading speed (items/s in one process) and print the figures.

    python bench/dataset.py                         # builds a temporary 64x64 zip of 2000 images
    python bench/dataset.py --path data/images.zip --mask-path data/masks.zip
"""
import os
import sys
import tempfile
import time

import click
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from portrait_data.labels import labels_to_json  # noqa: E402
from portrait_data.portrait import PortraitDataset  # noqa: E402
from portrait_data.writer import DatasetWriter  # noqa: E402
from training import cameras  # noqa: E402


def build(folder: str, count: int, resolution: int) -> tuple:
    """Write a zip of `count` smooth noisy RGB images + masks + labels; return both paths."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:resolution, 0:resolution] / resolution
    yaws = rng.uniform(-np.pi, np.pi, count)
    camera = cameras.camera_vector(yaws, np.pi / 2).numpy()
    labels = {}
    images, masks = os.path.join(folder, 'images.zip'), os.path.join(folder, 'masks.zip')
    with DatasetWriter(images) as image_writer, DatasetWriter(masks) as mask_writer:
        for k in range(count):
            phase = rng.uniform(0, 6, 3)
            base = np.stack([np.sin(x * 7 + phase[0]), np.cos(y * 5 + phase[1]), np.sin((x + y) * 3 + phase[2])], -1)
            image = np.clip(base * 90 + 128 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
            mask = (((x - 0.5) ** 2 + (y - 0.6) ** 2) < 0.12).astype(np.uint8) * 255
            name = f'{k // 1000:05d}/img{k:08d}.png'
            image_writer.write_image(name, image)
            mask_writer.write_image(name, mask)
            labels[name] = np.concatenate([camera[k], rng.normal(0, 0.1, 6)])
        image_writer.write_json('dataset.json', labels_to_json(labels))
    return images, masks


def items_per_second(ds: PortraitDataset, order: np.ndarray, repeats: int) -> float:
    """Best of `repeats` passes over `order`: items per second."""
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for i in order:
            ds[int(i)]
        best = max(best, len(order) / (time.perf_counter() - start))
    return best


def report(path: str, mask_path: str, repeats: int) -> None:
    """Print init time and read throughput for the common option sets."""
    for label, kwargs in [('images only', {}), ('images + masks', {'mask_path': mask_path}),
                          ('images + masks, xflip', {'mask_path': mask_path, 'xflip': True})]:
        start = time.perf_counter()
        ds = PortraitDataset(path, **kwargs)
        init = time.perf_counter() - start
        n = len(ds)
        sequential = items_per_second(ds, np.arange(n), repeats)
        shuffled = items_per_second(ds, np.random.default_rng(0).permutation(n), repeats)
        print(f'{label:24s} {n:6d} items at {ds.resolution}x{ds.resolution}: init {init * 1e3:7.1f} ms '
              f'({init / ds.stats["images"] * 1e6:5.1f} us/image), sequential {sequential:7.0f} items/s, '
              f'shuffled {shuffled:7.0f} items/s')
    start = time.perf_counter()
    PortraitDataset(path, mask_path=mask_path, skip_bad=True)
    print(f'{"skip_bad full decode":24s} init {(time.perf_counter() - start) * 1e3:7.1f} ms')


@click.command()
@click.option('--path', type=click.Path(exists=True), help='Existing image zip/folder (default: build one)')
@click.option('--mask-path', type=click.Path(exists=True), help='Existing mask zip/folder')
@click.option('--count', type=int, default=2000, show_default=True, help='Images of the generated zip')
@click.option('--resolution', type=int, default=64, show_default=True, help='Side of the generated images')
@click.option('--repeats', type=int, default=3, show_default=True, help='Timed passes (best is reported)')
def main(path, mask_path, count, resolution, repeats):
    """Measure dataset reading speed."""
    if path is not None:
        report(path, mask_path, repeats)
        return
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        images, masks = build(folder, count, resolution)
        print(f'built {count} images at {resolution}x{resolution} in {time.perf_counter() - start:.1f} s '
              f'({os.path.getsize(images) / count / 1e3:.1f} kB/image)')
        report(images, masks, repeats)


if __name__ == '__main__':
    main()
