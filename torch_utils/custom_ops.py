"""Lazy, cached building of compiled operator plugins via torch.utils.cpp_extension: CUDA kernels
(sources in ops/cuda/, built only when a CUDA device is present) and CPU-only C++ extensions
(sources in any folder, built with OpenMP).

A plugin is built at most once per process: success and failure are both cached, and a failure
prints one line and makes callers fall back to the PyTorch implementation. Nothing is compiled
at import time. Builds go to $TORCH_EXTENSIONS_DIR (default ~/.cache/portrait3d/torch_extensions)
in a directory keyed by a hash of the sources, headers, flags and torch version (and, for CPU
plugins built with -march=native, the host CPU).
"""
import glob
import hashlib
import os
import platform
import re
import sys
from typing import Dict, List, Optional, Sequence

import torch

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ops', 'cuda')

_plugins: Dict[str, Optional[object]] = {}

# Compiler-output lines worth showing in the one-line failure message.
_ERROR_LINE = re.compile(r'error|fatal|cannot find|undefined reference|not found|not set', re.IGNORECASE)


def cuda_flags(extra_cuda_cflags: Optional[List[str]] = None) -> List[str]:
    """nvcc flags that get_plugin adds to torch's defaults (the compile tests use the same)."""
    return ['--use_fast_math'] + list(extra_cuda_cflags or [])


# Compiler and linker flags of CPU plugins. -march=native suits a JIT build used on the machine that
# built it; the build directory is keyed by the host CPU's feature flags too (host_cpu).
CPU_CFLAGS = ['-O3', '-march=native', '-fopenmp']
CPU_LDFLAGS = ['-fopenmp']


def host_cpu() -> str:
    """The CPU's model and feature flags (from /proc/cpuinfo where available, else platform)."""
    try:
        with open('/proc/cpuinfo') as f:
            lines = [line for line in f if line.startswith(('model name', 'flags'))]
        return ''.join(sorted(set(lines)))
    except OSError:
        return platform.machine() + platform.processor()


def _build_dir(name: str, sources: List[str], flags: List[str], source_dir: str = SOURCE_DIR, host: str = '',
               include_dirs: Sequence[str] = ()) -> str:
    """A build directory under the extensions cache, unique to the sources, the headers of source_dir and
    include_dirs, the flags and `host`."""
    digest = hashlib.sha256()
    folders = [source_dir, *include_dirs]
    headers = [path for folder in folders for path in sorted(glob.glob(os.path.join(folder, '*.h')))]
    for path in list(sources) + headers:
        with open(path, 'rb') as f:
            digest.update(f.read())
    digest.update(' '.join(flags + [torch.__version__, str(torch.version.cuda)] + ([host] if host else [])).encode())
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')), 'portrait3d', 'torch_extensions')
    path = os.path.join(root, f'{name}-{digest.hexdigest()[:16]}')
    os.makedirs(path, exist_ok=True)
    return path


def _summary(error: BaseException) -> str:
    """One line describing a failed build: the first compiler error line, else the last line."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if _ERROR_LINE.search(line) and not line.startswith('Error building extension'):
            return line[:300]
    return (lines[-1] if lines else type(error).__name__)[:300]


def _report_failure(name: str, error: BaseException) -> None:
    """The one-line message of a failed build, on stderr."""
    print(f'Setting up PyTorch plugin "{name}"... failed ({_summary(error)}); using the PyTorch '
          f'implementation. See docs/troubleshooting.md.', file=sys.stderr)


def _load(name: str, paths: List[str], source_dir: str, cuda: bool, flags: List[str], verbose: bool,
          include_dirs: Sequence[str] = ()):
    """Compile and import the extension (cpp_extension.load with CUDA or CPU/OpenMP flags)."""
    from torch.utils import cpp_extension
    build_directory = _build_dir(name, paths, flags, source_dir, '' if cuda else host_cpu(), include_dirs)
    includes = dict(extra_include_paths=list(include_dirs)) if include_dirs else {}
    if cuda:
        return cpp_extension.load(name=name, sources=paths, build_directory=build_directory,
                                  extra_cuda_cflags=flags, verbose=verbose, **includes)
    return cpp_extension.load(name=name, sources=paths, build_directory=build_directory, extra_cflags=flags,
                              extra_ldflags=CPU_LDFLAGS, verbose=verbose, **includes)


def get_plugin(name: str, sources: List[str], extra_cuda_cflags: Optional[List[str]] = None,
               verbose: bool = False, cuda: bool = True, source_dir: Optional[str] = None,
               include_dirs: Sequence[str] = ()) -> Optional[object]:
    """Build (once) and return the extension module `name`, or None.

    include_dirs: more folders of headers the sources include (their *.h are part of the build's key).

    cuda=True: sources in `ops/cuda/` (or source_dir), built only when a CUDA device is present.
    cuda=False: a CPU-only C++ extension from source_dir (required), built with CPU_CFLAGS.
    None means the plugin is unavailable in this process: no CUDA device for a CUDA plugin
    (silently), or a failed build (no toolchain, compiler error, ...), reported in one line on stderr.
    """
    if name in _plugins:
        return _plugins[name]
    if not cuda and (source_dir is None or extra_cuda_cflags):
        raise ValueError('CPU plugins need source_dir (the folder of their sources) and take no nvcc flags')
    module = None
    if not cuda or torch.cuda.is_available():
        source_dir = source_dir or SOURCE_DIR
        paths = [os.path.join(source_dir, s) for s in sources]
        flags = cuda_flags(extra_cuda_cflags) if cuda else CPU_CFLAGS
        try:
            module = _load(name, paths, source_dir, cuda, flags, verbose, include_dirs)
        except Exception as error:  # the build can fail in many ways (ninja, compiler, linker, ABI)
            _report_failure(name, error)
    _plugins[name] = module
    return module
