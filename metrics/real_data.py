"""Real images for the metrics: the dataset opened the way a metric needs it, and D's input built as in training.

A metric opens the training set's kwargs (PortraitDataset arguments, optionally with EG3D's
`class_name`) with its own x-flip choice, every image (no `max_size` subset, no back-view repeats:
the statistics describe the data, not the training sampler), and checks that the images have the
generator's resolution.
"""
import inspect
import os
from typing import Mapping, Optional, Tuple

import numpy as np
import torch

from portrait_data.portrait import PortraitDataset
from training.loss import real_inputs

DATASET_CLASS = 'portrait_data.portrait.PortraitDataset'
DATASET_ARGS = frozenset(inspect.signature(PortraitDataset.__init__).parameters) - {'self'}
IMG_CHANNELS = 3


class MetricInputError(ValueError):
    """Metric inputs that do not fit together (dataset vs network, missing D, ...); one-line message."""


def open_dataset(dataset_kwargs: Optional[Mapping], resolution: int, xflip: bool) -> PortraitDataset:
    """PortraitDataset of `dataset_kwargs` with x-flip `xflip`, all images, checked to be RGB at `resolution`."""
    kwargs = dict(dataset_kwargs or {})
    class_name = kwargs.pop('class_name', DATASET_CLASS)
    if class_name != DATASET_CLASS:
        raise MetricInputError(f'dataset_kwargs: class_name {class_name!r} is not {DATASET_CLASS}')
    unknown = sorted(set(kwargs) - DATASET_ARGS)
    if unknown or not kwargs.get('path'):
        problem = f'unknown keys {unknown}' if unknown else 'no dataset path'
        raise MetricInputError(f'dataset_kwargs: {problem} (expected PortraitDataset arguments: '
                               f'{", ".join(sorted(DATASET_ARGS))})')
    kwargs.update(xflip=xflip, back_share=0.0, max_size=None, resolution=None)
    dataset = PortraitDataset(**kwargs)
    side = dataset.resolution
    if side != resolution:
        raise MetricInputError(f'{kwargs["path"]}: images are {side}x{side} but the generator renders '
                               f'{resolution}x{resolution} (img_resolution); give a dataset at that resolution')
    if dataset.num_channels != IMG_CHANNELS:
        raise MetricInputError(f'{kwargs["path"]}: images have {dataset.num_channels} channel(s); expected RGB')
    return dataset


def dataset_fingerprint(dataset_kwargs: Mapping) -> dict:
    """Absolute path, size and modification time of the image source (part of cached-statistics keys)."""
    path = os.path.abspath(dataset_kwargs['path'])
    stat = os.stat(path)
    return dict(path=path, size=stat.st_size, mtime_ns=stat.st_mtime_ns)


def subset_indices(num_items: int, max_items: Optional[int], seed: int = 0) -> np.ndarray:
    """Item indices [n]: all items, or a seeded random subset of `max_items` in increasing order."""
    if max_items is None or max_items >= num_items:
        return np.arange(num_items)
    return np.sort(np.random.default_rng(seed).permutation(num_items)[:max_items])


def load_items(dataset: PortraitDataset, indices) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Items -> (images uint8 [n, 3, R, R], masks uint8 [n, 1, R, R], cameras float32 [n, 25], poses float32 [n, 6])."""
    items = [dataset[int(i)] for i in indices]
    return tuple(torch.from_numpy(np.stack([item[k] for item in items])) for k in range(4))


def load_labels(dataset: PortraitDataset, indices) -> Tuple[torch.Tensor, torch.Tensor]:
    """(cameras float32 [n, 25], poses float32 [n, 6]) of items, without decoding images."""
    cameras = np.stack([dataset.get_label(int(i)) for i in indices])
    poses = np.stack([dataset.get_pose(int(i)) for i in indices])
    return torch.from_numpy(cameras), torch.from_numpy(poses)


def d_real_input(images: torch.Tensor, masks: torch.Tensor, neural_rendering_resolution: int) -> dict:
    """D's input dict for real images, built by the training loss's own `real_inputs` (system.md §5).

    images uint8 [n, 3, R, R], masks uint8 [n, 1, R, R] (255 = person) -> dict(image float32 in
    [-1, 1] [n, 3, R, R], image_raw [n, 3, r, r] and image_mask in [0, 1] [n, 1, r, r], both resized
    (bilinear, antialiased) to the neural rendering resolution r).
    """
    image = images.to(torch.float32) / 127.5 - 1
    return real_inputs(image, masks.to(torch.float32) / 255, neural_rendering_resolution, requires_grad=False)
