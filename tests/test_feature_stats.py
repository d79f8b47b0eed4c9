"""metrics.feature_stats: batches split over processes come back whole and in item order (two real gloo
processes), and real statistics are cached on disk."""
import datetime
import json
import os

import numpy as np
import pytest
import torch

from metrics import feature_stats
from multiprocess_testing import run_processes
from torch_utils.distributed import DistContext, join_process_group


def _rows(batch_index, start, stop, dtype=torch.float64):
    """Rows that encode their own item index: [k, k^2, batch index]."""
    k = torch.arange(start, stop, dtype=dtype)
    return torch.stack([k, k * k, torch.full_like(k, batch_index)], dim=1)


def _expected(num_items, batch_size):
    k = np.arange(num_items, dtype=np.float64)
    return np.stack([k, k * k, k // batch_size], axis=1)


def test_single_process_map_covers_every_item_in_order():
    out = feature_stats.distributed_map(10, 3, DistContext.single('cpu'), _rows)
    assert out.dtype == torch.float64
    np.testing.assert_array_equal(out.numpy(), _expected(10, 3))


def test_map_checks_the_batch_shape():
    with pytest.raises(ValueError, match=r'expected float32 or float64 \[3, D\]'):
        feature_stats.distributed_map(6, 3, DistContext.single('cpu'), lambda j, a, b: torch.zeros(2, 4))
    with pytest.raises(ValueError, match='num_items'):
        feature_stats.distributed_map(0, 3, DistContext.single('cpu'), _rows)


def _gather_worker(rank, tmp_dir, world_size):
    """Two cases: 7 items in batches of 2 (ranks get 2 and 2 batches, the last one short), and 2 items in one
    batch (rank 1 has nothing); plus the rank-0 cache flag."""
    join_process_group('gloo', f'file://{tmp_dir}/rendezvous', rank, world_size, timeout=datetime.timedelta(seconds=30))
    ctx = DistContext(rank=rank, world_size=world_size, local_rank=rank, device=torch.device('cpu'), backend='gloo')
    seen = []
    uneven = feature_stats.distributed_map(7, 2, ctx, lambda j, a, b: seen.append(j) or _rows(j, a, b, torch.float32))
    idle = feature_stats.distributed_map(2, 4, ctx, _rows)
    computed = []
    cached = feature_stats.cached(os.path.join(tmp_dir, 'cache.npy'), ctx,
                                  lambda: computed.append(rank) or torch.full((2, 2), float(rank)))
    torch.distributed.destroy_process_group()
    result = dict(uneven=uneven.tolist(), dtype=str(uneven.dtype), idle=idle.tolist(), seen=seen,
                  cached=cached.tolist(), computed=computed)
    with open(f'{tmp_dir}/rank{rank}.json', 'w') as f:
        json.dump(result, f)


def test_two_processes_gather_all_rows_in_order(tmp_path):
    np.save(tmp_path / 'cache.npy', np.full((2, 2), 7.0))     # present: every rank loads it, nobody computes
    results = run_processes(_gather_worker, tmp_path)
    assert [r['seen'] for r in results] == [[0, 2], [1, 3]]
    for r in results:
        np.testing.assert_array_equal(r['uneven'], _expected(7, 2))
        np.testing.assert_array_equal(r['idle'], _expected(2, 4))
        assert r['dtype'] == 'torch.float32'
        assert r['cached'] == [[7.0, 7.0], [7.0, 7.0]] and r['computed'] == []


def test_cache_is_written_once_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path))
    path = feature_stats.cache_file('set-detector', dict(a=1, b=[2, 3]))
    assert path.startswith(str(tmp_path / 'gan-metrics')) and path.endswith('.npy')
    assert path == feature_stats.cache_file('set-detector', dict(b=[2, 3], a=1))
    assert path != feature_stats.cache_file('set-detector', dict(a=2, b=[2, 3]))
    ctx, calls = DistContext.single('cpu'), []
    first = feature_stats.cached(path, ctx, lambda: calls.append(1) or torch.arange(6.0).view(3, 2))
    second = feature_stats.cached(path, ctx, lambda: calls.append(2) or torch.zeros(3, 2))
    assert calls == [1] and np.array_equal(first, second) and np.array_equal(second, np.arange(6.0).reshape(3, 2))
    assert np.array_equal(feature_stats.cached(None, ctx, lambda: torch.ones(1, 1)), [[1.0]])
