"""Tests for torch_utils.device: device spec resolution and guarded memory statistics."""

import sys

import pytest
import torch

from torch_utils import device as device_lib


def test_auto_picks_the_best_available_device():
    expected = 'cuda' if torch.cuda.is_available() else ('mps' if device_lib._mps_available() else 'cpu')
    assert device_lib.resolve_device('auto').type == expected
    assert device_lib.resolve_device().type == expected


@pytest.mark.parametrize('spec', ['cpu', 'CPU', ' cpu ', 'cpu:0', torch.device('cpu')])
def test_cpu_forms(spec):
    assert device_lib.resolve_device(spec) == torch.device('cpu')


def test_unavailable_cuda_and_mps_name_the_device_and_list_available(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(device_lib, '_mps_available', lambda: False)
    for spec in ('cuda', 'cuda:1', 'mps'):
        with pytest.raises(ValueError) as info:
            device_lib.resolve_device(spec)
        message = str(info.value)
        assert f"'{spec}'" in message and 'not available' in message and 'available: cpu' in message
        assert '\n' not in message
    assert device_lib.resolve_device('auto') == torch.device('cpu')


def test_cuda_index_beyond_device_count(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: True)
    monkeypatch.setattr(torch.cuda, 'device_count', lambda: 2)
    monkeypatch.setattr(torch.cuda, 'current_device', lambda: 0)
    assert device_lib.resolve_device('cuda') == torch.device('cuda', 0)
    assert device_lib.resolve_device('cuda:1') == torch.device('cuda', 1)
    assert device_lib.resolve_device('auto') == torch.device('cuda', 0)
    with pytest.raises(ValueError, match=r"'cuda:2' is not available; available: cpu, cuda:0, cuda:1"):
        device_lib.resolve_device('cuda:2')


@pytest.mark.parametrize('spec', ['gpu', 'cuda:x', 'meta', '', 'cuda:-1'])
def test_garbage_lists_valid_forms(spec):
    with pytest.raises(ValueError, match=r"invalid device .*'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"):
        device_lib.resolve_device(spec)


def _vm_hwm_mb():
    """Peak RSS from /proc/self/status (Linux), in MiB."""
    with open('/proc/self/status') as status:
        line = next(line for line in status if line.startswith('VmHWM:'))
    return int(line.split()[1]) / 1024


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads /proc/self/status')
def test_cpu_memory_stats_report_peak_rss():
    before = _vm_hwm_mb()
    stats = device_lib.device_memory_stats('cpu')
    after = _vm_hwm_mb()
    assert set(stats) == {'peak_rss_mb'}
    assert before - 4 <= stats['peak_rss_mb'] <= after + 4  # kernel RSS counters are synced lazily
    device_lib.reset_peak_memory_stats('cpu')


def test_memory_stats_never_crash_without_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: False)
    monkeypatch.setattr(device_lib, '_mps_available', lambda: False)
    for spec in ('cuda:0', 'mps'):
        assert set(device_lib.device_memory_stats(spec)) == {'peak_rss_mb'}
        device_lib.reset_peak_memory_stats(spec)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_memory_stats():
    device = device_lib.resolve_device('cuda')
    device_lib.reset_peak_memory_stats(device)
    block = torch.empty(2**20, dtype=torch.float32, device=device)
    stats = device_lib.device_memory_stats(device)
    assert stats['peak_allocated_mb'] >= block.numel() * 4 / 2**20
    assert stats['peak_reserved_mb'] >= stats['peak_allocated_mb']
