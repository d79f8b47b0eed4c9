"""Per-item rows (features, pose errors) computed over batches split across processes, and cached real statistics.

`distributed_map` cuts items 0..N-1 into batches of `batch_size`; batch j runs on rank
j % world_size; the rows of all ranks are gathered to every rank in item order. So a metric sees
the same [N, D] array for any world size (given batch contents that depend only on the batch
index, generation.py). Real-image features are cached as .npy files under the dnnlib cache
directory (`gan-metrics/`), keyed by the dataset, the subset and the detector.
"""
import hashlib
import json
import os
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist

import dnnlib
from torch_utils.checkpoint import atomic_write
from torch_utils.distributed import DistContext

CACHE_SUBDIR = 'gan-metrics'
ROW_DTYPES = (torch.float32, torch.float64)    # what gather_rows transports


def _comm_device(ctx: DistContext) -> torch.device:
    """Device of collective buffers: this rank's device for NCCL, else the CPU."""
    return ctx.device if ctx.backend == 'nccl' else torch.device('cpu')


def gather_rows(rows: torch.Tensor, ids: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Rows [n_r, D] (float32 or float64) with item ids [n_r] on every rank -> all rows [sum n_r, D] (CPU)
    sorted by id, on every rank. A rank without rows may pass rows of shape [0, 0]."""
    if ctx.world_size > 1:
        device = _comm_device(ctx)
        meta = torch.tensor([rows.shape[0], rows.shape[1], ROW_DTYPES.index(rows.dtype)], dtype=torch.int64,
                            device=device)
        metas = [torch.empty_like(meta) for _ in range(ctx.world_size)]
        dist.all_gather(metas, meta)
        counts = [int(m[0]) for m in metas]
        width, dtype_index = next((int(m[1]), int(m[2])) for m in metas if int(m[0]) > 0)
        padded = torch.zeros(max(counts), width, dtype=ROW_DTYPES[dtype_index], device=device)
        padded[:rows.shape[0], :rows.shape[1]] = rows
        padded_ids = torch.full((max(counts),), -1, dtype=torch.int64, device=device)
        padded_ids[:ids.shape[0]] = ids
        all_rows = [torch.empty_like(padded) for _ in range(ctx.world_size)]
        all_ids = [torch.empty_like(padded_ids) for _ in range(ctx.world_size)]
        dist.all_gather(all_rows, padded)
        dist.all_gather(all_ids, padded_ids)
        rows = torch.cat([r[:n] for r, n in zip(all_rows, counts)])
        ids = torch.cat([i[:n] for i, n in zip(all_ids, counts)])
    order = torch.argsort(ids.cpu())
    return rows.cpu()[order]


def distributed_map(num_items: int, batch_size: int, ctx: DistContext,
                    fn: Callable[[int, int, int], torch.Tensor]) -> torch.Tensor:
    """Rows [num_items, D] (CPU, every rank) of fn(batch_index, start, stop) -> [stop - start, D] over all batches."""
    if num_items < 1 or batch_size < 1:
        raise ValueError(f'distributed_map: expected num_items >= 1 and batch_size >= 1, got {num_items}, {batch_size}')
    device = _comm_device(ctx)
    rows, ids = [torch.zeros(0, 0, device=device)], [torch.zeros(0, dtype=torch.int64, device=device)]
    for batch_index, start in enumerate(range(0, num_items, batch_size)):
        if batch_index % ctx.world_size != ctx.rank:
            continue
        stop = min(start + batch_size, num_items)
        out = fn(batch_index, start, stop).detach()
        if out.ndim != 2 or out.shape[0] != stop - start or out.dtype not in ROW_DTYPES:
            raise ValueError(f'distributed_map: batch {batch_index} gave {out.dtype} {list(out.shape)}; '
                             f'expected float32 or float64 [{stop - start}, D]')
        rows.append(out.to(device))
        ids.append(torch.arange(start, stop, device=device))
    local_rows = torch.cat(rows[1:]) if len(rows) > 1 else rows[0]   # rows[0]: placeholder for a rank without batches
    gathered = gather_rows(local_rows, torch.cat(ids), ctx)
    if gathered.shape[0] != num_items:
        raise ValueError(f'distributed_map: gathered {gathered.shape[0]} rows; expected {num_items}')
    return gathered


def cache_file(name: str, key: dict) -> str:
    """Cache path gan-metrics/<name>-<md5 of the JSON key>.npy under the dnnlib cache directory."""
    digest = hashlib.md5(json.dumps(key, sort_keys=True).encode('utf-8')).hexdigest()
    return dnnlib.util.make_cache_dir_path(CACHE_SUBDIR, f'{name}-{digest}.npy')


def _rank0_flag(value: bool, ctx: DistContext) -> bool:
    """Rank 0's boolean on every rank."""
    if ctx.world_size == 1:
        return value
    flag = torch.tensor([int(value)], dtype=torch.int64, device=_comm_device(ctx))
    dist.broadcast(flag, src=0)
    return bool(flag.item())


def cached(path: Optional[str], ctx: DistContext, compute: Callable[[], torch.Tensor]) -> np.ndarray:
    """np.load(path) if rank 0 sees the file, else compute() on all ranks and save it from rank 0 (atomic).

    path None disables the cache. A cache directory that cannot be written only loses the cache.
    """
    if path is not None and _rank0_flag(ctx.is_main and os.path.isfile(path), ctx):
        return np.load(path, allow_pickle=False)
    value = compute().numpy()
    if path is not None and ctx.is_main:
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with atomic_write(path) as f:
                np.save(f, value, allow_pickle=False)
        except OSError:
            pass
    return value
