"""The process group a training run lives in, and the few collectives the training loop needs.

One `DistContext` is made per process by the launcher (torch_utils/launch.py: torchrun env://,
SLURM variables, or `--gpus N` local spawning) and passed down; a single-process run uses
`DistContext.single(device)`. Collectives are no-ops when world_size == 1, so the loop has one
code path.
"""
import datetime
import importlib
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """rank / world_size of this process, its local rank on the node, its device and the backend (None: no group)."""
    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: Optional[str] = None

    @staticmethod
    def single(device: torch.device) -> 'DistContext':
        """A one-process run on `device` (no process group)."""
        return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and prints (rank 0)."""
        return self.rank == 0


def join_process_group(backend: str, init_method: str, rank: int, world_size: int,
                       timeout: Optional[datetime.timedelta] = None) -> None:
    """torch.distributed.init_process_group, with torch.distributed.nn imported first.

    torch.distributed.nn binds `group.WORLD` as a default argument when it is imported, and
    torch.optim imports it (through torch._dynamo) when the first optimiser is built. Imported after
    the group exists, it pins the group for the life of the process: destroy_process_group then
    leaves gloo's worker threads running, and one of them can abort the interpreter at exit while
    it releases the tensors of the last collective. Imported before, it binds None.
    """
    importlib.import_module('torch.distributed.nn')
    dist.init_process_group(backend, init_method=init_method, rank=rank, world_size=world_size, timeout=timeout)


def all_reduce_mean_(tensors: Iterable[torch.Tensor], ctx: DistContext) -> None:
    """Average `tensors` in place over all processes (flattened into one buffer: one collective call)."""
    tensors = [t for t in tensors if t is not None]
    if ctx.world_size == 1 or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    torch._foreach_copy_(tensors, [part.view_as(t) for part, t in zip(flat.split([t.numel() for t in tensors]), tensors)])


def broadcast_module_(module: torch.nn.Module, ctx: DistContext, src: int = 0) -> None:
    """Copy every parameter and buffer of `module` from rank `src` to all processes."""
    if ctx.world_size == 1:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=src)


def barrier(ctx: DistContext) -> None:
    """Wait for all processes (no-op for a single process)."""
    if ctx.world_size > 1:
        dist.barrier()
