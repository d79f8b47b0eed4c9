"""The training dataset: portrait images + segmentation masks + 31-float labels (camera, pose).

Item i -> (image uint8 [C, R, R], mask uint8 [1, R, R] with 255 = person,
           camera float32 [25], pose float32 [6]); see portrait_data/labels.py for the label layout.
"""
import collections
import json
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from portrait_data import images as img_io
from portrait_data import index as index_lib
from portrait_data.archive import Archive
from portrait_data.errors import DatasetError
from portrait_data.labels import (CAMERA_DIM, LABELS_FILE, POSE_DIM, back_view_mask, mirror_label,
                             parse_labels_json, validate_labels)


@dataclass(frozen=True)
class ItemDetails:
    """Where item i comes from: index of the raw image, whether it is mirrored, its relative path."""
    raw_idx: int
    xflip: bool
    name: str


def load_labels_json(archive: Archive, missing_hint: str):
    """The parsed `dataset.json` at the archive root; DatasetError naming it (with `missing_hint` if absent)."""
    where = archive.describe(LABELS_FILE)
    if LABELS_FILE not in archive:
        raise DatasetError(f'{where}: missing ({missing_hint})')
    try:
        return json.loads(archive.read(LABELS_FILE).decode('utf-8'))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f'{where}: not valid JSON: {exc}') from exc


def read_labels(archive: Archive, names: List[str]) -> Dict[str, np.ndarray]:
    """Validated labels {path: float32 [31]} from `dataset.json` at the archive root."""
    where = archive.describe(LABELS_FILE)
    obj = load_labels_json(archive, 'the labels file must sit at the root of the zip or folder')
    return validate_labels(parse_labels_json(obj, where), names, where)


