"""Training statistics: cheap `report()` calls accumulate per-name moments (count, sum, sum of
squares, float64) on the value's device; a `Collector` periodically reduces them over all
processes and exposes num/mean/std per name, as in StyleGAN2/3 and EG3D."""

import re
import threading

import numpy as np
import torch

import dnnlib

_lock = threading.Lock()
_rank = None          # set by init_multiprocessing(); None: ask torch.distributed
_sync_device = None   # set by init_multiprocessing(); None: chosen from the backend
_pending = {}         # name -> {device: moments tensor [3]} reported since the last reduction
_cumulative = {}      # name -> float64 CPU tensor [3] of all reduced moments, over all processes


def init_multiprocessing(rank, sync_device):
    """Declare this process's rank (for report0) and the device used for the all-reduce
    (torch.device('cpu') for gloo, this rank's CUDA device for nccl; None: choose automatically)."""
    global _rank, _sync_device
    _rank = rank
    _sync_device = torch.device(sync_device) if sync_device is not None else None


def _distributed():
    """True when torch.distributed is initialised with more than one process."""
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


def _current_rank():
    """Rank given to init_multiprocessing, else torch.distributed's rank, else 0."""
    if _rank is not None:
        return _rank
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank()
    return 0


def _accumulator_dtype(device):
    """float64 where the device supports it (not on MPS, which uses float32)."""
    return torch.float32 if device.type == 'mps' else torch.float64


def report(name, value):
    """Add the elements of value to the statistic name and return value unchanged.

    value: a number, sequence, NumPy array or tensor of any shape on any device; an empty value
    only registers the name. Accumulates [count, sum, sum of squares] without synchronising the
    device, so it is cheap inside the training loop; safe to call from any thread.
    """
    elems = torch.as_tensor(value).detach()
    dtype = _accumulator_dtype(elems.device)
    elems = elems.flatten().to(dtype)
    moments = torch.stack([torch.ones_like(elems).sum(), elems.sum(), elems.square().sum()])
    with _lock:
        per_device = _pending.setdefault(name, {})
        if elems.device in per_device:
            per_device[elems.device].add_(moments)
        else:
            per_device[elems.device] = moments
    return value


def report0(name, value):
    """report() on rank 0 only; other ranks register the name with no data. Returns value."""
    report(name, value if _current_rank() == 0 else [])
    return value


def _reduction_device():
    """Device for the all-reduce: the configured one, else CUDA for nccl, else the CPU."""
    if _sync_device is not None:
        return _sync_device
    if torch.distributed.get_backend() == 'nccl':
        return torch.device('cuda', torch.cuda.current_device())
    return torch.device('cpu')


def _take_pending(regex):
    """Remove and return {name: float64 CPU moments [3]} of pending names matching regex."""
    with _lock:
        names = [name for name in _pending if regex.fullmatch(name)]
        taken = {name: _pending.pop(name) for name in names}
    return {name: sum((m.to('cpu', torch.float64) for m in per_device.values()),
                      torch.zeros(3, dtype=torch.float64))
            for name, per_device in taken.items()}


def _reduce(regex):
    """Fold pending moments of names matching regex (on every process) into _cumulative and
    return {name: copy of its cumulative moments}. Collective when running distributed: every
    process must call it with the same regex; names known to any process are included."""
    local = _take_pending(regex)
    names = sorted(local)
    if _distributed():
        gathered = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(gathered, names)
        names = sorted(set().union(*gathered))
    if names:
        deltas = torch.stack([local.get(name, torch.zeros(3, dtype=torch.float64)) for name in names])
        if _distributed():
            deltas = deltas.to(_reduction_device())
            torch.distributed.all_reduce(deltas)
            deltas = deltas.cpu()
    with _lock:
        for index, name in enumerate(names):
            _cumulative[name] = _cumulative.get(name, torch.zeros(3, dtype=torch.float64)) + deltas[index]
        return {name: moments.clone() for name, moments in _cumulative.items() if regex.fullmatch(name)}


class Collector:
    """Per-interval statistics of the names fully matching regex, over all processes.

    update() closes an interval: it is collective when torch.distributed is initialised (every
    process must call it, and construction calls it once to set the baseline). num/mean/std then describe the values reported during that interval;
    with keep_previous=True a name that got no new values keeps its previous interval's figures.
    std is the population standard deviation (ddof=0).
    """

    def __init__(self, regex='.*', keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._seen = {}     # name -> cumulative moments at the last update()
        self._moments = {}  # name -> moments of the latest interval
        self.update()
        self._moments.clear()

    def update(self):
        """Reduce pending reports across processes and start a new interval."""
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _reduce(self._regex).items():
            delta = cumulative - self._seen.get(name, torch.zeros(3, dtype=torch.float64))
            self._seen[name] = cumulative
            if delta[0] != 0:
                self._moments[name] = delta

    def names(self):
        """Sorted names with data in the latest interval."""
        return sorted(self._moments)

    def num(self, name):
        """Number of scalar values reported under name in the latest interval."""
        moments = self._moments.get(name)
        return int(moments[0]) if moments is not None else 0

    def mean(self, name):
        """Mean of the values reported under name (NaN when there are none)."""
        moments = self._moments.get(name)
        if moments is None:
            return float('nan')
        return float(moments[1] / moments[0])

    def std(self, name):
        """Population standard deviation of the values reported under name (NaN when none)."""
        moments = self._moments.get(name)
        if moments is None or not np.isfinite(self.mean(name)):
            return float('nan')
        variance = float(moments[2] / moments[0]) - self.mean(name) ** 2
        return float(np.sqrt(max(variance, 0.0)))

    def as_dict(self):
        """{name: EasyDict(num, mean, std)} for every name with data, e.g. for stats.jsonl."""
        return {name: dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
                for name in self.names()}

    def __getitem__(self, name):
        """Shorthand for mean(name)."""
        return self.mean(name)
