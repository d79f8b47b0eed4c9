"""Tests for torch_utils.misc: seeding, constants, shape checks, parameter copying, module
summary, and the DDP helpers (consistency checked in two real gloo processes)."""

import contextlib
import datetime
import json
import random

import numpy as np
import pytest
import torch

from torch_utils import misc
from torch_utils.distributed import join_process_group
from multiprocess_testing import run_processes


def _draws():
    """One draw from each global generator."""
    return random.random(), float(np.random.rand()), float(torch.rand(()))


def test_set_seed_makes_all_generators_reproducible():
    assert misc.set_seed(123) is None
    first = _draws()
    misc.set_seed(123)
    assert _draws() == first
    misc.set_seed(124)
    assert all(a != b for a, b in zip(_draws(), first))
    misc.set_seed(2**40 + 5)  # larger than NumPy's 32-bit seed range
    _draws()


def test_constant_values_caching_and_broadcast():
    a = misc.constant([1.0, 2.0, 3.0])
    assert a.dtype == torch.get_default_dtype() and a.device.type == 'cpu'
    np.testing.assert_array_equal(a.numpy(), np.array([1.0, 2.0, 3.0], dtype=np.float32))
    assert misc.constant([1.0, 2.0, 3.0]) is a
    assert misc.constant([1.0, 2.0, 3.0], dtype=torch.float64) is not a
    assert misc.constant([1.0, 2.0, 4.0]) is not a
    b = misc.constant([1.0, 2.0, 3.0], shape=[2, 3])
    assert b.shape == (2, 3) and b.is_contiguous() and b is not a
    np.testing.assert_array_equal(b.numpy(), np.tile([1.0, 2.0, 3.0], (2, 1)))
    c = misc.constant(0.5, shape=[1, 3, 4, 4], memory_format=torch.channels_last)
    assert c.is_contiguous(memory_format=torch.channels_last) and float(c.sum()) == 24.0
    assert misc.constant(7, dtype=torch.int64).item() == 7


def test_assert_shape_wildcards_and_messages():
    x = torch.zeros(2, 3, 4)
    misc.assert_shape(x, [2, None, 4])
    misc.assert_shape(x, [None, torch.tensor(3), None])
    with pytest.raises(AssertionError, match=r'dimension 1: expected size 5, got 3'):
        misc.assert_shape(x, [2, 5, 4])
    with pytest.raises(AssertionError, match=r'expected 2 dimensions'):
        misc.assert_shape(x, [2, 3])