class PortraitDataset(torch.utils.data.Dataset):
    """Labelled portraits from an uncompressed zip or a folder, with masks from a parallel one.

    path:       zip or folder of square power-of-two PNG/JPEG images plus `dataset.json`.
    mask_path:  zip or folder of masks paired BY RELATIVE PATH ('a/b.png' <-> 'a/b.png'; a .jpg
                image may pair with a .png mask of the same stem). None -> every item's mask is
                all 255 and `has_masks` is False.
    resolution: expected side; None -> the side of the images (all must agree).
    xflip:      double the set; the second half is mirrored (image, mask, camera and pose).
    back_share: repeat back views (|yaw - pi/2| >= pi/2) until they are this share of the index.
    max_size:   keep a seeded random subset of at most this many images (before repeats, x-flip).
    seed:       seed of the subset and of which back views get one extra repeat.
    skip_bad:   decode every image and mask up front; skip unreadable or mis-sized ones and count
                them in `stats['skipped_bad']` (messages in `skipped`). Otherwise only headers are
                checked up front and the first bad file raises DatasetError naming it.
    """

    def __init__(self, path: str, mask_path: Optional[str] = None, resolution: Optional[int] = None,
                 xflip: bool = False, back_share: float = 0.0, max_size: Optional[int] = None,
                 seed: int = 0, skip_bad: bool = False):
        """Index the files, validate labels and headers, and build the item index."""
        self._images = Archive(path)
        self._masks = Archive(mask_path) if mask_path is not None else None
        self.name = os.path.splitext(os.path.basename(self._images.path))[0]
        names = self._images.image_names()
        if not names:
            raise DatasetError(f'{self._images.path}: no PNG or JPEG images')
        labels = read_labels(self._images, names)
        self.skipped: List[str] = []
        self._names, self._mask_names = names, self._pair_masks(names)
        self.resolution, self.num_channels = self._scan_headers(resolution, skip_bad)
        if skip_bad:
            self._decode_all()
        self._labels = np.stack([labels[name] for name in self._names])
        self._labels_mirrored = mirror_label(self._labels)
        self._build_index(xflip, back_share, max_size, seed)

    def _pair_masks(self, names: List[str]) -> Optional[List[str]]:
        """Mask path of each image (None without a mask source); a missing mask is an error."""
        if self._masks is None:
            return None
        pairs = []
        for name in names:
            mask = img_io.mask_name_for(name, self._masks)
            if mask is None:
                raise DatasetError(f"{self._images.describe(name)}: no mask '{name}' in {self._masks.path}")
            pairs.append(mask)
        return pairs

    def _probe(self, k: int) -> Tuple[int, int]:
        """(side, channels) from the headers of image k and its mask; DatasetError on problems."""
        where = self._images.describe(self._names[k])
        with self._images.open(self._names[k]) as f:
            mode, size = img_io.probe(f, where)
        channels = img_io.image_channels(mode, where)
        side = img_io.check_resolution(size, where)
        if self._mask_names is not None:
            mask_where = self._masks.describe(self._mask_names[k])
            with self._masks.open(self._mask_names[k]) as f:
                mask_mode, mask_size = img_io.probe(f, mask_where, 'mask')
            img_io.check_mask_mode(mask_mode, mask_where)
            if mask_size != size:
                raise DatasetError(f'{mask_where}: mask is {mask_size[0]}x{mask_size[1]} but its image is {side}x{side}')
        return side, channels

    def _scan_headers(self, resolution: Optional[int], skip_bad: bool) -> Tuple[int, int]:
        """Check every header; return the dataset (resolution, channels) and drop/raise on outliers."""
        probed = {}
        for k in range(len(self._names)):
            try:
                probed[k] = self._probe(k)
            except DatasetError as exc:
                if not skip_bad:
                    raise
                self.skipped.append(str(exc))
        if not probed:
            raise DatasetError(f'{self._images.path}: no readable images ({len(self.skipped)} skipped)')
        common = collections.Counter(probed.values()).most_common(1)[0][0]
        expected = (resolution if resolution is not None else common[0], common[1])
        reason = f'resolution={resolution} was requested' if resolution is not None else 'like most images'
        keep = []
        for k, (side, channels) in probed.items():
            if (side, channels) == expected:
                keep.append(k)
                continue
            message = (f'{self._images.describe(self._names[k])}: image is {side}x{side} with {channels} channel(s); '
                       f'expected {expected[0]}x{expected[0]} with {expected[1]} channel(s) ({reason})')
            if not skip_bad:
                raise DatasetError(message)
            self.skipped.append(message)
        self._keep(keep)
        return expected

    def _keep(self, kept: List[int]) -> None:
        """Restrict the raw image list to positions `kept`."""
        self._names = [self._names[k] for k in kept]
        if self._mask_names is not None:
            self._mask_names = [self._mask_names[k] for k in kept]
        if not self._names:
            raise DatasetError(f'{self._images.path}: no usable images ({len(self.skipped)} skipped)')

    def _decode_all(self) -> None:
        """Fully decode every image and mask (skip_bad) and drop those that fail."""
        kept = []
        for k in range(len(self._names)):
            try:
                self._load_image(k)
                self._load_mask(k)
                kept.append(k)
            except DatasetError as exc:
                self.skipped.append(str(exc))
        self._keep(kept)

    def _build_index(self, xflip: bool, back_share: float, max_size: Optional[int], seed: int) -> None:
        """Subsample, rebalance back views and x-flip into (self._raw_idx, self._xflip)."""
        rng = np.random.default_rng(seed)
        raw = index_lib.subsample(len(self._names), max_size, rng)
        is_back = back_view_mask(self._labels[raw])
        raw, repeats = index_lib.rebalance_back_views(raw, is_back, back_share, rng)
        self._raw_idx, self._xflip = index_lib.with_xflip(raw, xflip)
        self.stats = {
            'images': len(self._names), 'skipped_bad': len(self.skipped), 'used_images': int(len(is_back)),
            'back_views': int(is_back.sum()), 'back_repeats': repeats, 'xflip': bool(xflip),
            'items': len(self._raw_idx),
        }

    def _load_image(self, raw: int) -> np.ndarray:
        """Decoded image `raw` as uint8 [C, R, R] (DatasetError naming the file on any problem)."""
        name = self._names[raw]
        array = img_io.decode(self._images.read(name), self._images.describe(name))
        if array.ndim == 2:
            array = array[:, :, None]
        if array.shape != (self.resolution, self.resolution, self.num_channels):
            raise DatasetError(f'{self._images.describe(name)}: decoded shape {list(array.shape)}; expected '
                               f'[{self.resolution}, {self.resolution}, {self.num_channels}] (H, W, C)')
        return array.transpose(2, 0, 1)

    def _load_mask(self, raw: int) -> np.ndarray:
        """Mask of image `raw` as uint8 [1, R, R]; all 255 without a mask source."""
        if self._mask_names is None:
            return np.full((1, self.resolution, self.resolution), 255, dtype=np.uint8)
        name = self._mask_names[raw]
        mask = img_io.decode(self._masks.read(name), self._masks.describe(name), 'mask')
        if mask.shape != (self.resolution, self.resolution):
            raise DatasetError(f'{self._masks.describe(name)}: decoded mask shape {list(mask.shape)}; '
                               f'expected [{self.resolution}, {self.resolution}]')
        return mask[None]

    def __len__(self) -> int:
        """Number of items (x-flip and back-view repeats included)."""
        return len(self._raw_idx)

    def __getitem__(self, idx: int):
        """(image uint8 [C, R, R], mask uint8 [1, R, R], camera float32 [25], pose float32 [6])."""
        raw, flip = int(self._raw_idx[idx]), bool(self._xflip[idx])
        image, mask = self._load_image(raw), self._load_mask(raw)
        label = self._labels_mirrored[raw] if flip else self._labels[raw]
        if flip:
            image, mask = image[:, :, ::-1], mask[:, :, ::-1]
        return (np.require(image, requirements='CW'), np.require(mask, requirements='CW'),
                label[:CAMERA_DIM].copy(), label[CAMERA_DIM:].copy())

    def _label(self, idx: int) -> np.ndarray:
        """Label float32 [31] of item `idx` (mirrored for the flipped half)."""
        raw = int(self._raw_idx[idx])
        return self._labels_mirrored[raw] if self._xflip[idx] else self._labels[raw]

    def get_label(self, idx: int) -> np.ndarray:
        """Camera float32 [25] of item `idx` (what G and D are conditioned on)."""
        return self._label(idx)[:CAMERA_DIM].copy()

    def get_pose(self, idx: int) -> np.ndarray:
        """Body pose float32 [6] of item `idx` (neck, head axis-angle)."""
        return self._label(idx)[CAMERA_DIM:].copy()

    def get_details(self, idx: int) -> ItemDetails:
        """Raw image index, x-flip flag and relative path of item `idx`."""
        raw = int(self._raw_idx[idx])
        return ItemDetails(raw_idx=raw, xflip=bool(self._xflip[idx]), name=self._names[raw])

    def label_std(self) -> np.ndarray:
        """Per-component std float32 [25] of the cameras over the items (G's `dataset_label_std`)."""
        labels = np.where(self._xflip[:, None], self._labels_mirrored[self._raw_idx], self._labels[self._raw_idx])
        return labels[:, :CAMERA_DIM].astype(np.float64).std(axis=0).astype(np.float32)

    @property
    def label_dim(self) -> int:
        """Floats of the camera conditioning vector (25)."""
        return CAMERA_DIM

    @property
    def pose_dim(self) -> int:
        """Floats of the body pose (6)."""
        return POSE_DIM

    @property
    def has_masks(self) -> bool:
        """True if masks come from a mask source (False: every mask is all 255)."""
        return self._masks is not None

    @property
    def image_shape(self) -> List[int]:
        """[C, R, R] of every image."""
        return [self.num_channels, self.resolution, self.resolution]

    def close(self) -> None:
        """Close this process's zip handles (they reopen on the next read)."""
        self._images.close()
        if self._masks is not None:
            self._masks.close()
