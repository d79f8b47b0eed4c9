"""Start the processes of a training run and give each its DistContext (ecosystem.md §4).

Four ways in, checked in this order:
  torchrun   RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT set by torchrun (env:// init);
  SLURM      `srun` with one task per device: SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID, the master
             is MASTER_ADDR or the first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST, the port
             MASTER_PORT or one derived from SLURM_JOB_ID (so jobs sharing a node do not collide);
  --gpus N   N local processes spawned here, rendezvous at tcp://127.0.0.1:<free port>;
  single     one process, no process group (the collectives are no-ops).
Backend gloo on the CPU, nccl on CUDA (each process on cuda:LOCAL_RANK). Rank 0 creates the run
dir NNNNN-desc and broadcasts its path; then every process calls the training loop.
"""
import os
import re
import socket
from dataclasses import dataclass, replace
from typing import Callable, Mapping, Optional

import torch
import torch.distributed as dist

from torch_utils import training_stats
from torch_utils.device import resolve_device
from torch_utils.distributed import DistContext, join_process_group

SLURM_PORT_BASE = 15000              # MASTER_PORT under SLURM: base + SLURM_JOB_ID mod span
SLURM_PORT_SPAN = 20000
LOCALHOST = '127.0.0.1'
SLURM_NODELISTS = ('SLURM_STEP_NODELIST', 'SLURM_JOB_NODELIST', 'SLURM_NODELIST')   # the first one set is used


class RunDirError(OSError):
    """Rank 0 could not create the run dir (one-line message naming --outdir)."""


@dataclass(frozen=True)
class LaunchSpec:
    """How this run's processes meet: kind 'single' | 'spawn' | 'torchrun' | 'slurm', the world size,
    this process's rank and local rank, and the rendezvous address (None for env:// and single runs)."""
    kind: str
    world_size: int
    rank: int = 0
    local_rank: int = 0
    master_addr: Optional[str] = None
    master_port: Optional[int] = None

    @property
    def init_method(self) -> str:
        """URL for torch.distributed.init_process_group."""
        return 'env://' if self.kind == 'torchrun' else f'tcp://{self.master_addr}:{self.master_port}'


def _int_var(environ: Mapping[str, str], name: str, minimum: int = 0) -> int:
    """Integer environment variable `name`; ValueError (one line, naming it) if missing or malformed."""
    text = environ.get(name)
    if text is None:
        raise ValueError(f'environment variable {name} is not set')
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ValueError(f'environment variable {name}={text!r}: expected an integer >= {minimum}')
    return value


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: 'gpu[007-009,012],cpu1' -> 'gpu007', 'r[1-2]-n[03-04]' -> 'r1-n03'."""
    first = re.split(r',(?![^\[]*\])', nodelist.strip())[0]
    host = re.sub(r'\[([^\]]*)\]', lambda m: re.split(r'[,-]', m.group(1))[0], first)
    if not host or '[' in host or ']' in host:
        raise ValueError(f'SLURM node list {nodelist!r}: cannot read its first host name')
    return host


def _torchrun_spec(environ: Mapping[str, str]) -> LaunchSpec:
    """LaunchSpec from torchrun's variables (the rendezvous itself is read by env:// init)."""
    world_size = _int_var(environ, 'WORLD_SIZE', 1)
    rank, local_rank = _int_var(environ, 'RANK'), _int_var(environ, 'LOCAL_RANK')
    if rank >= world_size:
        raise ValueError(f'environment variable RANK={rank} is not below WORLD_SIZE={world_size}')
    if world_size > 1:
        for name in ('MASTER_ADDR', 'MASTER_PORT'):
            if not environ.get(name):
                raise ValueError(f'environment variable {name} is not set (RANK and WORLD_SIZE are: use torchrun)')
    return LaunchSpec('torchrun', world_size, rank, local_rank, environ.get('MASTER_ADDR'),
                      _int_var(environ, 'MASTER_PORT', 1) if world_size > 1 else None)


def _slurm_spec(environ: Mapping[str, str]) -> LaunchSpec:
    """LaunchSpec from the variables srun sets for each task."""
    world_size = _int_var(environ, 'SLURM_NTASKS', 1)
    rank, local_rank = _int_var(environ, 'SLURM_PROCID'), _int_var(environ, 'SLURM_LOCALID')
    if rank >= world_size:
        raise ValueError(f'environment variable SLURM_PROCID={rank} is not below SLURM_NTASKS={world_size}')
    addr = environ.get('MASTER_ADDR')
    if not addr:
        nodelist = next((environ[name] for name in SLURM_NODELISTS if environ.get(name)), None)
        if not nodelist:
            raise ValueError('environment variable SLURM_JOB_NODELIST is not set (and neither is MASTER_ADDR)')
        addr = first_host(nodelist)
    if environ.get('MASTER_PORT'):
        port = _int_var(environ, 'MASTER_PORT', 1)
    else:
        port = SLURM_PORT_BASE + _int_var(environ, 'SLURM_JOB_ID') % SLURM_PORT_SPAN
    return LaunchSpec('slurm', world_size, rank, local_rank, addr, port)


