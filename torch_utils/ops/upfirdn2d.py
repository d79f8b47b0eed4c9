"""2-D upsample, FIR filter, downsample (upfirdn2d) and the resampling helpers built on it.

Conventions (as in StyleGAN2): `x` is [N, C, H, W]; `f` is a 2-D filter [fh, fw], a 1-D filter
[fw] applied separably along both axes, or None (identity). The op inserts up-1 zeros after each
input pixel, pads (negative padding crops), convolves every channel with `f` (a true convolution:
the filter is flipped unless `flip_filter`), and keeps every `down`-th pixel. `gain` scales the
result. `padding` is an int, [px, py] or [px0, px1, py0, py1].

Implementations: 'ref' (_upfirdn2d_ref below) is the definition; 'fast' (upfirdn2d_fast.py)
computes the same without multiplying inserted zeros or discarded samples; 'cuda' is the compiled
kernel. 'auto' picks per call (_auto_impl).
"""
from typing import Optional, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn.functional as F

from .dispatch import resolve_impl

Scaling = Union[int, Sequence[int]]
Padding = Union[int, Sequence[int]]


def _as_list(value) -> list:
    """`value` as a list if it is a sequence, else [value]."""
    return list(value) if isinstance(value, (list, tuple, torch.Size, np.ndarray)) else [value]


def _is_int(v) -> bool:
    """A Python or numpy integer (not a bool)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _parse_scaling(name: str, value: Scaling) -> Tuple[int, int]:
    """Return (sx, sy) from an int or an [sx, sy] pair; each must be an int >= 1."""
    pair = _as_list(value)
    pair = pair * 2 if len(pair) == 1 else pair
    if len(pair) != 2 or not all(_is_int(v) and v >= 1 for v in pair):
        raise ValueError(f'{name}: expected an int >= 1 or a pair of them, got {value!r}')
    return int(pair[0]), int(pair[1])


def _parse_padding(padding: Padding) -> Tuple[int, int, int, int]:
    """Return (px0, px1, py0, py1) from an int, [px, py] or [px0, px1, py0, py1]."""
    values = _as_list(padding)
    if not all(_is_int(v) for v in values) or len(values) not in (1, 2, 4):
        raise ValueError(f'padding: expected an int, [px, py] or [px0, px1, py0, py1], got {padding!r}')
    if len(values) == 1:
        values = values * 4
    if len(values) == 2:
        values = [values[0], values[0], values[1], values[1]]
    return tuple(int(v) for v in values)


def _get_filter_size(f: Optional[torch.Tensor]) -> Tuple[int, int]:
    """(fw, fh) of a 1-D, 2-D or absent filter."""
    if f is None:
        return 1, 1
    if not isinstance(f, torch.Tensor) or f.ndim not in (1, 2):
        raise ValueError(f'f: expected a 1-D or 2-D filter tensor, got {_describe(f)}')
    return int(f.shape[-1]), int(f.shape[0])


def _describe(t) -> str:
    """Shape and dtype of a tensor (or the type of anything else) for error messages."""
    return f'shape {list(t.shape)}, dtype {t.dtype}' if isinstance(t, torch.Tensor) else type(t).__name__


def setup_filter(f, device=torch.device('cpu'), normalize: bool = True, flip_filter: bool = False,
                 gain: float = 1, separable: Optional[bool] = None) -> torch.Tensor:
    """Turn a filter given as a list/array/tensor into a float32 tensor for upfirdn2d.

    A 1-D filter stays 1-D (separable) when `separable` is True, or by default when it has at
    least 8 taps; otherwise it becomes the 2-D outer product. `normalize` makes the taps sum to
    1; `gain` multiplies the overall response (gain**(1/2) per axis for separable filters).
    """
    if f is None:
        f = 1
    f = torch.as_tensor(f, dtype=torch.float32)
    if f.ndim == 0:
        f = f[None]
    if f.ndim not in (1, 2) or f.numel() == 0:
        raise ValueError(f'f: expected a non-empty 1-D or 2-D filter, got shape {list(f.shape)}')
    if separable is None:
        separable = f.ndim == 1 and f.numel() >= 8
    if f.ndim == 1 and not separable:
        f = f.ger(f)
    if separable and f.ndim != 1:
        raise ValueError('separable: only a 1-D filter can be separable')
    if normalize:
        f = f / f.sum()
    if flip_filter:
        f = f.flip(list(range(f.ndim)))
    f = f * (gain ** (f.ndim / 2))
    return f.to(device=device)


def _validate(x: torch.Tensor, f: Optional[torch.Tensor]) -> None:
    """Raise ValueError naming the first bad argument."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'x: expected a 4-D [N, C, H, W] tensor, got {_describe(x)}')
    if not x.dtype.is_floating_point:
        raise ValueError(f'x: expected a floating-point tensor, got dtype {x.dtype}')
    _get_filter_size(f)
    if f is not None and not f.dtype.is_floating_point:
        raise ValueError(f'f: expected a floating-point filter, got dtype {f.dtype}')


def _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain):
    """Definition of upfirdn2d: zero-insertion, pad/crop, depthwise convolution, decimation."""
    n, c, h, w = x.shape
    upx, upy = up
    downx, downy = down
    px0, px1, py0, py1 = padding
    if upx > 1 or upy > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(n, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0):x.shape[2] - max(-py1, 0), max(-px0, 0):x.shape[3] - max(-px1, 0)]
    f = (f * (gain ** (f.ndim / 2))).to(x.dtype)
    if not flip_filter:
        f = f.flip(list(range(f.ndim)))
    if f.ndim == 2:
        x = F.conv2d(x, f[None, None].expand(c, 1, *f.shape), groups=c)
    else:
        x = F.conv2d(x, f[None, None, None, :].expand(c, 1, 1, f.shape[0]), groups=c)
        x = F.conv2d(x, f[None, None, :, None].expand(c, 1, f.shape[0], 1), groups=c)
    return x[:, :, ::downy, ::downx]


