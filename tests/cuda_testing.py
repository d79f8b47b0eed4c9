"""Shared helpers of the CUDA-op tests: CPU stand-ins for the compiled plugins, and test cases.

The kernels' element math (torch_utils/ops/cuda/upfirdn2d.h, bias_act.h) is compiled with the
host compiler (cuda_host_harness.cpp) and driven through ctypes behind the same Python entry
points as the real plugins, including the operand checks of the torch bindings. Monkeypatching a
module's `_plugin` with these runs its autograd Functions end to end on the CPU.
"""
import atexit
import ctypes
import functools
import math
import os
import shutil
import subprocess
import tempfile

import numpy as np
import pytest
import torch

from torch_utils import custom_ops

HARNESS_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cuda_host_harness.cpp')
_DTYPE_CODES = {torch.float32: 0, torch.float64: 1}  # DType in ops_common.h
_I64, _INT, _DBL, _PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p


@functools.lru_cache(maxsize=None)
def harness_library() -> ctypes.CDLL:
    """Build the harness once per process (skips the test when there is no g++)."""
    compiler = shutil.which('g++')
    if compiler is None:
        pytest.skip('g++ is not on PATH: cannot build the host harness of the CUDA kernels')
    build_dir = tempfile.mkdtemp(prefix='cuda_harness_')
    atexit.register(shutil.rmtree, build_dir, True)
    library = os.path.join(build_dir, 'cuda_host_harness.so')
    result = subprocess.run([compiler, '-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC',
                             '-I', custom_ops.SOURCE_DIR, HARNESS_SOURCE, '-o', library], capture_output=True, text=True)
    assert result.returncode == 0, f'building the host harness failed:\n{result.stderr}'
    lib = ctypes.CDLL(library)
    lib.upfirdn2d_host.argtypes = [_INT, _PTR, _PTR, _PTR] + [_I64] * 5 + [_INT] * 9 + [_DBL]
    lib.bias_act_host.argtypes = [_INT] + [_PTR] * 6 + [_I64] * 3 + [_INT] * 3 + [_DBL] * 3
    return lib


def _ptr(t: torch.Tensor):
    """Data pointer of a contiguous CPU tensor, None for an empty one (an absent operand)."""
    assert t.device.type == 'cpu' and t.is_contiguous()
    return t.data_ptr() if t.numel() else None


class HostUpfirdn2dPlugin:
    """Same entry point as the compiled upfirdn2d_plugin, running upfirdn2d_element on the CPU."""

    def upfirdn2d(self, x, f, up_x, up_y, down_x, down_y, pad_x0, pad_x1, pad_y0, pad_y1, flip_filter, gain):
        """As upfirdn2d.cpp: x [N, C, H, W], f [fh, fw] in the accumulation dtype."""
        assert x.ndim == 4 and f.ndim == 2 and f.dtype == x.dtype, 'f must be 2-D in the accumulation dtype'
        out_h = (x.shape[2] * up_y + pad_y0 + pad_y1 - f.shape[0]) // down_y + 1
        out_w = (x.shape[3] * up_x + pad_x0 + pad_x1 - f.shape[1]) // down_x + 1
        y = x.new_empty([x.shape[0], x.shape[1], out_h, out_w])
        harness_library().upfirdn2d_host(
            _DTYPE_CODES[x.dtype], _ptr(x), _ptr(f), _ptr(y), x.shape[0] * x.shape[1], x.shape[2], x.shape[3],
            out_h, out_w, up_x, up_y, down_x, down_y, pad_x0, pad_y0, f.shape[1], f.shape[0], int(flip_filter), gain)
        return y


