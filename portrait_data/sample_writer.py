"""Writing a stream of rendered samples as a dataset: `dataset_tool.py synthetic`.

A sample has .name (relative path ending in .png), .image uint8 [R, R, 3], .mask uint8 [R, R]
(255 = person), .camera float [25] and .pose float [6] (the label layout of portrait_data/labels.py).
"""
import importlib
import os
from contextlib import ExitStack
from typing import Iterable, List, Tuple

import numpy as np
from tqdm import tqdm

from portrait_data import images as img_io
from portrait_data.errors import DatasetError
from portrait_data.labels import CAMERA_DIM, FIELDS, LABELS_FILE, POSE_DIM, check_labels, checked_labels_json
from portrait_data.writer import WriteSummary, check_destination, enter_writers

OUTDIR_FILES = ('images.zip', 'masks.zip')  # what `dataset_tool.py synthetic --outdir` writes


def _check_sample(sample, resolution: int, where: str) -> np.ndarray:
    """Check one sample's arrays (shapes, dtypes, finite labels); return its label float64 [31]."""
    expected = {'image': ((resolution, resolution, 3), np.uint8), 'mask': ((resolution, resolution), np.uint8),
                'camera': ((CAMERA_DIM,), None), 'pose': ((POSE_DIM,), None)}
    for field, (shape, dtype) in expected.items():
        value = np.asarray(getattr(sample, field))
        if value.shape != shape or (dtype is not None and value.dtype != dtype):
            raise DatasetError(f'{where}: {field}: expected {np.dtype(dtype or np.float32).name} {list(shape)}, '
                               f'got {value.dtype.name} {list(value.shape)}')
    label = np.concatenate([np.asarray(sample.camera, np.float64), np.asarray(sample.pose, np.float64)])
    if not np.isfinite(label).all():
        raise DatasetError(f'{where}: camera/pose: contains non-finite values')
    return label


def write_samples(samples: Iterable, count: int, resolution: int, dest: str, seg_dest: str,
                  force: bool = False, progress: bool = True, source: str = 'samples') -> WriteSummary:
    """Write samples (.name, .image uint8 [R, R, 3], .mask uint8 [R, R], .camera [25], .pose [6])."""
    names: List[str] = []
    labels: List[np.ndarray] = []
    with ExitStack() as stack:
        image_writer, mask_writer = enter_writers(stack, dest, seg_dest, force)
        for sample in tqdm(samples, total=count, desc='synthetic', unit='img', disable=not progress):
            name = getattr(sample, 'name', None)
            if not isinstance(name, str) or not name.lower().endswith('.png'):
                raise DatasetError(f'{source}: sample {len(names)}: name: expected a relative path ending in .png, got {name!r}')
            labels.append(_check_sample(sample, resolution, f"{source}: '{name}'"))
            image_writer.write_image(name, sample.image)
            mask_writer.write_image(name, sample.mask)
            names.append(name)
        if len(names) != count:
            raise DatasetError(f'{source}: produced {len(names)} samples; expected {count}')
        check_labels(np.stack(labels), names, source, {field: field for field in FIELDS})
        where = f'{image_writer.dest}:{LABELS_FILE}'
        image_writer.write_json(LABELS_FILE, checked_labels_json(dict(zip(names, labels)), where))
    return WriteSummary(count, resolution, image_writer.dest, mask_writer.dest)


def synthetic_destinations(outdir: str) -> Tuple[str, str]:
    """(image zip, mask zip) paths inside `outdir`."""
    return tuple(os.path.join(outdir, name) for name in OUTDIR_FILES)


def write_synthetic(count: int, resolution: int, seed: int, yaws: str, dest: str, seg_dest: str,
                    force: bool = False, progress: bool = True) -> WriteSummary:
    """The built-in synthetic 360-degree portraits (portrait_data.synthetic.generate) as image + mask zips."""
    img_io.check_resolution((resolution, resolution), '--resolution')
    if count < 1:
        raise DatasetError(f'--count: expected a positive number of images, got {count}')
    for path in (dest, seg_dest):
        check_destination(path, force)
    synthetic = importlib.import_module('portrait_data.synthetic')
    samples = synthetic.generate(num_images=count, resolution=resolution, seed=seed, yaw_distribution=yaws)
    return write_samples(samples, count, resolution, dest, seg_dest, force, progress, 'portrait_data.synthetic')
