"""Lazy, cached building of compiled operator plugins (CUDA kernels via torch.utils.cpp_extension).

A plugin is built at most once per process: success and failure are both cached, and a failure
prints one line and makes callers fall back to the PyTorch implementation. Nothing is compiled
at import time. Builds go to $TORCH_EXTENSIONS_DIR (default ~/.cache/portrait3d/torch_extensions)
in a directory keyed by a hash of the sources, headers, flags and torch version.
"""
import glob
import hashlib
import os
import re
import sys
from typing import Dict, List, Optional

import torch

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ops', 'cuda')

_plugins: Dict[str, Optional[object]] = {}

# Compiler-output lines worth showing in the one-line failure message.
_ERROR_LINE = re.compile(r'error|fatal|cannot find|undefined reference|not found|not set', re.IGNORECASE)


def cuda_flags(extra_cuda_cflags: Optional[List[str]] = None) -> List[str]:
    """nvcc flags that get_plugin adds to torch's defaults (the compile tests use the same)."""
    return ['--use_fast_math'] + list(extra_cuda_cflags or [])


def _build_dir(name: str, sources: List[str], flags: List[str]) -> str:
    """A build directory under the extensions cache, unique to the sources, headers and flags."""
    digest = hashlib.sha256()
    for path in list(sources) + sorted(glob.glob(os.path.join(SOURCE_DIR, '*.h'))):
        with open(path, 'rb') as f:
            digest.update(f.read())
    digest.update(' '.join(flags + [torch.__version__, str(torch.version.cuda)]).encode())
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


def get_plugin(name: str, sources: List[str], extra_cuda_cflags: Optional[List[str]] = None,
               verbose: bool = False) -> Optional[object]:
    """Build (once) and return the extension module `name` from files in `ops/cuda/`, or None.

    None means the plugin is unavailable in this process: no CUDA device (silently), or a failed
    build (no toolchain, compiler error, ...), which is reported in one line on stderr.
    """
    if name in _plugins:
        return _plugins[name]
    module = None
    if torch.cuda.is_available():
        paths = [os.path.join(SOURCE_DIR, s) for s in sources]
        flags = cuda_flags(extra_cuda_cflags)
        try:
            from torch.utils import cpp_extension
            module = cpp_extension.load(name=name, sources=paths, build_directory=_build_dir(name, paths, flags),
                                        extra_cuda_cflags=flags, verbose=verbose)
        except Exception as error:  # the build can fail in many ways (ninja, nvcc, compiler, ABI)
            print(f'Setting up PyTorch plugin "{name}"... failed ({_summary(error)}); using the PyTorch '
                  f'implementation. See docs/troubleshooting.md.', file=sys.stderr)
    _plugins[name] = module
    return module
