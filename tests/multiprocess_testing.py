"""Helper for tests that run real multi-process (gloo) code: spawn workers, never hang."""
import json
import time

import pytest
import torch


def run_processes(worker, tmp_path, world_size=2, timeout=60.0):
    """Run worker(rank, tmp_dir, world_size) in spawned processes; fail instead of hanging.

    Each worker writes its result as JSON to <tmp_dir>/rank<rank>.json; returns them by rank.
    """
    context = torch.multiprocessing.start_processes(worker, args=(str(tmp_path), world_size), nprocs=world_size,
                                                    join=False, start_method='spawn')
    deadline = time.monotonic() + timeout
    while not context.join(timeout=0.5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f'worker processes did not finish within {timeout} s')
    return [json.loads((tmp_path / f'rank{rank}.json').read_text()) for rank in range(world_size)]
