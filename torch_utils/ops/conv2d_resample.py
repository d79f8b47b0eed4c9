"""2-D convolution with optional up/downsampling by a FIR filter, padding applied once.

Semantics (StyleGAN2): with `up` > 1 the input is upsampled with `f` and then convolved with
`w`; with `down` > 1 it is convolved and then downsampled with `f`. `padding` is the
convolution's own padding (kernel_size // 2 keeps the size), applied before the first step
together with the filter's centring. `flip_weight=True` uses `w` as cross-correlation weights
(F.conv2d); False performs a true convolution.
"""
from typing import Optional

import torch
import torch.nn.functional as F

from . import upfirdn2d as _up


def _validate(x: torch.Tensor, w: torch.Tensor, groups: int) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        raise ValueError(f'x: expected a 4-D [N, C, H, W] tensor, got {_up._describe(x)}')
    if not isinstance(w, torch.Tensor) or w.ndim != 4 or w.dtype != x.dtype:
        raise ValueError(f'w: expected a 4-D [O, C/groups, kh, kw] tensor of dtype {x.dtype}, got {_up._describe(w)}')
    if not isinstance(groups, int) or groups < 1 or x.shape[1] != w.shape[1] * groups or w.shape[0] % groups:
        raise ValueError(f'groups: {groups!r} does not fit x with {x.shape[1]} channels and w of shape {list(w.shape)}')


def conv2d_resample(x: torch.Tensor, w: torch.Tensor, f: Optional[torch.Tensor] = None, up: int = 1,
                    down: int = 1, padding=0, groups: int = 1, flip_weight: bool = True,
                    flip_filter: bool = False) -> torch.Tensor:
    """x: [N, C, H, W], w: [O, C/groups, kh, kw] -> [N, O, H', W']."""
    _validate(x, w, groups)
    if not isinstance(up, int) or not isinstance(down, int) or up < 1 or down < 1:
        raise ValueError(f'up/down: expected ints >= 1, got up={up!r}, down={down!r}')
    fw, fh = _up._get_filter_size(f)
    px0, px1, py0, py1 = _up._parse_padding(padding)
    if up > 1:
        px0, px1, py0, py1 = px0 + (fw + up - 1) // 2, px1 + (fw - up) // 2, py0 + (fh + up - 1) // 2, py1 + (fh - up) // 2
    if down > 1:
        px0, px1, py0, py1 = px0 + (fw - down + 1) // 2, px1 + (fw - down) // 2, py0 + (fh - down + 1) // 2, py1 + (fh - down) // 2
    if not flip_weight:
        w = w.flip([2, 3])
    x = _up.upfirdn2d(x, f if up > 1 else None, up=up, padding=[px0, px1, py0, py1], gain=up ** 2,
                      flip_filter=flip_filter)
    x = F.conv2d(x, w, groups=groups)
    if down > 1:
        x = _up.upfirdn2d(x, f, down=down, flip_filter=flip_filter)
    return x
