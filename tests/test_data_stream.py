"""training/data_stream.py: the infinite data order, micro-batch slicing and counter-seeded randomness."""
import numpy as np
import pytest
import torch

from training import data_stream as ds


def _stream(seed, num_items, epochs):
    """The infinite stream built independently: concatenated epoch permutations."""
    return np.concatenate([ds.epoch_permutation(seed, e, num_items) for e in range(epochs)])


@pytest.mark.parametrize('num_items, batch', [(12, 4), (10, 4), (3, 8)])
def test_global_batches_walk_through_seeded_epoch_permutations(num_items, batch):
    stream = _stream(5, num_items, 5 * batch // num_items + 1)
    for e in range(3):
        assert sorted(ds.epoch_permutation(5, e, num_items)) == list(range(num_items))
    assert not np.array_equal(ds.epoch_permutation(5, 0, num_items), ds.epoch_permutation(5, 1, num_items))
    for step in range(5):
        expected = stream[step * batch:(step + 1) * batch]
        assert np.array_equal(ds.global_batch_indices(5, step, batch, num_items), expected)
    assert not np.array_equal(ds.global_batch_indices(5, 0, batch, num_items),
                              ds.global_batch_indices(6, 0, batch, num_items))


def test_one_process_with_accumulation_sees_the_micro_batches_of_two_processes():
    one = ds.MicroBatchSampler(10, seed=1, batch=4, batch_gpu=2, rank=0, world_size=1)
    ranks = [ds.MicroBatchSampler(10, seed=1, batch=4, batch_gpu=2, rank=r, world_size=2) for r in range(2)]
    for step in range(4):
        accumulated = one.step_micro_batches(step)
        assert accumulated == [ranks[0].step_micro_batches(step)[0], ranks[1].step_micro_batches(step)[0]]
        assert sum(accumulated, []) == ds.global_batch_indices(1, step, 4, 10).tolist()


def test_sampler_is_resumable_at_any_step():
    full = iter(ds.MicroBatchSampler(7, seed=2, batch=6, batch_gpu=3, rank=0, world_size=1))
    first = [next(full) for _ in range(10)]
    resumed = iter(ds.MicroBatchSampler(7, seed=2, batch=6, batch_gpu=3, rank=0, world_size=1, start_step=3))
    assert [next(resumed) for _ in range(4)] == first[6:10]        # 2 micro-batches per step
    with pytest.raises(ValueError, match='not a multiple'):
        ds.MicroBatchSampler(7, seed=2, batch=6, batch_gpu=4, rank=0, world_size=1)


def test_generated_draws_depend_only_on_their_counters():
    z = ds.gen_z(3, 7, 1, 4096, 8)
    assert z.dtype == torch.float32 and z.shape == (4096, 8)
    assert torch.equal(z, ds.gen_z(3, 7, 1, 4096, 8))
    assert abs(float(z.mean())) < 0.05 and abs(float(z.std()) - 1) < 0.05
    assert not torch.equal(ds.gen_z(3, 7, 2, 4, 8), ds.gen_z(3, 7, 1, 4, 8))
    assert not torch.equal(ds.gen_z(3, 8, 1, 4, 8), ds.gen_z(3, 7, 1, 4, 8))
    items = ds.gen_items(3, 7, 1, 5000, 10)
    assert np.array_equal(items, ds.gen_items(3, 7, 1, 5000, 10))
    assert items.min() == 0 and items.max() == 9
    assert np.abs(np.bincount(items, minlength=10) / 5000 - 0.1).max() < 0.03


def test_micro_batch_rng_is_seeded_by_counters_and_restores_the_global_state():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    with ds.micro_batch_rng(0, 5, 1, 2, torch.device('cpu')):
        a = torch.randn(3)
    assert torch.equal(torch.get_rng_state(), before)
    with ds.micro_batch_rng(0, 5, 1, 2, 'cpu'):
        assert torch.equal(torch.randn(3), a)
    seeds = {ds.micro_batch_seed(0, 5, 1, m) for m in range(4)} | {ds.micro_batch_seed(0, 5, 2, 2)}
    assert len(seeds) == 5 and all(0 <= s < 2 ** 63 for s in seeds)


class _Items(torch.utils.data.Dataset):
    """Item i -> (uint8 [1, 2, 2] filled with i, uint8 mask, camera [25] = i, pose [6] = -i)."""

    def __len__(self):
        return 9

    def __getitem__(self, i):
        return (np.full((1, 2, 2), i, np.uint8), np.full((1, 2, 2), 255, np.uint8),
                np.full(25, i, np.float32), np.full(6, -i, np.float32))

    def get_label(self, i):
        return np.full(25, i, np.float32)

    def get_pose(self, i):
        return np.full(6, -i, np.float32)


@pytest.mark.parametrize('workers', [0, 2])
def test_real_batches_follow_the_sampler_with_and_without_workers(workers):
    sampler = ds.MicroBatchSampler(9, seed=4, batch=4, batch_gpu=2, rank=1, world_size=2, start_step=2)
    batches = ds.real_batches(_Items(), sampler, workers)
    expected = iter(ds.MicroBatchSampler(9, seed=4, batch=4, batch_gpu=2, rank=1, world_size=2, start_step=2))
    for _ in range(5):
        image, mask, camera, pose = next(batches)
        indices = next(expected)
        assert image.dtype == torch.uint8 and image.shape == (2, 1, 2, 2) and mask.shape == (2, 1, 2, 2)
        assert image[:, 0, 0, 0].tolist() == indices and camera[:, 0].tolist() == indices
    cameras, poses = ds.gen_conditioning(_Items(), np.array([3, 1]))
    assert cameras.shape == (2, 25) and torch.equal(poses[:, 0], torch.tensor([-3.0, -1.0]))