def _cuda_available() -> bool:
    """Whether the CUDA plugin builds (once per process)."""
    from . import upfirdn2d_cuda
    return upfirdn2d_cuda.available()


_FAST_MIN_UP_PIXELS = 256         # upsampling: below 16x16 inputs the per-op overhead outweighs the savings
_FAST_MIN_FILTER_ELEMENTS = 2 ** 19   # plain filtering: below this the fixed overhead cancels the saved copy


def _auto_impl(x: torch.Tensor, f: torch.Tensor, up: Tuple[int, int], down: Tuple[int, int]) -> str:
    """The pure-PyTorch path 'auto' takes when no CUDA kernel applies (measured: docs/performance.md).

    On the CPU the fast path wins for upsampling (polyphase) from 16x16 inputs up, for
    downsampling (strided depthwise convolution) at every size, and for plain filtering (the
    same convolution without the padded copy) on large tensors. It treats `f` as a constant, so a
    gradient w.r.t. `f` needs the reference. On other devices (CUDA without the plugin, MPS) the
    reference's single depthwise convolution is a tuned library kernel, while the fast path issues
    many small kernels and reads the filter back to the host (a device sync): 'ref' there.
    """
    if x.device.type != 'cpu' or f.requires_grad:
        return 'ref'
    if up != (1, 1):
        return 'fast' if x.shape[2] * x.shape[3] >= _FAST_MIN_UP_PIXELS else 'ref'
    if down != (1, 1):
        return 'fast'
    return 'fast' if x.numel() >= _FAST_MIN_FILTER_ELEMENTS else 'ref'


def upfirdn2d(x: torch.Tensor, f: Optional[torch.Tensor], up: Scaling = 1, down: Scaling = 1,
              padding: Padding = 0, flip_filter: bool = False, gain: float = 1,
              impl: str = 'auto') -> torch.Tensor:
    """Upsample, filter and downsample a batch of images. x: [N, C, H, W] -> [N, C, H', W'].

    H' = (H * up_y + py0 + py1 - fh) // down_y + 1, and likewise for W'.
    """
    _validate(x, f)
    up, down, padding = _parse_scaling('up', up), _parse_scaling('down', down), _parse_padding(padding)
    if f is None:
        f = torch.ones([1, 1], dtype=torch.float32, device=x.device)
    fw, fh = _get_filter_size(f)
    out_w = (x.shape[3] * up[0] + padding[0] + padding[1] - fw) // down[0] + 1
    out_h = (x.shape[2] * up[1] + padding[2] + padding[3] - fh) // down[1] + 1
    if out_w < 1 or out_h < 1:
        raise ValueError(f'padding: output would be empty ({out_h}x{out_w}) for input {list(x.shape)}, '
                         f'filter {fh}x{fw}, up {up}, down {down}, padding {list(padding)}')
    impl = resolve_impl('upfirdn2d', impl, x, _cuda_available, auto_fallback=lambda x: _auto_impl(x, f, up, down))
    if impl == 'fast' and f.requires_grad:
        raise ValueError("f: impl='fast' treats the filter as a constant; use impl='ref' for gradients w.r.t. f")
    if impl == 'cuda':
        from .upfirdn2d_cuda import upfirdn2d_cuda
        return upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)
    if impl == 'fast':
        from .upfirdn2d_fast import upfirdn2d_fast
        return upfirdn2d_fast(x, f, up, down, padding, flip_filter, gain)
    return _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)


def filter2d(x, f, padding: Padding = 0, flip_filter: bool = False, gain: float = 1, impl: str = 'auto'):
    """Filter without resampling; the output keeps the input size when padding is 0."""
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + fw // 2, px1 + (fw - 1) // 2, py0 + fh // 2, py1 + (fh - 1) // 2]
    return upfirdn2d(x, f, padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)


def upsample2d(x, f, up: Scaling = 2, padding: Padding = 0, flip_filter: bool = False, gain: float = 1,
               impl: str = 'auto'):
    """Upsample by `up` with filter `f`; the output is exactly `up` times the input when padding is 0."""
    upx, upy = _parse_scaling('up', up)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + (fw + upx - 1) // 2, px1 + (fw - upx) // 2, py0 + (fh + upy - 1) // 2, py1 + (fh - upy) // 2]
    return upfirdn2d(x, f, up=(upx, upy), padding=pad, flip_filter=flip_filter, gain=gain * upx * upy, impl=impl)


def downsample2d(x, f, down: Scaling = 2, padding: Padding = 0, flip_filter: bool = False, gain: float = 1,
                 impl: str = 'auto'):
    """Filter with `f` and downsample by `down`; the output is the input divided by `down` when padding is 0."""
    downx, downy = _parse_scaling('down', down)
    px0, px1, py0, py1 = _parse_padding(padding)
    fw, fh = _get_filter_size(f)
    pad = [px0 + (fw - downx + 1) // 2, px1 + (fw - downx) // 2, py0 + (fh - downy + 1) // 2, py1 + (fh - downy) // 2]
    return upfirdn2d(x, f, down=(downx, downy), padding=pad, flip_filter=flip_filter, gain=gain, impl=impl)
