"""Tri-grid lookup through the compiled fused kernels: 'cpp' (csrc/trigrid_sample.cpp, OpenMP) on
the CPU and 'cuda' (csrc/trigrid_sample_cuda.{cu,cpp}) on CUDA devices (system.md §2.3).

Both read the channels-last texel table [N, 3, H, W, D, C] that `texel_table` makes once per set
of planes (the CPU plugin transposes in C++; on CUDA it is a permuted copy) and compute, per point,
the mean of the 3 planes' 4 (D = 1) or 8 (D > 1) corner rows, with the same element math
(csrc/trigrid_sample.h). The table is a cache outside the autograd graph: `sample` takes the
planes as its differentiable input and returns their gradient directly. Backward, each part only
when needed: w.r.t. the coordinates (corner rows dotted with the incoming gradient) and w.r.t. the
planes (on the CPU gathered texel by texel from points binned by cell and written in the planes
layout, csrc/trigrid_planes_grad.h; on CUDA scattered into a zeroed table-layout buffer with
atomics, then permuted). First order only: the backward is not itself differentiable, and
differentiating it raises torch's once_differentiable error. Computes in float32, or in float64
for float64 planes.

The plugins are built lazily through torch_utils.custom_ops.get_plugin: a failed build prints one
line, is cached for the process, and makes `available` false (planes.py then uses a PyTorch path).
"""
import os
from typing import Optional, Tuple

import torch
from torch.autograd.function import once_differentiable

import torch_utils.ops
from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'csrc')
CPU_OPS_DIR = os.path.join(os.path.dirname(os.path.abspath(torch_utils.ops.__file__)), 'cpu')   # shared headers
CPU_SOURCES = ['trigrid_sample.cpp']
CUDA_SOURCES = ['trigrid_sample_cuda.cpp', 'trigrid_sample_cuda.cu']


def _plugin(device_type: str) -> Optional[object]:
    """The compiled module for 'cpu' or 'cuda' tensors (built on first use, once per process), or None."""
    if device_type == 'cpu':
        return custom_ops.get_plugin('trigrid_sample_plugin', CPU_SOURCES, cuda=False, source_dir=SOURCE_DIR,
                                     include_dirs=[CPU_OPS_DIR])   # transpose_8x8.h
    if device_type == 'cuda':
        return custom_ops.get_plugin('trigrid_sample_cuda_plugin', CUDA_SOURCES, source_dir=SOURCE_DIR)
    return None


def available(device_type: str) -> bool:
    """Whether the kernel for tensors on `device_type` ('cpu' or 'cuda') builds and loads in this process."""
    return _plugin(device_type) is not None


def kernel_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the kernels compute in for planes of `dtype`: float64 stays, everything else is float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


@torch.no_grad()
def texel_table(planes: torch.Tensor, depth: int) -> torch.Tensor:
    """The texel table [N, 3, H, W, D, C] (kernel dtype, no autograd) of planes [N, 3, C*D, H, W] (channel c*D + d).

    Needs the plugin of the planes' device (`available`) on the CPU."""
    planes = planes.detach().to(kernel_dtype(planes.dtype))
    if planes.device.type == 'cpu':
        return _plugin('cpu').planes_to_table(planes.contiguous(), depth, torch.get_num_threads())
    n, k, cd, h, w = planes.shape
    return planes.reshape(n, k, cd // depth, depth, h, w).permute(0, 1, 4, 5, 3, 2).contiguous()


class _TriGridSample(torch.autograd.Function):
    """Mean tri-grid features [N, P, C] of planes (read through their table) at normalised coords [N, P, 3].

    Also returns a planes-shaped token (zeros, no memory) that a later call on the same planes takes as
    its `source` instead of the planes. The later call's backward returns its planes gradient through the
    token, and this call adds its own into that buffer in place (CPU): several calls on one set of planes
    (the coarse and fine passes, ray chunks) leave one planes gradient, not several for autograd to add.
    """

    @staticmethod
    def forward(ctx, source, table, coords, planes_need_grad):
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(table, coords)
        ctx.planes_shape, ctx.planes_dtype, ctx.planes_need_grad = source.shape, source.dtype, planes_need_grad
        plugin = _plugin(table.device.type)
        if table.device.type == 'cpu':
            features = plugin.forward(table, coords, torch.get_num_threads())
        else:
            features = plugin.forward(table, coords)
        return features, source.new_zeros(()).expand(source.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad, grad_later):
        table, coords = ctx.saved_tensors
        need_planes = ctx.needs_input_grad[0] and ctx.planes_need_grad
        need_coords = ctx.needs_input_grad[2] and grad is not None
        if grad is None:   # only later calls' planes gradient: pass it on
            return (grad_later if need_planes else None), None, None, None
        plugin = _plugin(table.device.type)
        grad = grad.contiguous()
        grad_planes = grad_coords = None
        cpu = table.device.type == 'cpu'
        # The CPU kernel adds into the later calls' gradient in place; otherwise it is added here.
        into = grad_later if (cpu and need_planes and grad_later is not None and grad_later.dtype == table.dtype
                              and grad_later.is_contiguous()) else None
        if cpu:
            grad_planes, grad_coords = plugin.backward(table, coords, grad, need_planes, need_coords,
                                                       torch.get_num_threads(), into if into is not None
                                                       else table.new_empty(0))
        else:
            grad_table, grad_coords = plugin.backward(table, coords, grad, need_planes, need_coords)
            if need_planes:
                grad_planes = grad_table.permute(0, 1, 5, 4, 2, 3).reshape(ctx.planes_shape)
        if need_planes and into is None and grad_later is not None:
            grad_planes = grad_later + grad_planes.to(grad_later.dtype)
        return ((grad_planes.to(ctx.planes_dtype) if need_planes else None), None,
                (grad_coords if need_coords else None), None)


def sample(planes: torch.Tensor, table: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Mean tri-grid features [N, P, C] (the table's dtype) of planes [N, 3, C*D, H, W] at normalised
    coords [N, P, 3] in [-1, 1] (outside: zero padding); `table` = texel_table(planes, D).

    Gradients flow to `planes` and `coords` (first order)."""
    return sample_chained(planes, table, coords, None)[0]


def sample_chained(planes: torch.Tensor, table: torch.Tensor, coords: torch.Tensor,
                   token: Optional[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
    """sample() for one of several calls on the same planes and table: (features, token for the next call).

    Pass token=None to the first call and each call's token to the next; the planes gradient of all calls
    then reaches `planes` as one tensor, summed in place (see _TriGridSample)."""
    if coords.ndim != 3 or coords.shape[0] != table.shape[0] or coords.shape[2] != 3:
        raise ValueError(f'coords: expected [{table.shape[0]}, P, 3], got {list(coords.shape)}')
    return _TriGridSample.apply(planes if token is None else token, table, coords.to(table.dtype).contiguous(),
                                planes.requires_grad)
