"""The training data order and every random draw of a step, as pure functions of counters.

Step `s` (the loop's `batch_idx`: optimiser steps since the run's counters started, kept in training
states; a start from a network snapshot begins at 0) consumes the global batch of `batch` dataset
items at positions [s * batch, (s + 1) * batch) of an infinite stream: epoch e of that stream is a
permutation of the dataset seeded by (seed, e). The global
batch is cut into micro-batches of `batch_gpu` items; global micro-batch m = round * world_size +
rank (the contract's order), so one process with accumulation k sees the same micro-batches, in
the same order, as k processes.

Per phase of a step, the fakes' latent codes `gen_z` and the dataset items that lend the fakes
their camera and pose (`gen_items`) are drawn for the whole global batch from generators seeded by
(seed, step, phase) and sliced by micro-batch; every micro-batch of a phase then runs with torch's
global generators seeded by (seed, step, phase, m) (`micro_batch_rng`). Nothing depends on how
many steps ran before in this process, so a resumed run needs only the counters.
"""
import contextlib
from typing import Iterator, List

import numpy as np
import torch

# Stream tags: separate the independent random streams drawn from one (seed, counters) tuple.
TAG_ORDER, TAG_GEN_Z, TAG_GEN_ITEMS, TAG_MICRO = 0, 1, 2, 3


def _rng(*key: int) -> np.random.Generator:
    """A NumPy generator seeded by the non-negative integers `key` (SeedSequence entropy)."""
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def epoch_permutation(seed: int, epoch: int, num_items: int) -> np.ndarray:
    """The order int64 [num_items] of epoch `epoch` of the infinite stream."""
    return _rng(TAG_ORDER, seed, epoch).permutation(num_items)


def global_batch_indices(seed: int, step: int, batch: int, num_items: int) -> np.ndarray:
    """Dataset indices int64 [batch] of step `step`'s global batch (may span several epochs)."""
    if num_items < 1:
        raise ValueError('dataset: no items to draw a batch from')
    positions = np.arange(step * batch, (step + 1) * batch, dtype=np.int64)
    epochs = positions // num_items
    out = np.empty(batch, dtype=np.int64)
    for epoch in np.unique(epochs):
        where = epochs == epoch
        out[where] = epoch_permutation(seed, int(epoch), num_items)[positions[where] % num_items]
    return out


def micro_batch_slice(micro: int, batch_gpu: int) -> slice:
    """Rows of global micro-batch `micro` inside a global batch."""
    return slice(micro * batch_gpu, (micro + 1) * batch_gpu)


def micro_index(accumulation_round: int, rank: int, world_size: int) -> int:
    """Global micro-batch index m = round * world_size + rank (contract order)."""
    return accumulation_round * world_size + rank


def gen_z(seed: int, step: int, phase: int, batch: int, z_dim: int) -> torch.Tensor:
    """Latent codes float32 [batch, z_dim] ~ N(0, 1) of phase `phase` at step `step` (CPU)."""
    return torch.from_numpy(_rng(TAG_GEN_Z, seed, step, phase).standard_normal((batch, z_dim), dtype=np.float32))


def gen_items(seed: int, step: int, phase: int, batch: int, num_items: int) -> np.ndarray:
    """Dataset indices int64 [batch] (uniform, with replacement) lending the fakes their camera and pose."""
    return _rng(TAG_GEN_ITEMS, seed, step, phase).integers(0, num_items, size=batch)


def micro_batch_seed(seed: int, step: int, phase: int, micro: int) -> int:
    """A 63-bit torch seed for global micro-batch `micro` of phase `phase` at step `step`."""
    state = np.random.SeedSequence([TAG_MICRO, int(seed), int(step), int(phase), int(micro)]).generate_state(2)
    return int((int(state[0]) << 32 | int(state[1])) & (2 ** 63 - 1))


@contextlib.contextmanager
def micro_batch_rng(seed: int, step: int, phase: int, micro: int, device: torch.device):
    """Run the block with torch's CPU generator (and `device`'s, if not the CPU) seeded by the counters.

    The generators' previous states are restored afterwards (torch.random.fork_rng).
    """
    device = torch.device(device)
    devices = [] if device.type == 'cpu' else [device.index or 0]
    device_type = 'cuda' if device.type == 'cpu' else device.type
    with torch.random.fork_rng(devices=devices, device_type=device_type):
        torch.manual_seed(micro_batch_seed(seed, step, phase, micro))
        yield


class MicroBatchSampler(torch.utils.data.Sampler):
    """Infinite batch sampler: this rank's micro-batches (lists of dataset indices), step after step.

    For every step from `start_step` on it yields the `accumulation` micro-batches of this rank in
    round order; give it to torch.utils.data.DataLoader as `batch_sampler`.
    """

    def __init__(self, num_items: int, seed: int, batch: int, batch_gpu: int, rank: int, world_size: int,
                 start_step: int = 0):
        if batch % (batch_gpu * world_size):
            raise ValueError(f'batch {batch} is not a multiple of batch_gpu {batch_gpu} x world_size {world_size}')
        self.num_items, self.seed, self.batch, self.batch_gpu = num_items, seed, batch, batch_gpu
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.accumulation = batch // (batch_gpu * world_size)

    def step_micro_batches(self, step: int) -> List[List[int]]:
        """This rank's micro-batches of step `step`, in accumulation-round order."""
        indices = global_batch_indices(self.seed, step, self.batch, self.num_items)
        return [indices[micro_batch_slice(micro_index(r, self.rank, self.world_size), self.batch_gpu)].tolist()
                for r in range(self.accumulation)]

    def __iter__(self) -> Iterator[List[int]]:
        step = self.start_step
        while True:
            yield from self.step_micro_batches(step)
            step += 1


def real_batches(dataset, sampler: MicroBatchSampler, workers: int, pin_memory: bool = False):
    """Iterator of this rank's micro-batches: (image uint8 [n, C, R, R], mask uint8 [n, 1, R, R],
    camera float32 [n, 25], pose float32 [n, 6]) CPU tensors, in sampler order."""
    loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin_memory,
                                         prefetch_factor=2 if workers > 0 else None, persistent_workers=workers > 0)
    return iter(loader)


def gen_conditioning(dataset, items: np.ndarray):
    """(camera float32 [n, 25], pose float32 [n, 6]) CPU tensors of dataset items `items` (labels only)."""
    cameras = np.stack([dataset.get_label(int(i)) for i in items])
    poses = np.stack([dataset.get_pose(int(i)) for i in items])
    return torch.from_numpy(cameras), torch.from_numpy(poses)
