"""Choosing an operator implementation: 'auto' | 'ref' | 'fast' | 'cuda'.

'ref' is the pure-PyTorch definition of correct. 'fast' is an optimised pure-PyTorch path that
runs on any device. 'cuda' is a compiled kernel, built lazily on first CUDA use. 'auto' takes the
compiled kernel for CUDA tensors when it builds and otherwise asks the op (`auto_fallback`) which
pure-PyTorch path suits the call.
"""
from typing import Callable, Optional

import torch

IMPLS = ('auto', 'ref', 'fast', 'cuda')


def resolve_impl(op: str, impl: str, x: torch.Tensor, cuda_available: Callable[[], bool],
                 auto_fallback: Optional[Callable[[torch.Tensor], str]] = None) -> str:
    """Return the concrete implementation ('ref', 'fast' or 'cuda') for one call of `op` on `x`.

    `cuda_available()` is only called for CUDA tensors; it builds the plugin once per process.
    `auto_fallback(x)` picks the pure-PyTorch path when no kernel applies (default: 'ref').
    """
    if impl not in IMPLS:
        raise ValueError(f"{op}: unknown impl {impl!r}; expected one of {', '.join(IMPLS)}")
    if impl == 'cuda':
        if x.device.type != 'cuda':
            raise ValueError(f"{op}: impl='cuda' needs a CUDA tensor, got x on {x.device}")
        if not cuda_available():
            raise RuntimeError(f"{op}: impl='cuda' requested but the CUDA plugin could not be built "
                               f"(see the message above)")
        return 'cuda'
    if impl != 'auto':
        return impl
    if x.device.type == 'cuda' and cuda_available():
        return 'cuda'
    return auto_fallback(x) if auto_fallback is not None else 'ref'
