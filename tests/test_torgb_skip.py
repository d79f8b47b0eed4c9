"""The compiled skip ToRGB (training/networks/torgb_skip.py) against upfirdn2d's reference and einsum."""
import math

import pytest
import torch

from torch_utils.ops import upfirdn2d
from training.networks import synthesis, torgb_skip
from grad_testing import assert_results_close
from thread_testing import torch_threads

FILTER = upfirdn2d.setup_filter([1, 3, 3, 1])
TAPS = torgb_skip.phase_weights(FILTER)
needs_plugin = pytest.mark.skipif(
    not torgb_skip.applies(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1), TAPS),
    reason='torgb_skip plugin unavailable')


def formula(feat, wm, bias, img, conv_clamp):
    """clamp(einsum 1x1 conv + bias) + upfirdn2d's reference upsampling (a padded, zero-stuffed convolution)."""
    y = torch.einsum('noi,nihw->nohw', wm, feat) + bias[None, :, None, None]
    if conv_clamp is not None:
        y = y.clamp(-conv_clamp, conv_clamp)
    return y + upfirdn2d.upfirdn2d(img, FILTER, up=2, padding=[2, 1, 2, 1], gain=4, impl='ref')


def _inputs(n, i, o, h, w, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    make = lambda *shape: torch.randn(shape, generator=g, dtype=dtype).requires_grad_()
    return make(n, i, h, w), make(n, o, i), make(o), make(n, o, h // 2, w // 2)


def test_phase_weights_of_supported_filters_only():
    assert TAPS == pytest.approx((0.25, 0.75, 0.75, 0.25))
    assert torgb_skip.phase_weights(torch.tensor([1., 3, 3, 1])) == pytest.approx(TAPS)
    assert torgb_skip.phase_weights(upfirdn2d.setup_filter([1, 1, 1, 1])) == pytest.approx((0.5, 0.5, 0.5, 0.5))
    assert torgb_skip.phase_weights(upfirdn2d.setup_filter([1, 2, 3, 1])) is None      # not symmetric
    assert torgb_skip.phase_weights(upfirdn2d.setup_filter([1, 2, 1])) is None         # 3 taps
    assert torgb_skip.phase_weights(torch.eye(4)) is None                              # not separable
    assert torgb_skip.phase_weights(upfirdn2d.setup_filter([1, 3, 3, 3, 3, 3, 3, 1])) is None


def test_upsampling_weights_are_upfirdn2d_upsample2d():
    """The per-axis phase weights reproduce upsample2d on an image (interior and zero border)."""
    img = torch.randn(1, 1, 5, 6, dtype=torch.float64)
    e0, e1, d0, d1 = TAPS
    padded = torch.nn.functional.pad(img, [1, 1, 0, 0])
    rows = torch.stack([e0 * padded[..., :-2] + e1 * padded[..., 1:-1], d0 * padded[..., 1:-1] + d1 * padded[..., 2:]],
                       dim=-1).flatten(-2)
    padded = torch.nn.functional.pad(rows, [0, 0, 1, 1])
    both = torch.stack([e0 * padded[..., :-2, :] + e1 * padded[..., 1:-1, :],
                        d0 * padded[..., 1:-1, :] + d1 * padded[..., 2:, :]], dim=-2).flatten(-3, -2)
    torch.testing.assert_close(both, upfirdn2d.upsample2d(img, FILTER, up=2, impl='ref'), rtol=1e-12, atol=1e-12)


SHAPES = [(2, 5, 7, 6, 10), (1, 3, 2, 2, 2), (2, 16, 9, 8, 40), (1, 4, 8, 4, 64), (2, 3, 3, 10, 34)]


@needs_plugin
@pytest.mark.parametrize('shape', SHAPES)
@pytest.mark.parametrize('conv_clamp', [None, 0.8])
def test_values_and_gradients_match_the_formula(shape, conv_clamp):
    """Shapes cover register tiles and their edges: channel counts off the 4-row tile, widths off 2 vectors."""
    inputs = _inputs(*shape)
    out = torgb_skip.torgb_skip(*inputs, TAPS, conv_clamp)
    expected = formula(*inputs, conv_clamp)
    assert out.shape == expected.shape and out.is_contiguous()
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    if conv_clamp is not None:
        assert (expected - formula(*inputs, None)).abs().max() > 0.1   # the clamp is active somewhere
    grad = torch.randn_like(out)
    for a, e, name in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(expected, inputs, grad),
                          ('feat', 'wm', 'bias', 'img')):
        torch.testing.assert_close(a, e, rtol=1e-11, atol=1e-11, msg=lambda m: f'd/d{name}: {m}')


@needs_plugin
def test_gradcheck_and_first_order_only():
    inputs = _inputs(2, 3, 5, 4, 6)
    assert torch.autograd.gradcheck(lambda *a: torgb_skip.torgb_skip(*a, TAPS, None), inputs)
    (grad_wm,) = torch.autograd.grad(torgb_skip.torgb_skip(*inputs, TAPS, None).square().sum(), inputs[1],
                                     create_graph=True)
    with pytest.raises(RuntimeError, match='once_differentiable|does not require grad|not have been used'):
        torch.autograd.grad(grad_wm.sum(), inputs[1])   # an error, never a silently wrong second derivative


@needs_plugin
@pytest.mark.parametrize('width', [64, 20])
def test_float32_and_thread_count_independence(width):
    """float32 at a bench-like shape: the same bits on 1 and 2 threads, and close to the float64 formula. Rows
    of 64 floats are written with streaming stores, rows of 20 (not a whole number of vectors) are not."""
    inputs = _inputs(2, 16, 12, 32, width, dtype=torch.float32, seed=3)
    grad = torch.randn(2, 12, 32, width)
    results = []
    for threads in (1, 2):
        with torch_threads(threads):
            out = torgb_skip.torgb_skip(*inputs, TAPS, 2.0)
            results.append([out, *torch.autograd.grad(out, inputs, grad)])
    for one, two in zip(*results):
        assert torch.equal(one, two)
    exact = [t.detach().double().requires_grad_() for t in inputs]
    expected = formula(*exact, 2.0)
    torch.testing.assert_close(results[0][0].double(), expected, rtol=1e-5, atol=1e-5)
    for a, e in zip(results[0][1:], torch.autograd.grad(expected, exact, grad.double())):
        torch.testing.assert_close(a.double(), e, rtol=1e-4, atol=1e-4)


def test_applies_only_where_the_kernel_is_exact():
    feat, img = torch.zeros(1, 4, 8, 8), torch.zeros(1, 3, 4, 4)
    weight = torch.zeros(3, 4, 1, 1)
    assert not torgb_skip.applies(feat, img, torch.zeros(3, 4, 3, 3), TAPS)         # 3x3 ToRGB
    assert not torgb_skip.applies(feat, img.double(), weight, TAPS)                 # mixed dtypes
    assert not torgb_skip.applies(feat.half(), img.half(), weight, TAPS)             # float16
    assert not torgb_skip.applies(feat, torch.zeros(1, 3, 8, 8), weight, TAPS)      # img not at half resolution
    assert not torgb_skip.applies(torch.zeros(1, 4, 7, 8), torch.zeros(1, 3, 3, 4), weight, TAPS)   # odd height
    assert not torgb_skip.applies(feat, img, weight, None)                          # unsupported filter
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not torgb_skip.applies(feat, img, weight, TAPS)


@needs_plugin
@pytest.mark.parametrize('fused,clamp', [(False, None), (True, None), (False, 0.3)])
def test_synthesis_block_compiled_matches_pytorch(monkeypatch, fused, clamp):
    """A skip block on the CPU calls the compiled op; switched off it upsamples and adds in PyTorch.
    (Blocks compute in float32 on the CPU, so the comparison is at float32 tolerance.)"""
    torch.manual_seed(2)
    block = synthesis.SynthesisBlock(6, 5, w_dim=8, resolution=32, img_channels=4, is_last=False, conv_clamp=clamp)
    x = torch.randn(2, 6, 16, 16, requires_grad=True)
    img = torch.randn(2, 4, 16, 16, requires_grad=True)
    ws = torch.randn(2, block.num_conv + block.num_torgb, 8, requires_grad=True)
    inputs = [x, img, ws, *block.parameters()]
    calls = []
    compiled = torgb_skip.torgb_skip
    monkeypatch.setattr(torgb_skip, 'torgb_skip', lambda *args: calls.append(1) or compiled(*args))
    applies = torgb_skip.applies
    results = []
    for use_compiled in (True, False):
        monkeypatch.setattr(torgb_skip, 'applies', lambda *args, use=use_compiled: use and applies(*args))
        out_x, out_img = block(x, img, ws, fused_modconv=fused, noise_mode='const')
        assert out_img.shape == (2, 4, 32, 32) and out_img.dtype == torch.float32
        loss = out_img.square().sum() + out_x.sum()
        results.append([out_img, *torch.autograd.grad(loss, inputs, allow_unused=True)])
    assert len(calls) == 1
    assert_results_close(*results, rtol=1e-4, atol=1e-4)


@needs_plugin
def test_shape_errors_name_the_operand():
    feat, wm, bias, img = _inputs(1, 3, 2, 4, 4)
    with pytest.raises(RuntimeError, match='img must have shape'):
        torgb_skip.torgb_skip(feat, wm, bias, img[:, :, :1], TAPS, None)
    with pytest.raises(RuntimeError, match='bias must have shape'):
        torgb_skip.torgb_skip(feat, wm, bias[:1], img, TAPS, None)
    with pytest.raises(RuntimeError, match='height and width must be even'):
        torgb_skip.torgb_skip(feat[:, :, :3], wm, bias, img, TAPS, math.inf)
