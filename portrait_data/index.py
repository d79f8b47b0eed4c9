"""The item index of a dataset: max_size subsampling, back-view rebalancing, x-flip doubling."""
import math
from typing import Optional, Tuple

import numpy as np

from portrait_data.errors import DatasetError


def subsample(num_images: int, max_size: Optional[int], rng: np.random.Generator) -> np.ndarray:
    """Sorted raw indices int64 [min(N, max_size)]: a seeded random subset when max_size < N."""
    raw = np.arange(num_images, dtype=np.int64)
    if max_size is None or max_size >= num_images:
        return raw
    if max_size < 1:
        raise ValueError(f'max_size: expected a positive number of images, got {max_size}')
    return np.sort(rng.permutation(raw)[:max_size])


def back_entries_needed(num_back: int, num_front: int, share: float) -> int:
    """Smallest count m of back-view entries with m / (m + num_front) >= share (m >= num_back)."""
    exact = share * num_front / (1.0 - share)
    needed = math.ceil(exact - 1e-9 * max(1.0, exact))  # round-off slack: 0.4 * 9 / 0.6 must give 6, not 7
    return max(num_back, needed)


def rebalance_back_views(raw: np.ndarray, is_back: np.ndarray, share: float,
                         rng: np.random.Generator) -> Tuple[np.ndarray, int]:
    """Repeat back-view images until they make up at least `share` of the index.

    raw: int64 [N] raw indices; is_back: bool [N] (same order). Every back view is repeated
    floor or ceil of the same factor (which ones get the extra copy is seeded). Returns the
    sorted index int64 [N + repeats] and the number of added entries.
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f'back_share: expected a fraction in [0, 1), got {share}')
    back = raw[is_back]
    num_back, num_front = len(back), len(raw) - len(back)
    extra = back_entries_needed(num_back, num_front, share) - num_back
    if extra == 0:
        return raw, 0
    if num_back == 0:
        raise DatasetError(f'back_share={share}: the dataset has no back views (|yaw - pi/2| >= pi/2) to repeat')
    copies, remainder = divmod(extra, num_back)
    added = np.concatenate([np.tile(back, copies), rng.permutation(back)[:remainder]])
    return np.sort(np.concatenate([raw, added])), int(extra)


def with_xflip(raw: np.ndarray, xflip: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(raw index int64 [M], flip flag bool [M]); with xflip the second half repeats raw, flipped."""
    flags = np.zeros(len(raw), dtype=bool)
    if not xflip:
        return raw, flags
    return np.concatenate([raw, raw]), np.concatenate([flags, ~flags])
