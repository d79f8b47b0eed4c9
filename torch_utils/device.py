"""Device selection ('auto'/'cpu'/'cuda[:N]'/'mps') and guarded memory statistics for any device."""

import sys

import torch

VALID_FORMS = "'auto', 'cpu', 'cuda', 'cuda:N', 'mps'"


def _mps_available():
    """True when the Apple MPS backend exists in this build and is usable."""
    mps = getattr(torch.backends, 'mps', None)
    return mps is not None and mps.is_available()


def available_devices():
    """Names of the usable devices, e.g. ['cpu', 'cuda:0', 'cuda:1'] or ['cpu', 'mps']."""
    names = ['cpu']
    if torch.cuda.is_available():
        names += [f'cuda:{index}' for index in range(torch.cuda.device_count())]
    if _mps_available():
        names.append('mps')
    return names


def resolve_device(spec='auto'):
    """Turn a device spec into a usable torch.device, checking availability.

    'auto' picks CUDA (the current device), else MPS, else CPU. 'cuda' means the current CUDA
    device and is returned with its index. Raises ValueError (one line) for malformed specs and
    for devices that are not available here.
    """
    text = str(spec).strip().lower()
    if text == 'auto':
        if torch.cuda.is_available():
            return torch.device('cuda', torch.cuda.current_device())
        return torch.device('mps') if _mps_available() else torch.device('cpu')
    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ('cpu', 'cuda', 'mps'):
        raise ValueError(f'invalid device {spec!r}; expected one of {VALID_FORMS}')
    if device.type == 'cpu':
        return torch.device('cpu')
    unavailable = ValueError(f'device {spec!r} is not available; available: {", ".join(available_devices())}')
    if device.type == 'mps':
        if not _mps_available():
            raise unavailable
        return torch.device('mps')
    if not torch.cuda.is_available():
        raise unavailable
    index = torch.cuda.current_device() if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise unavailable
    return torch.device('cuda', index)


def _peak_rss_mb():
    """Peak resident set size of this process in MiB, or None where `resource` is missing."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == 'darwin' else peak / 2**10  # bytes on macOS, KiB elsewhere


def device_memory_stats(device):
    """Memory figures in MiB for device: CUDA allocator peaks/current values, MPS current
    values where the build exposes them, and always the process peak RSS ('peak_rss_mb')."""
    device = torch.device(device)
    stats = {}
    if device.type == 'cuda' and torch.cuda.is_available():
        stats['peak_allocated_mb'] = torch.cuda.max_memory_allocated(device) / 2**20
        stats['peak_reserved_mb'] = torch.cuda.max_memory_reserved(device) / 2**20
        stats['allocated_mb'] = torch.cuda.memory_allocated(device) / 2**20
        stats['reserved_mb'] = torch.cuda.memory_reserved(device) / 2**20
    elif device.type == 'mps' and _mps_available():
        mps = getattr(torch, 'mps', None)
        if hasattr(mps, 'current_allocated_memory'):
            stats['allocated_mb'] = mps.current_allocated_memory() / 2**20
        if hasattr(mps, 'driver_allocated_memory'):
            stats['reserved_mb'] = mps.driver_allocated_memory() / 2**20
    peak_rss = _peak_rss_mb()
    if peak_rss is not None:
        stats['peak_rss_mb'] = peak_rss
    return stats


def reset_peak_memory_stats(device):
    """Restart the CUDA peak counters of device (e.g. once per training tick); no-op elsewhere."""
    device = torch.device(device)
    if device.type == 'cuda' and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats(device)
