"""The fused tri-grid kernels (training/rendering/trigrid_cpp.py, csrc/trigrid_sample*): values and
gradients w.r.t. planes and coordinates equal the grid_sample reference; the CUDA sources compile
and their work items, run on the CPU by tests/trigrid_host_harness.cpp, equal it too; a failed
build falls back to the PyTorch samplers with one line on stderr."""
import ctypes
import os
import shutil
import subprocess
import sysconfig

import pytest
import torch
from torch.utils import cpp_extension

from test_cuda_ops import ABI, CXX, NVCC, _cuda_include_dir, _torch_includes
from torch_utils import custom_ops
from training.rendering import trigrid_cpp
from training.rendering.planes import TriGridSampler, _grid_sample_trigrid, sample_trigrid
from thread_testing import torch_threads

needs_plugin = pytest.mark.skipif(not trigrid_cpp.available('cpu'),
                                  reason='the trigrid_sample CPU plugin could not be built (see stderr)')
needs_nvcc = pytest.mark.skipif(NVCC is None or CXX is None, reason='nvcc or g++ is not on PATH')
HARNESS = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'trigrid_host_harness.cpp')


def random_case(n, c, depth, h, w, p, dtype=torch.float64, seed=0, spread=2.6):
    """Planes [n, 3, c*depth, h, w], coords [n, p, 3] in +-spread/2 (beyond [-1, 1]: zero padding; the first
    point of each batch element outside the box) and grad [n, p, c]."""
    g = torch.Generator().manual_seed(seed)
    planes = torch.randn(n, 3, c * depth, h, w, generator=g, dtype=dtype)
    coords = (torch.rand(n, p, 3, generator=g, dtype=dtype) - 0.5) * spread
    coords[:, 0] = torch.tensor([1.5, -1.4, 1.3], dtype=dtype)
    return planes, coords, torch.randn(n, p, c, generator=g, dtype=dtype)


def permuted_table(planes, depth):
    """The texel table [N, 3, H, W, D, C] by torch's permute (independent of the plugin's transposes)."""
    n, _, cd, h, w = planes.shape
    return planes.reshape(n, 3, cd // depth, depth, h, w).permute(0, 1, 4, 5, 3, 2).contiguous()


def values_and_grads(fn, planes, coords, grad):
    """(features, d/d planes, d/d coords) of fn(planes, coords) for upstream gradient grad."""
    planes, coords = planes.clone().requires_grad_(), coords.clone().requires_grad_()
    features = fn(planes, coords)
    return (features, *torch.autograd.grad(features, (planes, coords), grad))


def compiled(depth):
    """fn(planes, coords) through the compiled CPU kernel."""
    return lambda planes, coords: trigrid_cpp.sample(planes, trigrid_cpp.texel_table(planes, depth), coords)


def reference(depth):
    """fn(planes, coords) through torch's grid_sample."""
    return lambda planes, coords: _grid_sample_trigrid(planes, coords, depth)


@needs_plugin
@pytest.mark.parametrize('depth', [1, 3])
@pytest.mark.parametrize('n', [1, 3])
@pytest.mark.parametrize('n_points', [40, 700])   # fewer / more points than texels per plane
def test_matches_grid_sample_float64(depth, n, n_points):
    """Odd H != W, C = 5 (not a multiple of 8), points beyond [-1, 1]: values and both gradients."""
    case = random_case(n, 5, depth, 7, 11, n_points, seed=depth * 10 + n)
    expected = values_and_grads(reference(depth), *case)
    actual = values_and_grads(compiled(depth), *case)
    for name, a, e in zip(('features', 'planes', 'coords'), actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11, msg=lambda m: f'{name}: {m}')
    assert expected[2].abs().max() > 1 and (expected[0] == 0).all(dim=-1).any()   # exercised, some outside


@needs_plugin
def test_matches_grid_sample_on_wide_planes():
    """W = 70 and H = 17: several runs of texel columns and bands of rows in the planes gradient, D = 2."""
    case = random_case(2, 3, 2, 17, 70, 3000, seed=11)
    for name, a, e in zip(('features', 'planes', 'coords'), values_and_grads(compiled(2), *case),
                          values_and_grads(reference(2), *case)):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11, msg=lambda m: f'{name}: {m}')


@needs_plugin
def test_planes_gradient_where_points_reach_only_some_runs_of_columns():
    """Points in one corner of 9 x 150 planes: runs of columns no point reaches are written as zeros,
    the others gathered; both kinds occur in one row, and the result matches grid_sample."""
    planes, coords, grad = random_case(2, 4, 1, 9, 150, 400, seed=3)
    coords = torch.rand(coords.shape, generator=torch.Generator().manual_seed(4), dtype=coords.dtype) * 0.3
    actual = values_and_grads(compiled(1), planes, coords, grad)
    expected = values_and_grads(reference(1), planes, coords, grad)
    for name, a, e in zip(('features', 'planes', 'coords'), actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11, msg=lambda m: f'{name}: {m}')
    reached = expected[1].abs().sum(dim=(0, 1, 2)) > 0                    # [H, W] texels with a gradient
    assert reached[:, 64:128].any() and not reached[:, :64].any() and not reached[:, 128:].any()
    assert not reached[:4].any() and reached[4].any()                     # whole rows without points too


