"""torch_utils.distributed: joining and leaving a real 2-process gloo group."""
import datetime
import importlib
import json
import os
import sys

import pytest
import torch

from multiprocess_testing import run_processes
from torch_utils.distributed import DistContext, all_reduce_mean_, join_process_group

GLOO_THREADS = ('pt_gloo_runloop', 'gloo_tcp_loop')


def _native_threads():
    """Names of this process's native threads (Linux /proc)."""
    task = '/proc/self/task'
    return [open(os.path.join(task, tid, 'comm')).read().strip() for tid in os.listdir(task)]


def _leave_worker(rank, tmp_dir, world_size):
    """Join, import torch._dynamo as building an optimiser does, all-reduce, leave; record the threads left."""
    join_process_group('gloo', f'file://{tmp_dir}/store', rank, world_size, timeout=datetime.timedelta(seconds=30))
    during = _native_threads()
    importlib.import_module('torch._dynamo')
    value = torch.full([3], float(rank))
    all_reduce_mean_([value], DistContext(rank, world_size, rank, torch.device('cpu'), 'gloo'))
    torch.distributed.destroy_process_group()
    with open(os.path.join(tmp_dir, f'rank{rank}.json'), 'w') as file:
        json.dump(dict(during=during, after=_native_threads(), mean=value.tolist()), file)


@pytest.mark.skipif(not sys.platform.startswith('linux'), reason='reads thread names from /proc')
def test_leaving_the_group_stops_gloo_threads_after_torch_dynamo_was_imported(tmp_path):
    """Regression: a group pinned by torch.distributed.nn kept gloo's threads alive to interpreter
    exit, where one of them could abort the process (rank 1 died with SIGABRT after training)."""
    for result in run_processes(_leave_worker, tmp_path, world_size=2, timeout=120):
        assert result['mean'] == [0.5, 0.5, 0.5]
        assert any(name in GLOO_THREADS for name in result['during'])      # the check can see gloo's threads
        assert not [name for name in result['after'] if name in GLOO_THREADS]
