"""torch_utils/custom_ops.py: plugins are built at most once per process, a failure is cached and
reported in one line, no CUDA device means no CUDA build attempt, CPU tensors never reach a CUDA
plugin, and CPU-only plugins build with OpenMP flags in a directory keyed by the host CPU."""
import os

import pytest
import torch
from torch.utils import cpp_extension

from torch_utils import custom_ops
from torch_utils.ops import bias_act_cuda, upfirdn2d_cuda
from torch_utils.ops.bias_act import bias_act
from torch_utils.ops.upfirdn2d import setup_filter, upfirdn2d

NINJA_FAILURE = ("Error building extension 'bias_act_plugin': [1/3] /usr/local/cuda/bin/nvcc -c bias_act.cu\n"
                 "FAILED: bias_act.cuda.o\n"
                 "bias_act.cu(12): error: identifier \"foo\" is undefined\n"
                 "ninja: build stopped: subcommand failed.")


@pytest.fixture
def fresh_cache(monkeypatch, tmp_path):
    """An empty plugin cache and a private extensions directory."""
    monkeypatch.setattr(custom_ops, '_plugins', {})
    monkeypatch.setenv('TORCH_EXTENSIONS_DIR', str(tmp_path))


class FakeLoad:
    """Stands in for cpp_extension.load: records its calls and returns `result` or raises it."""

    def __init__(self):
        self.calls = []
        self.result = object()

    def __call__(self, **kwargs):
        self.calls.append(kwargs)
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


@pytest.fixture
def fake_load(monkeypatch):
    """A FakeLoad installed as cpp_extension.load."""
    fake = FakeLoad()
    monkeypatch.setattr(cpp_extension, 'load', fake)
    return fake


def _pretend_cuda(monkeypatch, available: bool) -> None:
    """Make torch.cuda.is_available() return `available`."""
    monkeypatch.setattr(torch.cuda, 'is_available', lambda: available)


@pytest.mark.parametrize('error, shown', [(RuntimeError(NINJA_FAILURE), 'identifier "foo" is undefined'),
                                          (OSError('CUDA_HOME environment variable is not set.'), 'CUDA_HOME')])
def test_failed_build_is_cached_and_reported_in_one_line(monkeypatch, capsys, fresh_cache, fake_load, error, shown):
    """Three calls: one build attempt, one line on stderr naming the plugin and the cause, None each time."""
    _pretend_cuda(monkeypatch, True)
    fake_load.result = error
    results = [custom_ops.get_plugin('bias_act_plugin', ['bias_act.cpp', 'bias_act.cu']) for _ in range(3)]
    assert results == [None, None, None]
    assert len(fake_load.calls) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ''
    assert 'bias_act_plugin' in lines[0] and shown in lines[0] and 'failed' in lines[0]


def test_successful_build_is_cached(monkeypatch, capsys, fresh_cache, fake_load):
    """The module is built once, with our nvcc flags and sources from ops/cuda, and returned every time."""
    _pretend_cuda(monkeypatch, True)
    modules = [custom_ops.get_plugin('upfirdn2d_plugin', ['upfirdn2d.cpp', 'upfirdn2d.cu']) for _ in range(2)]
    assert modules[0] is fake_load.result and modules[1] is modules[0]
    assert len(fake_load.calls) == 1
    assert fake_load.calls[0]['extra_cuda_cflags'] == custom_ops.cuda_flags()
    assert all(os.path.isfile(p) and p.startswith(custom_ops.SOURCE_DIR) for p in fake_load.calls[0]['sources'])
    assert fake_load.calls[0]['build_directory'].startswith(os.environ['TORCH_EXTENSIONS_DIR'])
    assert capsys.readouterr().err == ''


def test_no_cuda_device_means_no_build_and_no_message(monkeypatch, capsys, fresh_cache, fake_load):
    """Without a CUDA device get_plugin returns None without trying to build, silently."""
    _pretend_cuda(monkeypatch, False)
    assert custom_ops.get_plugin('bias_act_plugin', ['bias_act.cpp', 'bias_act.cu']) is None
    assert not upfirdn2d_cuda.available() and not bias_act_cuda.available()
    assert fake_load.calls == []
    assert capsys.readouterr().err == ''


def test_build_directory_depends_on_flags(fresh_cache):
    """Changing the nvcc flags (or sources) selects a different build directory."""
    sources = [os.path.join(custom_ops.SOURCE_DIR, s) for s in ('bias_act.cpp', 'bias_act.cu')]
    plain = custom_ops._build_dir('bias_act_plugin', sources, custom_ops.cuda_flags())
    debug = custom_ops._build_dir('bias_act_plugin', sources, custom_ops.cuda_flags(['-G']))
    assert plain != debug and os.path.isdir(plain)


def test_cpu_tensors_never_touch_the_plugin(monkeypatch):
    """impl='auto' on CPU tensors uses PyTorch without building; impl='cuda' is a clear error."""
    def no_build(*args, **kwargs):
        raise AssertionError('get_plugin must not be called for CPU tensors')

    monkeypatch.setattr(custom_ops, 'get_plugin', no_build)
    x = torch.randn(1, 2, 8, 8)
    f = setup_filter([1, 3, 3, 1])
    assert upfirdn2d(x, f, up=2, padding=[2, 1, 2, 1]).shape == (1, 2, 16, 16)
    assert bias_act(x, torch.zeros(2), act='lrelu').shape == x.shape
    with pytest.raises(ValueError, match='CUDA tensor'):
        upfirdn2d(x, f, impl='cuda')
    with pytest.raises(ValueError, match='CUDA tensor'):
        bias_act(x, impl='cuda')


