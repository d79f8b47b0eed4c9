"""Tests for torch_utils.training_stats: moments against NumPy, interval semantics, threads, and
the all-reduce across two real gloo processes."""

import datetime
import json
import threading

import numpy as np
import pytest
import torch

from torch_utils import training_stats
from torch_utils.distributed import join_process_group
from multiprocess_testing import run_processes


def _expected(values):
    """(num, mean, population std) computed by NumPy."""
    values = np.asarray(values, dtype=np.float64).ravel()
    return values.size, values.mean(), values.std()


def _assert_stats(collector, name, values):
    num, mean, std = _expected(values)
    assert collector.num(name) == num
    assert collector.mean(name) == pytest.approx(mean, rel=1e-12, abs=1e-12)
    assert collector.std(name) == pytest.approx(std, rel=1e-9, abs=1e-12)


def test_report_accumulates_scalars_arrays_and_tensors():
    rng = np.random.default_rng(0)
    collector = training_stats.Collector(regex=r'mixed/.*')
    a, b = rng.normal(3.0, 2.0, size=(4, 5)), rng.normal(size=7).astype(np.float32)
    values = []
    for value in (1.5, [2, 3], a, torch.from_numpy(b), torch.tensor(4, dtype=torch.int64)):
        assert training_stats.report('mixed/x', value) is value
        values.append(np.asarray(value, dtype=np.float64).ravel())
    training_stats.report('mixed/x', torch.zeros(0))  # empty: adds nothing
    collector.update()
    _assert_stats(collector, 'mixed/x', np.concatenate(values))
    assert collector['mixed/x'] == collector.mean('mixed/x')


def test_report_keeps_the_autograd_graph_intact():
    x = torch.ones(3, requires_grad=True)
    loss = training_stats.report('graph/loss', (x * 2).sum())
    loss.backward()
    assert torch.equal(x.grad, torch.full([3], 2.0))


def test_collector_intervals_regex_and_keep_previous():
    keep = training_stats.Collector(regex=r'interval/.*')
    fresh = training_stats.Collector(regex=r'interval/.*', keep_previous=False)
    only_a = training_stats.Collector(regex=r'interval/a')
    training_stats.report('interval/a', [1.0, 2.0, 3.0])
    training_stats.report('interval/b', [10.0])
    training_stats.report('other/c', 5.0)
    for collector in (keep, fresh, only_a):
        collector.update()
    assert keep.names() == ['interval/a', 'interval/b'] and only_a.names() == ['interval/a']
    _assert_stats(only_a, 'interval/a', [1.0, 2.0, 3.0])
    training_stats.report('interval/a', [5.0, 7.0])
    keep.update(), fresh.update(), only_a.update()
    _assert_stats(keep, 'interval/a', [5.0, 7.0])  # only the latest interval
    _assert_stats(only_a, 'interval/a', [5.0, 7.0])
    _assert_stats(keep, 'interval/b', [10.0])  # kept from the previous interval
    assert fresh.names() == ['interval/a'] and fresh.num('interval/b') == 0
    assert np.isnan(fresh.mean('interval/b')) and np.isnan(fresh.std('interval/b'))
    stats = keep.as_dict()
    assert set(stats) == {'interval/a', 'interval/b'}
    assert stats['interval/a'].num == 2 and stats['interval/a'].mean == 6.0 and stats['interval/a'].std == 1.0


def test_collector_ignores_reports_before_its_creation():
    training_stats.report('early/x', 100.0)
    collector = training_stats.Collector(regex=r'early/.*')
    training_stats.report('early/x', [1.0, 3.0])
    collector.update()
    _assert_stats(collector, 'early/x', [1.0, 3.0])


def test_report0_in_a_single_process_reports():
    collector = training_stats.Collector(regex=r'rank0/.*')
    assert training_stats.report0('rank0/x', 2.5) == 2.5
    collector.update()
    assert collector.num('rank0/x') == 1 and collector.mean('rank0/x') == 2.5


def test_report_is_thread_safe():
    collector = training_stats.Collector(regex=r'threads/.*')
    per_thread = [np.arange(200, dtype=np.float64) + 1000 * index for index in range(4)]

    def work(values):
        for value in values:
            training_stats.report('threads/x', float(value))

    threads = [threading.Thread(target=work, args=(values,)) for values in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    collector.update()
    _assert_stats(collector, 'threads/x', np.concatenate(per_thread))


def _rank_values(rank):
    """Deterministic, rank-specific test values: {name: float64 array}."""
    rng = np.random.default_rng(100 + rank)
    values = {
        'dist/loss': rng.normal(loc=rank * 3.0, scale=1.0 + rank, size=11 + 5 * rank),
        'dist/tensor': rng.uniform(-1.0, 1.0, size=(2, 3 + rank)),
        'dist/rank0': np.array([7.0 + rank]),
    }
    if rank == 1:
        values['dist/only_rank1'] = np.array([2.0, 4.0, 9.0])
    return values


def _stats_worker(rank, tmp_dir, world_size):
    """Per-rank body of test_collector_reduces_across_two_processes; writes rank<N>.json."""
    join_process_group('gloo', f'file://{tmp_dir}/store', rank, world_size, timeout=datetime.timedelta(seconds=30))
    try:
        training_stats.init_multiprocessing(rank=rank, sync_device=torch.device('cpu'))
        collector = training_stats.Collector(regex=r'dist/.*')
        values = _rank_values(rank)
        for chunk in np.array_split(values['dist/loss'], 3):
            training_stats.report('dist/loss', torch.from_numpy(chunk).float())
        training_stats.report('dist/tensor', torch.from_numpy(values['dist/tensor']))
        training_stats.report0('dist/rank0', float(values['dist/rank0'][0]))
        if 'dist/only_rank1' in values:  # a name the other rank never reports
            training_stats.report('dist/only_rank1', values['dist/only_rank1'].tolist())
        training_stats.report('unrelated/x', 1.0)
        collector.update()
        result = {name: [collector.num(name), collector.mean(name), collector.std(name)] for name in collector.names()}
        with open(f'{tmp_dir}/rank{rank}.json', 'w') as file:
            json.dump(result, file)
    finally:
        torch.distributed.destroy_process_group()


def test_collector_reduces_across_two_processes(tmp_path):
    results = run_processes(_stats_worker, tmp_path)
    assert results[0] == results[1]  # every rank sees the same reduced figures
    union = {}
    for rank in range(2):
        for name, values in _rank_values(rank).items():
            if name == 'dist/loss':
                values = values.astype(np.float32)  # reported as float32 tensors
            if name == 'dist/rank0' and rank != 0:
                continue
            union.setdefault(name, []).append(np.asarray(values, dtype=np.float64).ravel())
    assert sorted(results[0]) == sorted(union)
    for name, parts in union.items():
        num, mean, std = _expected(np.concatenate(parts))
        got_num, got_mean, got_std = results[0][name]
        assert got_num == num
        assert got_mean == pytest.approx(mean, rel=1e-12, abs=1e-12)
        assert got_std == pytest.approx(std, rel=1e-9, abs=1e-12)
