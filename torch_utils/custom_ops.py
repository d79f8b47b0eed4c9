"""Lazy, cached building of compiled operator plugins (CUDA kernels via torch.utils.cpp_extension).

A plugin is built at most once per process: success and failure are both cached, and a failure
prints one line and makes callers fall back to the PyTorch implementation. Nothing is compiled
at import time.
"""
import hashlib
import os
import sys
from typing import Dict, List, Optional

import torch

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'ops', 'cuda')

_plugins: Dict[str, Optional[object]] = {}


def _build_dir(name: str, sources: List[str]) -> str:
    """A per-source-hash build directory under the torch extensions cache."""
    digest = hashlib.sha256()
    for path in sources:
        with open(path, 'rb') as f:
            digest.update(f.read())
    digest.update(torch.__version__.encode())
    root = os.environ.get('TORCH_EXTENSIONS_DIR') or os.path.join(
        os.environ.get('XDG_CACHE_HOME', os.path.expanduser('~/.cache')), 'portrait3d', 'torch_extensions')
    path = os.path.join(root, f'{name}-{digest.hexdigest()[:16]}')
    os.makedirs(path, exist_ok=True)
    return path


def get_plugin(name: str, sources: List[str], extra_cuda_cflags: Optional[List[str]] = None,
               verbose: bool = False) -> Optional[object]:
    """Build (once) and return the extension module `name` from files in `ops/cuda/`, or None.

    None means the plugin is unavailable in this process (no CUDA device, no toolchain, or a
    failed build); the reason is printed once on stderr.
    """
    if name in _plugins:
        return _plugins[name]
    module = None
    if not torch.cuda.is_available():
        reason = 'no CUDA device'
    else:
        paths = [os.path.join(SOURCE_DIR, s) for s in sources]
        try:
            from torch.utils import cpp_extension
            module = cpp_extension.load(
                name=name, sources=paths, build_directory=_build_dir(name, paths), verbose=verbose,
                extra_cuda_cflags=['--use_fast_math'] + list(extra_cuda_cflags or []))
            reason = None
        except Exception as error:  # the build can fail in many ways (ninja, nvcc, compiler, ABI)
            first_line = (str(error).strip().splitlines() or [type(error).__name__])[-1]
            reason = f'build failed: {first_line}'
    if module is None and torch.cuda.is_available():
        print(f'Setting up PyTorch plugin "{name}"... failed ({reason}); using the PyTorch implementation.',
              file=sys.stderr)
    _plugins[name] = module
    return module
