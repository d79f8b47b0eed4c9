"""2-D convolution with optional up/downsampling by a FIR filter, padding applied once.

Semantics (StyleGAN2): with `up` > 1 the input is upsampled with `f` and then convolved with
`w`; with `down` > 1 it is convolved and then downsampled with `f`. `padding` is the
convolution's own padding (kernel_size // 2 keeps the size), applied before the first step
together with the filter's centring. `flip_weight=True` uses `w` as cross-correlation weights
(F.conv2d); False performs a true convolution.

The general path below is the definition. The fast paths are exact rearrangements of it: valid
correlations with `f` and `w` commute, decimation after a valid correlation is a strided
correlation, and a 1x1 convolution commutes with any per-channel filtering.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from . import fir_filter_cpu
from . import upfirdn2d as _up


def _validate(x: torch.Tensor, w: torch.Tensor, groups: int, up: int, down: int) -> None:
    """Raise ValueError naming the first bad argument."""
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'x: expected a 4-D [N, C, H, W] tensor, got {_up._describe(x)}')
    if not isinstance(w, torch.Tensor) or w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError(f'w: expected a 4-D [O, C/groups, kh, kw] tensor of dtype {x.dtype}, got {_up._describe(w)}')
    if not isinstance(groups, int) or groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f'groups: {groups!r} does not fit x with {x.shape[1]} channels and w of shape {list(w.shape)}')
    if not isinstance(up, int) or not isinstance(down, int) or up < 1 or down < 1:
        raise ValueError(f'up/down: expected ints >= 1, got up={up!r}, down={down!r}')


def _total_padding(f: Optional[torch.Tensor], up: int, down: int, padding) -> Tuple[int, int, int, int]:
    """Convolution padding plus the filter's centring for the up- and downsampling steps."""
    fw, fh = _up._get_filter_size(f)
    px0, px1, py0, py1 = _up._parse_padding(padding)
    if up > 1:
        px0, px1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2
        py0, py1 = py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2
        py0, py1 = py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    return px0, px1, py0, py1


def _conv2d_resample_general(x, w, f, up, down, padding, groups, flip_weight, flip_filter):
    """Definition: upfirdn2d(up, pad) -> conv2d -> upfirdn2d(down). Same arguments as conv2d_resample."""
    pad = _total_padding(f, up, down, padding)
    if not flip_weight:
        w = w.flip([2, 3])
    x = _up.upfirdn2d(x, f if up > 1 else None, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    x = F.conv2d(x, w, groups=groups)
    if down > 1:
        x = _up.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x


def _transpose_weight(w: torch.Tensor, groups: int) -> torch.Tensor:
    """Correlation weight [O, C/g, kh, kw] -> conv_transpose2d weight [C, O/g, kh, kw] doing the same correlation."""
    o, cg, kh, kw = w.shape
    w = w.reshape(groups, o // groups, cg, kh, kw).transpose(1, 2).reshape(groups * cg, o // groups, kh, kw)
    return w.flip([2, 3])


def upsampling_prefers_channels_last(x: torch.Tensor, w: torch.Tensor, up: int, groups: int) -> bool:
    """Whether an upsampling convolution of x by w (up > 1, a kernel larger than 1x1) runs channels-last.

    On the CPU in float32 without autograd, oneDNN's transposed convolution runs 1.3-2x faster
    channels-last than on NCHW tensors (which it reorders on the way in and out), and the compiled
    FIR after it reads channels-last directly and writes NCHW; the result is the same. With autograd
    the NCHW form is kept: its backward is the faster one there. A caller producing x (the
    modulation) can write it channels-last at no extra cost when this holds.
    """
    return (up > 1 and groups == 1 and w.shape[2] * w.shape[3] > 1 and x.device.type == 'cpu'
            and x.dtype == torch.float32 and not (torch.is_grad_enabled() and (x.requires_grad or w.requires_grad))
            and fir_filter_cpu.applies(x))


def _upsampling_conv(x, w, f, up, pad, groups, flip_filter):
    """Transposed convolution (stride up, no multiplications by inserted zeros), then the filter.

    conv_transpose2d equals a valid correlation of the zero-inserted input padded by k-1 on each
    side (no trailing zeros), so the filter's padding makes up the difference to `pad`.
    """
    kh, kw = w.shape[2], w.shape[3]
    px0, px1, py0, py1 = pad
    channels_last = upsampling_prefers_channels_last(x, w, up, groups)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    x = F.conv_transpose2d(x, _transpose_weight(w, groups), stride=up, groups=groups)
    fpad = [px0 - (kw - 1), px1 + up - 1 - (kw - 1), py0 - (kh - 1), py1 + up - 1 - (kh - 1)]
    return _up.upfirdn2d(x, f, padding=fpad, gain=up ** 2, flip_filter=flip_filter,
                         impl='fast' if channels_last else 'auto')   # 'fast': the compiled FIR, NCHW out


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """x: [N, C, H, W], w: [O, C/groups, kh, kw] -> [N, O, H', W'] (f: filter as for upfirdn2d)."""
    _validate(x, w, groups, up, down)
    if up > 1 and down > 1:
        return _conv2d_resample_general(x, w, f, up, down, padding, groups, flip_weight, flip_filter)
    pad = _total_padding(f, up, down, padding)
    if not flip_weight:
        w = w.flip([2, 3])
    pointwise = w.shape[2] == 1 and w.shape[3] == 1
    if down > 1 and pointwise:
        return F.conv2d(_up.upfirdn2d(x, f, down=down, padding=pad, flip_filter=flip_filter), w, groups=groups)
    if down > 1:
        return F.conv2d(_up.upfirdn2d(x, f, padding=pad, flip_filter=flip_filter), w, stride=down, groups=groups)
    if up > 1 and pointwise:
        x = F.conv2d(x, w, groups=groups)
        return _up.upfirdn2d(x, f, up=up, padding=pad, gain=up ** 2, flip_filter=flip_filter)
    if up > 1:
        return _upsampling_conv(x, w, f, up, pad, groups, flip_filter)
    px0, px1, py0, py1 = pad
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        return F.conv2d(x, w, padding=(py0, px0), groups=groups)
    return F.conv2d(F.pad(x, [px0, px1, py0, py1]), w, groups=groups)
