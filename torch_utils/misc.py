"""Module and tensor helpers: seeding, cached constants, shape checks, parameter copying, a
module summary table, and DDP helpers."""

import contextlib
import random
import re

import numpy as np
import torch

_constant_cache = {}


def set_seed(seed):
    """Seed Python's `random`, NumPy's global generator and torch (CPU and every accelerator)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    """Tensor holding value (broadcast to shape), cached per (value, shape, dtype, device, format).

    The same tensor object is returned for equal arguments, so it must not be modified in place.
    dtype defaults to torch.get_default_dtype(), device to the CPU.
    """
    value = np.asarray(value)
    shape = tuple(shape) if shape is not None else None
    dtype = dtype if dtype is not None else torch.get_default_dtype()
    device = torch.device(device) if device is not None else torch.device('cpu')
    memory_format = memory_format if memory_format is not None else torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = tensor.expand(shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def assert_shape(tensor, ref_shape):
    """Raise AssertionError unless tensor.shape matches ref_shape; None entries match any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'expected {len(ref_shape)} dimensions {list(ref_shape)}, '
                             f'got {tensor.ndim}: {list(tensor.shape)}')
    for dim, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is not None and size != int(ref_size):
            raise AssertionError(f'dimension {dim}: expected size {int(ref_size)}, got {size} '
                                 f'(shape {list(tensor.shape)}, expected {list(ref_shape)})')


def params_and_buffers(module):
    """All parameters followed by all buffers of module (recursively)."""
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module):
    """(name, tensor) pairs of all parameters followed by all buffers of module (recursively)."""
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy same-named parameters and buffers from src_module into dst_module in place.

    Runs under no_grad, so leaf parameters that require grad can be overwritten. Shapes must
    match exactly. With require_all=True every tensor of dst_module must exist in src_module.
    """
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        src = src_tensors.get(name)
        if src is None:
            if require_all:
                raise KeyError(f'source module has no parameter or buffer {name!r}')
            continue
        if src.shape != tensor.shape:
            raise ValueError(f'{name}: source shape {list(src.shape)} != destination shape {list(tensor.shape)}')
        tensor.copy_(src.detach())


@contextlib.contextmanager
def ddp_sync(module, sync):
    """Context in which a DistributedDataParallel module skips gradient all-reduce if not sync."""
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module, ignore_regex=None):
    """Assert that every parameter and buffer equals rank 0's copy (NaNs compare equal).

    Names are '<ClassName>.<param name>'; those fully matching ignore_regex are skipped. Every
    rank broadcasts every tensor before raising, so the collectives stay in step. With
    torch.distributed uninitialised (a single process) there is nothing to compare.
    """
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return
    mismatches = []
    for name, tensor in named_params_and_buffers(module):
        full_name = f'{type(module).__name__}.{name}'
        if ignore_regex is not None and re.fullmatch(ignore_regex, full_name):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = torch.nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(other, src=0)
        if not torch.equal(tensor, other):
            mismatches.append(full_name)
    if mismatches:
        raise AssertionError(f'rank {torch.distributed.get_rank()} differs from rank 0 in: {", ".join(mismatches)}')


def _flatten_tensors(outputs):
    """Tensors inside nested tuples/lists/dicts, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, (tuple, list)):
        return [t for item in outputs for t in _flatten_tensors(item)]
    if isinstance(outputs, dict):
        return [t for item in outputs.values() for t in _flatten_tensors(item)]
    return []


def _record_calls(module, inputs, max_nesting):
    """Run module(*inputs) with hooks; returns (outputs, [(submodule, output tensors)]) for
    calls nested at most max_nesting levels deep, in completion order (children first)."""
    depth = [0]
    calls = []

    def pre_hook(_mod, _inputs):
        depth[0] += 1

    def post_hook(mod, _inputs, outputs):
        depth[0] -= 1
        if depth[0] <= max_nesting:
            calls.append((mod, _flatten_tensors(outputs)))

    handles = []
    for submodule in module.modules():
        handles.append(submodule.register_forward_pre_hook(pre_hook))
        handles.append(submodule.register_forward_hook(post_hook))
    try:
        outputs = module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs, calls


def _summary_rows(module, calls, skip_redundant):
    """Table rows [name, params, buffers, output shape, dtype] and the parameter/buffer totals;
    every tensor is counted once, in the first completed call whose module owns it."""
    names = {submodule: name for name, submodule in module.named_modules()}
    names[module] = '<top-level>'
    seen = set()
    rows, total_params, total_buffers = [], 0, 0
    for mod, outputs in calls:
        params = [t for t in mod.parameters() if id(t) not in seen]
        buffers = [t for t in mod.buffers() if id(t) not in seen]
        new_outputs = [t for t in outputs if id(t) not in seen]
        seen.update(id(t) for t in params + buffers + outputs)
        if skip_redundant and mod is not module and not (params or buffers or new_outputs):
            continue
        num_params = sum(t.numel() for t in params)
        num_buffers = sum(t.numel() for t in buffers)
        total_params += num_params
        total_buffers += num_buffers
        shown = outputs or [None]
        for index, out in enumerate(shown):
            name = names.get(mod, type(mod).__name__) + (f':{index}' if len(shown) > 1 else '')
            counts = [str(num_params) if num_params else '-', str(num_buffers) if num_buffers else '-']
            if index > 0:
                counts = ['', '']
            shape = str(list(out.shape)) if out is not None else '-'
            dtype = str(out.dtype).replace('torch.', '') if out is not None else '-'
            rows.append([name] + counts + [shape, dtype])
    return rows, total_params, total_buffers


def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    """Run module(*inputs) once and print a table of submodules (name, #params, #buffers, output
    shape, dtype) with totals; returns the module's outputs unchanged.

    inputs: tuple/list of positional arguments (a single tensor is accepted). Outputs may be
    tensors or nested tuples/lists/dicts of tensors. Submodules nested deeper than max_nesting
    are folded into their ancestor; with skip_redundant, rows adding no new tensors are hidden.
    """
    if isinstance(inputs, torch.Tensor):
        inputs = [inputs]
    outputs, calls = _record_calls(module, inputs, max_nesting)
    rows, total_params, total_buffers = _summary_rows(module, calls, skip_redundant)
    header = ['Module', 'Parameters', 'Buffers', 'Output shape', 'Datatype']
    table = [header, None] + rows + [None, ['Total', str(total_params), str(total_buffers), '-', '-']]
    widths = [max(len(row[col]) for row in table if row is not None) for col in range(len(header))]
    print()
    for row in table:
        cells = ['-' * width for width in widths] if row is None else [c.ljust(w) for c, w in zip(row, widths)]
        print('  '.join(cells).rstrip())
    print()
    return outputs