@needs_plugin
@pytest.mark.parametrize('depth', [1, 3])
def test_matches_grid_sample_float32(depth):
    """float32, C = 32 (the register kernels; 1400 points make two forward work items) and 12 on 16 x 20 planes,
    within float32 rounding (coordinate gradients sum C x 12 or 24 products of size 10 slopes: absolute tolerance
    2e-4 on values of order 10)."""
    for c in (32, 12):
        case = random_case(2, c, depth, 16, 20, 700, dtype=torch.float32, seed=c, spread=2.2)
        for name, a, e, atol in zip(('features', 'planes', 'coords'), values_and_grads(compiled(depth), *case),
                                    values_and_grads(reference(depth), *case), (2e-5, 2e-5, 2e-4)):
            torch.testing.assert_close(a, e, rtol=1e-4, atol=atol, msg=lambda m: f'{name}: {m}')


@needs_plugin
def test_edges_and_texel_centres():
    """Exact texel centres read the texel; points half a texel beyond the faces read half; further, zero."""
    planes = torch.zeros(1, 3, 2, 4, 6, dtype=torch.float64)
    planes[0, 0, :, 1, 0] = torch.tensor([3.0, -6.0])   # plane 0: W <- x, H <- y; texel (h 1, w 0)
    x, y = 1 / 6 - 1, 3 / 4 - 1                          # its centre
    coords = torch.tensor([[[x, y, 0.3], [-1.0, y, 0.3], [-1 - 1 / 6, y, 0.3], [-1.5, y, 0.3]]], dtype=torch.float64)
    features = trigrid_cpp.sample(planes, trigrid_cpp.texel_table(planes, 1), coords)[0]
    expected = torch.tensor([[1.0, -2.0], [0.5, -1.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(features, expected)
    torch.testing.assert_close(features, _grid_sample_trigrid(planes, coords, 1)[0])


@needs_plugin
@pytest.mark.parametrize('depth', [1, 2])
def test_gradcheck(depth):
    """torch.autograd.gradcheck of planes -> table -> features w.r.t. planes and coords (float64)."""
    planes, coords, _ = random_case(1, 3, depth, 3, 4, 6, seed=7, spread=2.2)
    assert torch.autograd.gradcheck(compiled(depth), (planes.requires_grad_(), coords.requires_grad_()))


@needs_plugin
def test_double_backward_raises():
    """The backward is first order only: differentiating it again is a clear error, not a wrong number."""
    planes, coords, _ = random_case(1, 2, 1, 4, 4, 5)
    planes.requires_grad_()
    grad, = torch.autograd.grad(compiled(1)(planes, coords).square().sum(), planes, create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable'):
        grad.sum().backward()


@needs_plugin
def test_single_input_gradients_and_thread_count_independence():
    """Gradients w.r.t. only planes or only coords; results are bitwise equal with 1 and 2 threads."""
    planes, coords, grad = random_case(3, 6, 3, 9, 5, 300, dtype=torch.float32, seed=3)
    expected = values_and_grads(compiled(3), planes, coords, grad)
    for leaf in (0, 1):
        args = [planes, coords]
        args[leaf] = args[leaf].clone().requires_grad_()
        only, = torch.autograd.grad(compiled(3)(*args), args[leaf], grad)
        torch.testing.assert_close(only, expected[1 + leaf], rtol=0, atol=0)
    with torch_threads(1 if torch.get_num_threads() > 1 else 2):
        other = values_and_grads(compiled(3), planes, coords, grad)
    for a, e in zip(other, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


@needs_plugin
@pytest.mark.parametrize('c, depth, h, w, dtype', [
    (5, 3, 7, 9, torch.float32),     # partial 8 x 8 blocks (register-free path)
    (16, 1, 7, 9, torch.float32),    # streaming register transposes, 63 texels: a partial texel group
    (8, 3, 20, 27, torch.float32),   # streaming with D = 3, 540 texels: three work items, the last partial
    (16, 1, 7, 9, torch.float64)])   # float64: the blocked path
def test_texel_table_is_the_channels_last_permutation(c, depth, h, w, dtype):
    """The plugin's transposes equal torch's permute."""
    planes = random_case(2, c, depth, h, w, 1, dtype=dtype)[0]
    assert torch.equal(trigrid_cpp.texel_table(planes, depth), permuted_table(planes, depth))


@needs_plugin
def test_sampler_uses_the_kernel_and_rejects_bad_coords():
    planes, coords, _ = random_case(2, 4, 3, 6, 6, 50, seed=4)
    sampler = TriGridSampler(planes, 3, box_warp=1.0, impl='cpp')
    for part in (slice(0, 20), slice(20, 50)):   # one cached table for several calls
        torch.testing.assert_close(sampler(coords[:, part] / 2), _grid_sample_trigrid(planes, coords[:, part], 3))
    assert list(sampler._tables) == ['compiled']
    with pytest.raises(ValueError, match='coords'):
        trigrid_cpp.sample(planes, trigrid_cpp.texel_table(planes, 3), coords[:1])


def test_failed_build_falls_back_with_one_line(monkeypatch, capsys, tmp_path):
    """A failed build is reported once on stderr; 'auto' and 'cpp' then sample with PyTorch."""
    def failing_load(*args, **kwargs):
        raise RuntimeError("Error building extension 'trigrid_sample_plugin'\n"
                           "trigrid_sample.cpp:1:10: fatal error: torch/extension.h: No such file or directory")

    monkeypatch.setattr(custom_ops, '_plugins', {})
    monkeypatch.setattr(custom_ops, '_load', failing_load)
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))
    planes, coords, _ = random_case(1, 4, 3, 5, 6, 30, seed=5)
    for impl in ('auto', 'cpp', 'auto'):
        torch.testing.assert_close(sample_trigrid(planes, coords / 2, 3, 1.0, impl),
                                   _grid_sample_trigrid(planes, coords, 3))
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and 'trigrid_sample_plugin' in lines[0] and 'failed' in lines[0]
    assert not trigrid_cpp.available('cpu')


def test_sources_exist():
    """Every source named by the loader exists (a typo would silently disable a kernel)."""
    for name in trigrid_cpp.CPU_SOURCES + trigrid_cpp.CUDA_SOURCES:
        assert os.path.isfile(os.path.join(trigrid_cpp.SOURCE_DIR, name)), name


def _own_warnings(stderr: str):
    """Compiler warnings that point into the tri-grid sources."""
    return [line for line in stderr.splitlines() if 'warning' in line.lower() and trigrid_cpp.SOURCE_DIR in line]


@needs_nvcc
def test_cuda_kernel_compiles_with_nvcc(tmp_path):
    """nvcc -c for sm_80 with torch's extension flags, without errors or warnings in our code."""
    source = os.path.join(trigrid_cpp.SOURCE_DIR, 'trigrid_sample_cuda.cu')
    result = subprocess.run([NVCC, '-c', source, '-o', str(tmp_path / 'kernel.o'), '-std=c++17', '-arch=sm_80', ABI,
                             '--compiler-options', '-fPIC,-Wall,-Wextra', *cpp_extension.COMMON_NVCC_FLAGS,
                             *custom_ops.cuda_flags(), *_torch_includes(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not _own_warnings(result.stderr)


@needs_nvcc
def test_cuda_binding_compiles(tmp_path):
    """g++ -fsyntax-only -Wall -Wextra of the CUDA binding against torch, Python and CUDA headers (the CPU
    binding is compiled for real by the tests above)."""
    source = os.path.join(trigrid_cpp.SOURCE_DIR, 'trigrid_sample_cuda.cpp')
    result = subprocess.run([CXX, '-fsyntax-only', source, '-std=c++17', '-Wall', '-Wextra', ABI,
                             '-DTORCH_EXTENSION_NAME=trigrid_test', '-DTORCH_API_INCLUDE_EXTENSION_H',
                             *_torch_includes(tmp_path),
                             '-isystem', sysconfig.get_paths()['include'], '-isystem', _cuda_include_dir()],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not _own_warnings(result.stderr)


@pytest.fixture(scope='module')
def harness(tmp_path_factory):
    """The host harness of the CUDA work items, built with g++ (skips without g++)."""
    if shutil.which('g++') is None:
        pytest.skip('g++ is not on PATH')
    library = str(tmp_path_factory.mktemp('trigrid_harness') / 'trigrid_host_harness.so')
    result = subprocess.run(['g++', '-std=c++17', '-O1', '-Wall', '-Wextra', '-Werror', '-shared', '-fPIC', '-I',
                             trigrid_cpp.SOURCE_DIR, HARNESS, '-o', library], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lib = ctypes.CDLL(library)
    lib.trigrid_forward_host.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64] * 6
    lib.trigrid_backward_host.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] * 6
    return lib


@pytest.mark.parametrize('depth', [1, 3])
def test_cuda_work_items_match_grid_sample(harness, depth):
    """The CUDA kernels' work items (channel groups of 8, planes, atomics as plain adds) on the CPU, C = 11."""
    planes, coords, grad = random_case(2, 11, depth, 5, 7, 200, seed=depth)
    table = permuted_table(planes, depth)
    n, _, h, w, d, c = table.shape
    sizes = (n, coords.shape[1], c, h, w, d)
    out, grad_table, grad_coords = torch.empty_like(grad), torch.zeros_like(table), torch.zeros_like(coords)
    harness.trigrid_forward_host(table.data_ptr(), coords.data_ptr(), out.data_ptr(), *sizes)
    harness.trigrid_backward_host(table.data_ptr(), coords.data_ptr(), grad.data_ptr(), grad_table.data_ptr(),
                                  grad_coords.data_ptr(), *sizes)
    features, grad_planes, expected_coords = values_and_grads(reference(depth), planes, coords, grad)
    torch.testing.assert_close(out, features, rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(grad_table, permuted_table(grad_planes, depth), rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(grad_coords, expected_coords, rtol=1e-11, atol=1e-11)