def detect_launch(gpus: int = 1, environ: Optional[Mapping[str, str]] = None) -> LaunchSpec:
    """How this process was started (torchrun, srun, or plain python with --gpus N). ValueError (one line) on
    malformed variables or on --gpus > 1 under torchrun/srun, which already set the world size."""
    environ = os.environ if environ is None else environ
    spec = None
    if 'RANK' in environ and 'WORLD_SIZE' in environ:
        spec = _torchrun_spec(environ)
    elif 'SLURM_PROCID' in environ and 'SLURM_STEP_ID' in environ:   # inside an srun step, not the batch script
        spec = _slurm_spec(environ)
    if spec is not None and gpus > 1:
        raise ValueError(f'--gpus={gpus}: the {spec.kind} launcher already sets the world size ({spec.world_size}); '
                         'drop --gpus')
    if spec is None:
        spec = LaunchSpec('spawn', gpus, master_addr=LOCALHOST) if gpus > 1 else LaunchSpec('single', 1)
    return spec


def process_device(device_spec: str, spec: LaunchSpec) -> torch.device:
    """This process's device: resolve_device(device_spec), on CUDA the device LOCAL_RANK of the node when
    several processes run. ValueError (one line) for combinations that cannot work."""
    device = resolve_device(device_spec)
    if spec.world_size == 1 or device.type == 'cpu':
        return device
    if device.type != 'cuda':
        raise ValueError(f'--device={device_spec}: {device.type} runs only one process (no distributed backend)')
    if ':' in str(device_spec):
        raise ValueError(f'--device={device_spec}: with several processes each one uses cuda:LOCAL_RANK; '
                         'pass --device=cuda')
    if spec.local_rank >= torch.cuda.device_count():
        raise ValueError(f'local rank {spec.local_rank}: this node has only {torch.cuda.device_count()} CUDA devices')
    return torch.device('cuda', spec.local_rank)


def init_context(spec: LaunchSpec, device_spec: str, tf32: bool = False) -> DistContext:
    """Join the process group described by `spec` (none for one process) and set up training_stats and TF32."""
    device = process_device(device_spec, spec)
    if device.type == 'cuda':
        torch.cuda.set_device(device)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    if spec.world_size == 1:
        training_stats.init_multiprocessing(rank=0, sync_device=None)
        return DistContext.single(device)
    backend = 'nccl' if device.type == 'cuda' else 'gloo'
    join_process_group(backend, spec.init_method, spec.rank, spec.world_size)
    sync_device = device if backend == 'nccl' else torch.device('cpu')
    training_stats.init_multiprocessing(rank=spec.rank, sync_device=sync_device)
    return DistContext(rank=spec.rank, world_size=spec.world_size, local_rank=spec.local_rank, device=device,
                       backend=backend)


def next_run_id(outdir: str) -> int:
    """1 + the largest NNNNN prefix of the entries in `outdir` (0 if none, or if outdir does not exist)."""
    names = os.listdir(outdir) if os.path.isdir(outdir) else []
    ids = [int(m.group()) for m in (re.match(r'\d+', name) for name in names) if m]
    return max(ids, default=-1) + 1


def create_run_dir(outdir: str, desc: str) -> str:
    """Create and return `outdir/NNNNN-desc` with the next free number (safe against concurrent launches)."""
    os.makedirs(outdir, exist_ok=True)
    while True:
        path = os.path.join(outdir, f'{next_run_id(outdir):05d}-{desc}')
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def share_run_dir(ctx: DistContext, outdir: str, desc: str) -> str:
    """Rank 0 creates the run dir; every rank returns its path (or raises rank 0's one-line error)."""
    message = [None, None]
    if ctx.is_main:
        try:
            message[0] = create_run_dir(outdir, desc)
        except OSError as err:
            message[1] = f'--outdir: cannot create a run dir in {outdir}: {err.strerror or err}'
    if ctx.world_size > 1:
        dist.broadcast_object_list(message, src=0)
    if message[1] is not None:
        raise RunDirError(message[1])
    return message[0]


def run_training_loop(opts, run_dir: str, ctx: DistContext) -> None:
    """The default entry: training.training_loop.training_loop (imported only here)."""
    from training.training_loop import training_loop
    training_loop(opts, run_dir, ctx)


def run_process(opts, spec: LaunchSpec, desc: str, entry: Callable = run_training_loop) -> None:
    """Everything one process does: join the group, agree on the run dir, run `entry(opts, run_dir, ctx)`."""
    ctx = init_context(spec, opts.device, tf32=opts.tf32)
    try:
        entry(opts, share_run_dir(ctx, opts.outdir, desc), ctx)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def free_port() -> int:
    """A TCP port on localhost that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOCALHOST, 0))
        return sock.getsockname()[1]


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else (os.cpu_count() or 1)


def _spawned(local_rank: int, opts, spec: LaunchSpec, desc: str, entry: Callable) -> None:
    """Body of process `local_rank` of a --gpus N run (CPU runs share the cores evenly)."""
    if resolve_device(opts.device).type == 'cpu':
        torch.set_num_threads(max(1, usable_cpus() // spec.world_size))
    run_process(opts, replace(spec, rank=local_rank, local_rank=local_rank), desc, entry)


def launch(opts, spec: LaunchSpec, desc: str, entry: Callable = run_training_loop) -> None:
    """Run `entry(opts, run_dir, ctx)` in this process, or in spec.world_size spawned ones for --gpus N."""
    if spec.kind != 'spawn':
        run_process(opts, spec, desc, entry)
        return
    spec = replace(spec, master_port=free_port())
    torch.multiprocessing.spawn(_spawned, args=(opts, spec, desc, entry), nprocs=spec.world_size, join=True)