class _Net(torch.nn.Module):
    """Two layers and a buffer; forward returns a dict with a nested tuple."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 2))
        self.norm = torch.nn.BatchNorm1d(2)
        self.register_buffer('scale', torch.full([2], 2.0))

    def forward(self, x):
        y = self.norm(self.body(x)) * self.scale
        return {'y': y, 'extra': (y.sum(dim=1), x.to(torch.float16))}


def test_params_and_buffers_lists():
    net = _Net()
    names = [name for name, _ in misc.named_params_and_buffers(net)]
    assert names == [n for n, _ in net.named_parameters()] + [n for n, _ in net.named_buffers()]
    assert len(misc.params_and_buffers(net)) == len(names) == 6 + 4  # 3 layers x 2 params; 3 BN + 1 buffers


def test_copy_params_and_buffers_into_leaves_that_require_grad():
    torch.manual_seed(0)
    src, dst = _Net(), _Net()
    src.norm.running_mean.fill_(0.25)
    x = torch.randn(4, 3)
    src.eval(), dst.eval()
    assert not torch.equal(src(x)['y'], dst(x)['y'])
    misc.copy_params_and_buffers(src, dst, require_all=True)
    assert torch.equal(src(x)['y'], dst(x)['y'])
    for param in dst.parameters():
        assert param.is_leaf and param.requires_grad and param.grad_fn is None
    dst(x)['y'].sum().backward()  # still trainable
    assert dst.body[0].weight.grad is not None


def test_copy_params_and_buffers_partial_and_errors():
    src, dst = torch.nn.Linear(3, 2), _Net()
    before = dst.body[0].weight.detach().clone()
    misc.copy_params_and_buffers(src, dst)  # no shared names: nothing copied
    assert torch.equal(dst.body[0].weight, before)
    with pytest.raises(KeyError, match="'body.0.weight'"):
        misc.copy_params_and_buffers(src, dst, require_all=True)
    with pytest.raises(ValueError, match=r'weight: source shape \[2, 3\] != destination shape \[4, 3\]'):
        misc.copy_params_and_buffers(src, torch.nn.Linear(3, 4))


def _table_rows(text):
    """Whitespace-split rows of a printed summary table, excluding separators."""
    return [line.split() for line in text.strip().splitlines() if line and not line.startswith('-')]


def test_print_module_summary_table_and_totals(capsys):
    torch.manual_seed(0)
    net = _Net().eval()
    x = torch.randn(4, 3)
    outputs = misc.print_module_summary(net, [x])
    assert torch.equal(outputs['y'], net(x)['y']) and outputs['extra'][1].dtype == torch.float16
    rows = _table_rows(capsys.readouterr().out)
    assert rows[0] == ['Module', 'Parameters', 'Buffers', 'Output', 'shape', 'Datatype']
    by_name = {row[0]: row for row in rows}
    assert by_name['body.0'][1:] == ['20', '-', '[4,', '5]', 'float32']
    assert by_name['body.2'][1] == '12' and by_name['norm'][1:3] == ['4', '5']
    assert by_name['<top-level>:2'] == ['<top-level>:2', '[4,', '3]', 'float16']
    assert 'body.1' in by_name  # ReLU creates a new tensor, so it is not redundant
    assert 'body' not in by_name  # same output as body.2, no own tensors
    total = by_name['Total']
    assert int(total[1]) == sum(p.numel() for p in net.parameters())
    assert int(total[2]) == sum(b.numel() for b in net.buffers())


def test_print_module_summary_nesting_and_tuple_outputs(capsys):
    net = torch.nn.Sequential(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)))
    misc.print_module_summary(net, torch.zeros(1, 2), max_nesting=1)
    names = [row[0] for row in _table_rows(capsys.readouterr().out)]
    assert names == ['Module', '0', '<top-level>', 'Total']

    class Pair(torch.nn.Module):
        def forward(self, x):
            return x + 1, x * 2

    out = misc.print_module_summary(Pair(), [torch.ones(3)], skip_redundant=False)
    assert torch.equal(out[1], torch.full([3], 2.0))
    names = [row[0] for row in _table_rows(capsys.readouterr().out)]
    assert names == ['Module', '<top-level>:0', '<top-level>:1', 'Total']


class _RecordingDDP(torch.nn.parallel.DistributedDataParallel):
    """A DDP instance without a process group that records entries into no_sync()."""

    def __init__(self, module):
        torch.nn.Module.__init__(self)
        self.module = module
        self.no_sync_entries = 0

    @contextlib.contextmanager
    def no_sync(self):
        self.no_sync_entries += 1
        yield

    def forward(self, x):
        return self.module(x)


def test_ddp_sync_enters_no_sync_only_for_ddp_without_sync():
    ddp = _RecordingDDP(torch.nn.Linear(2, 2))
    with misc.ddp_sync(ddp, sync=True):
        ddp(torch.ones(1, 2))
    assert ddp.no_sync_entries == 0
    with misc.ddp_sync(ddp, sync=False):
        ddp(torch.ones(1, 2))
    assert ddp.no_sync_entries == 1
    plain = torch.nn.Linear(2, 2)
    with misc.ddp_sync(plain, sync=False):
        plain(torch.ones(1, 2)).sum().backward()
    assert plain.weight.grad is not None


def test_check_ddp_consistency_single_process():
    assert misc.check_ddp_consistency(torch.nn.Linear(2, 2)) is None


def _consistency_worker(rank, tmp_dir, world_size):
    """Per-rank body of test_check_ddp_consistency_across_two_processes; writes rank<N>.json."""
    join_process_group('gloo', f'file://{tmp_dir}/store', rank, world_size, timeout=datetime.timedelta(seconds=30))
    try:
        torch.manual_seed(0)
        module = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
        module[1].running_mean.fill_(float('nan'))  # NaNs on every rank count as equal
        misc.check_ddp_consistency(module)
        if rank == 1:  # an early tensor, so the remaining broadcasts must still happen
            with torch.no_grad():
                module[0].bias.add_(1.0)
        errors = []
        try:
            misc.check_ddp_consistency(module)
        except AssertionError as err:
            errors.append(str(err))
        misc.check_ddp_consistency(module, ignore_regex=r'Sequential\.0\.bias')
        with open(f'{tmp_dir}/rank{rank}.json', 'w') as file:
            json.dump({'errors': errors}, file)
    finally:
        torch.distributed.destroy_process_group()


def test_check_ddp_consistency_across_two_processes(tmp_path):
    results = run_processes(_consistency_worker, tmp_path)
    assert results[0]['errors'] == []
    assert len(results[1]['errors']) == 1
    assert results[1]['errors'][0] == 'rank 1 differs from rank 0 in: Sequential.0.bias'
