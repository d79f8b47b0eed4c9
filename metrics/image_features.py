"""Detector features of real and generated images (the inputs of FID and KID)."""
import numpy as np

from metrics import feature_stats
from metrics.generation import generate_batch, to_uint8
from metrics.options import MetricOptions
from metrics.real_data import dataset_fingerprint, load_items, subset_indices


def real_features(opts: MetricOptions, dataset, max_items=None) -> np.ndarray:
    """Features [n, D] of the real images (all, or a seeded subset of `max_items`), cached across runs.

    The cache key holds the dataset file (path, size, mtime), its x-flip, the subset and the
    detector's md5, so a changed dataset or detector is recomputed.
    """
    detector = opts.feature_detector()
    indices = subset_indices(len(dataset), max_items)
    key = dict(dataset=dataset_fingerprint(opts.dataset_kwargs), xflip=dataset.stats['xflip'], items=len(dataset),
               max_items=max_items, resolution=dataset.resolution, detector=detector.identity)
    path = feature_stats.cache_file(f'{dataset.name}-{detector.name}', key)

    def batch_features(batch_index, start, stop):
        """Detector features of real items indices[start:stop]."""
        images = load_items(dataset, indices[start:stop])[0]
        return detector(images).cpu()

    return feature_stats.cached(path, opts.ctx, lambda: feature_stats.distributed_map(
        len(indices), opts.batch_size, opts.ctx, batch_features))


def generated_features(opts: MetricOptions, dataset, num_gen: int) -> np.ndarray:
    """Features [num_gen, D] of fakes rendered with cameras (and D_predict poses) from `dataset`."""
    detector, D = opts.feature_detector(), opts.generation_D()

    def batch_features(batch_index, start, stop):
        """Detector features of generated batch `batch_index`."""
        out = generate_batch(opts.G, D, dataset, batch_index, stop - start, opts.generation, opts.device)
        return detector(to_uint8(out['image'])).cpu()

    return feature_stats.distributed_map(num_gen, opts.batch_size, opts.ctx, batch_features).numpy()
