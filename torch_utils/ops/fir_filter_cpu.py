"""upfirdn2d without upsampling, for separable filters on the CPU, as one compiled pass (cpu/fir_filter.cpp).

upfirdn2d_fast's no-upsampling path is otherwise a depthwise convolution (oneDNN), which for the
4-tap filters of StyleGAN2 runs at a fraction of memory speed: the FIR after every transposed
(upsampling) convolution of the generator, and its adjoint in the backward, took about as long as
a 3x3 convolution of the same layer. The compiled filter sums the vertical taps of each output row
into a buffer with zero margins, then applies the horizontal taps, at memory speed.

Used for float32/float64 CPU tensors outside autocast when the plugin builds; otherwise (one line on
stderr, once) upfirdn2d_fast keeps the depthwise convolution.
"""
import os
from typing import Optional, Sequence, Tuple

import torch

from torch_utils import custom_ops

SOURCE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cpu')
DTYPES = (torch.float32, torch.float64)


def _plugin() -> Optional[object]:
    """The compiled module (built on first use, once per process), or None if it cannot be built."""
    return custom_ops.get_plugin('fir_filter_plugin', ['fir_filter.cpp'], cuda=False, source_dir=SOURCE_DIR)


def applies(x: torch.Tensor) -> bool:
    """Whether the compiled filter serves x: a CPU float32/float64 tensor, no autocast, and the plugin builds."""
    return (x.device.type == 'cpu' and x.dtype in DTYPES and not torch.is_autocast_enabled('cpu')
            and _plugin() is not None)


def fir_filter(x: torch.Tensor, taps_y: Sequence[float], taps_x: Sequence[float], down: Tuple[int, int],
               padding: Tuple[int, int, int, int], out_hw: Tuple[int, int]) -> torch.Tensor:
    """out[n, c, y, x] = sum_a,b taps_y[a] taps_x[b] x[n, c, y*down_y + a - py0, x*down_x + b - px0] (zero outside).

    x [N, C, H, W] (a channels-last x is read in place, not copied; the result is contiguous NCHW); taps in
    correlation order; down (x, y); padding (px0, px1, py0, py1) as upfirdn2d (only the leading pads are
    needed: out_hw = (H', W') fixes the rest). Not differentiable itself: upfirdn2d_fast's
    autograd wrapper supplies the adjoint.
    """
    (down_x, down_y), (px0, _, py0, _) = down, padding
    if not x.is_contiguous(memory_format=torch.channels_last):
        x = x.contiguous()
    return _plugin().filter(x, [float(t) for t in taps_y], [float(t) for t in taps_x], down_y, down_x, py0, px0,
                            out_hw[0], out_hw[1], torch.get_num_threads())