class HostBiasActPlugin:
    """Same entry point as the compiled bias_act_plugin, running bias_act_element on the CPU."""

    def bias_act(self, x, b, y, g1, g2, dim, act, mode, grad_from_x, alpha, gain, clamp):
        """As bias_act.cpp, including its checks that each mode gets the operands it reads."""
        ref = x if mode == 0 else g1
        for t in (x, y, g1, g2):
            assert t.numel() == 0 or (t.shape == ref.shape and t.dtype == ref.dtype)
        if mode != 0:
            assert x.numel() or not grad_from_x, 'x is required for gradients computed from x'
            assert y.numel() or (grad_from_x and clamp < 0), 'y is required for gradients from y or with clamping'
            assert g2.numel() or mode != 2, 'g2 is required for the second-order term'
        b_step = math.prod(ref.shape[dim + 1:]) if b.numel() else 1
        assert b.numel() == 0 or b.shape == (ref.shape[dim],)
        out = torch.empty_like(ref)
        harness_library().bias_act_host(
            _DTYPE_CODES[ref.dtype], _ptr(x), _ptr(b), _ptr(y), _ptr(g1), _ptr(g2), _ptr(out), ref.numel(), b_step,
            max(b.numel(), 1), act, mode, int(grad_from_x), alpha, gain, clamp)
        return out


def random_upfirdn2d_cases(seed: int, count: int):
    """`count` random valid upfirdn2d settings: dicts of shape, f (float64), up, down, padding, flip_filter, gain."""
    rng = np.random.default_rng(seed)
    cases = []
    while len(cases) < count:
        shape = tuple(int(v) for v in (rng.integers(1, 3), rng.integers(1, 4), rng.integers(1, 9), rng.integers(1, 9)))
        up, down = tuple(int(v) for v in rng.integers(1, 4, 2)), tuple(int(v) for v in rng.integers(1, 4, 2))
        padding = tuple(int(v) for v in rng.integers(-2, 5, 4))
        taps = [int(v) for v in rng.integers(1, 6, 2)]
        f = torch.tensor(rng.normal(size=taps[:1] if rng.random() < 0.4 else taps), dtype=torch.float64)
        fw, fh = f.shape[-1], f.shape[0]
        if shape[3] * up[0] + padding[0] + padding[1] < fw or shape[2] * up[1] + padding[2] + padding[3] < fh:
            continue
        cases.append(dict(shape=shape, f=f, up=up, down=down, padding=padding,
                          flip_filter=bool(rng.random() < 0.5), gain=float(rng.uniform(0.5, 2))))
    return cases


def _binomial4() -> torch.Tensor:
    """The [1, 3, 3, 1] low-pass filter of StyleGAN2 as a normalised 4x4 float64 kernel."""
    f = torch.tensor([1., 3., 3., 1.], dtype=torch.float64)
    return f.outer(f) / 64


# The resampling settings StyleGAN2 / EG3D use: 4-tap 2-D and 12-tap separable filters.
STYLEGAN_UPFIRDN2D_CASES = [
    dict(shape=(2, 3, 8, 8), f=_binomial4(), up=(2, 2), down=(1, 1), padding=(2, 1, 2, 1), flip_filter=False,
         gain=4.0),
    dict(shape=(2, 3, 8, 8), f=_binomial4(), up=(1, 1), down=(2, 2), padding=(1, 1, 1, 1), flip_filter=False,
         gain=1.0),
    dict(shape=(1, 2, 6, 6), f=torch.hann_window(12, periodic=False, dtype=torch.float64), up=(2, 2), down=(1, 1),
         padding=(6, 5, 6, 5), flip_filter=False, gain=4.0),
    dict(shape=(1, 2, 8, 8), f=torch.hann_window(12, periodic=False, dtype=torch.float64), up=(1, 1), down=(2, 2),
         padding=(5, 5, 5, 5), flip_filter=True, gain=1.0),
]


def bias_act_grads(fn, x: torch.Tensor, b: torch.Tensor, dy: torch.Tensor, w: torch.Tensor):
    """[y, dx, db, d(sum(dx * w))/dx, d(sum(dx * w))/db] of y = fn(x, b): first- and second-order results."""
    x, b = x.detach().requires_grad_(True), b.detach().requires_grad_(True)
    y = fn(x, b)
    dx, db = torch.autograd.grad(y, [x, b], dy, create_graph=True)
    ddx = ddb = None
    if dx.requires_grad:  # dx is constant in x for linear activations without clamping
        ddx, ddb = torch.autograd.grad((dx * w).sum(), [x, b], allow_unused=True)
    return [y, dx, db, torch.zeros_like(x) if ddx is None else ddx, torch.zeros_like(b) if ddb is None else ddb]