CPU_SOURCE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'training', 'deformation',
                              'csrc')
GCC_FAILURE = ("Error building extension 'nearest_triangle_plugin': [1/2] c++ -c nearest_triangle.cpp\n"
               "FAILED: nearest_triangle.o\n"
               "nearest_triangle.cpp:12:10: fatal error: torch/extension.h: No such file or directory\n"
               "ninja: build stopped: subcommand failed.")


def test_failed_cpu_build_is_cached_and_reported_in_one_line(monkeypatch, capsys, fresh_cache, fake_load):
    """A CPU plugin is built without any CUDA device; a failure is one stderr line and is not retried."""
    _pretend_cuda(monkeypatch, False)
    fake_load.result = RuntimeError(GCC_FAILURE)
    results = [custom_ops.get_plugin('nearest_triangle_plugin', ['nearest_triangle.cpp'], cuda=False,
                                     source_dir=CPU_SOURCE_DIR) for _ in range(3)]
    assert results == [None, None, None]
    assert len(fake_load.calls) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and captured.out == ''
    assert 'nearest_triangle_plugin' in lines[0] and 'torch/extension.h' in lines[0] and 'failed' in lines[0]


def test_successful_cpu_build_uses_openmp_flags_and_is_cached(monkeypatch, capsys, fresh_cache, fake_load):
    """CPU plugins get CPU_CFLAGS / CPU_LDFLAGS (no nvcc flags) and sources from their own folder."""
    _pretend_cuda(monkeypatch, False)
    modules = [custom_ops.get_plugin('nearest_triangle_plugin', ['nearest_triangle.cpp'], cuda=False,
                                     source_dir=CPU_SOURCE_DIR) for _ in range(2)]
    assert modules[0] is fake_load.result and modules[1] is modules[0]
    assert len(fake_load.calls) == 1
    call = fake_load.calls[0]
    assert call['extra_cflags'] == custom_ops.CPU_CFLAGS and '-fopenmp' in call['extra_cflags']
    assert call['extra_ldflags'] == custom_ops.CPU_LDFLAGS and 'extra_cuda_cflags' not in call
    assert call['sources'] == [os.path.join(CPU_SOURCE_DIR, 'nearest_triangle.cpp')]
    assert call['build_directory'].startswith(os.environ['TORCH_EXTENSIONS_DIR'])
    assert capsys.readouterr().err == ''


def test_cpu_build_directory_depends_on_the_host_cpu(fresh_cache):
    """-march=native builds are keyed by the host CPU, so a shared cache never serves another CPU's build."""
    sources = [os.path.join(CPU_SOURCE_DIR, 'nearest_triangle.cpp')]
    here = custom_ops._build_dir('nearest_triangle_plugin', sources, custom_ops.CPU_CFLAGS, CPU_SOURCE_DIR,
                                 custom_ops.host_cpu())
    other = custom_ops._build_dir('nearest_triangle_plugin', sources, custom_ops.CPU_CFLAGS, CPU_SOURCE_DIR,
                                  'model name: another CPU')
    assert here != other and custom_ops.host_cpu()


@pytest.mark.parametrize('kwargs', [dict(), dict(source_dir=CPU_SOURCE_DIR, extra_cuda_cflags=['-G'])])
def test_cpu_plugin_needs_a_source_dir_and_no_nvcc_flags(fresh_cache, fake_load, kwargs):
    """cuda=False without source_dir, or with nvcc flags, is a ValueError before any build."""
    with pytest.raises(ValueError, match='CPU plugins'):
        custom_ops.get_plugin('nearest_triangle_plugin', ['nearest_triangle.cpp'], cuda=False, **kwargs)
    assert fake_load.calls == []


def test_include_dirs_reach_the_compiler_and_key_the_build(fresh_cache, fake_load, tmp_path):
    """Headers of an include dir are passed on (extra_include_paths) and are part of the build directory's key:
    editing one gives a new build directory, so a cached build never outlives a header it included."""
    sources, shared = tmp_path / 'src', tmp_path / 'shared'
    sources.mkdir()
    shared.mkdir()
    (sources / 'op.cpp').write_text('#include "helper.h"\n')
    (shared / 'helper.h').write_text('inline int helper() { return 1; }\n')
    fake_load.result = object()
    module = custom_ops.get_plugin('include_test_plugin', ['op.cpp'], cuda=False, source_dir=str(sources),
                                   include_dirs=[str(shared)])
    assert module is fake_load.result and fake_load.calls[0]['extra_include_paths'] == [str(shared)]
    key = lambda: custom_ops._build_dir('include_test_plugin', [str(sources / 'op.cpp')], custom_ops.CPU_CFLAGS,
                                        str(sources), custom_ops.host_cpu(), [str(shared)])
    before = key()
    assert fake_load.calls[0]['build_directory'] == before
    (shared / 'helper.h').write_text('inline int helper() { return 2; }\n')
    assert key() != before
