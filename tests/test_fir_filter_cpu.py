"""The compiled separable FIR filter (torch_utils/ops/fir_filter_cpu.py) behind upfirdn2d's fast CPU path."""
import pytest
import torch

from torch_utils.ops import fir_filter_cpu
from torch_utils.ops import upfirdn2d as U
from thread_testing import torch_threads

needs_plugin = pytest.mark.skipif(not fir_filter_cpu.applies(torch.zeros(1)), reason='fir_filter plugin unavailable')

# (shape, filter taps, upfirdn2d arguments): the vectorised cases (4 taps, down 1 and 2) at widths of several
# vectors plus an odd tail, and the generic loop (other tap counts, down 3, anisotropic down), with padding
# that pads, crops and is asymmetric.
CASES = [
    ((2, 3, 37, 45), [1, 3, 3, 1], dict(padding=1)),
    ((2, 3, 37, 45), [1, 3, 3, 1], dict(down=2, padding=[1, 2, 0, 1])),
    ((1, 4, 20, 33), [1, 3, 3, 1], dict(padding=[-2, 3, 2, -1], gain=4)),
    ((1, 2, 19, 23), [1, 2, 1], dict(padding=[1, 1, 0, 2])),
    ((1, 2, 19, 23), [1, 4, 6, 4, 1], dict(down=3, padding=2)),
    ((1, 2, 19, 23), [1, 3, 3, 1], dict(down=(2, 1), padding=[0, 1, 2, 2])),
    ((1, 1, 3, 2), [1, 3, 3, 1], dict(padding=[3, 3, 2, 2])),   # every output sees padding
]


@needs_plugin
@pytest.mark.parametrize('case', range(len(CASES)))
def test_compiled_filter_matches_reference_values_and_gradients(monkeypatch, case):
    shape, taps, args = CASES[case]
    f = U.setup_filter(taps)
    calls = []
    compiled = fir_filter_cpu.fir_filter
    monkeypatch.setattr(fir_filter_cpu, 'fir_filter', lambda *a: calls.append(1) or compiled(*a))
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    out = U.upfirdn2d(x, f, impl='fast', **args)
    expected = U.upfirdn2d(x, f, impl='ref', **args)
    assert calls, 'the compiled filter was not used'
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    grad = torch.randn_like(out)
    torch.testing.assert_close(torch.autograd.grad(out, x, grad)[0], torch.autograd.grad(expected, x, grad)[0],
                               rtol=1e-12, atol=1e-12)


@needs_plugin
def test_float32_generator_shapes_match_the_depthwise_convolution(monkeypatch):
    """The FIR after an upsampling convolution (129 -> 128 with padding 1) and a downsampling, float32."""
    f = U.setup_filter([1, 3, 3, 1])
    x = torch.randn(2, 8, 129, 129)
    results = []
    for use in (True, False):
        monkeypatch.setattr(fir_filter_cpu, 'applies', lambda t, use=use: use)
        results.append((U.upfirdn2d(x, f, padding=[1, 1, 1, 1], gain=4), U.downsample2d(x[..., 1:, 1:], f)))
    for compiled, depthwise in zip(*results):
        torch.testing.assert_close(compiled, depthwise, rtol=1e-5, atol=1e-5)


@needs_plugin
def test_same_bits_on_one_and_two_threads():
    x = torch.randn(3, 5, 40, 41)
    outs = []
    for threads in (1, 2):
        with torch_threads(threads):
            outs.append(fir_filter_cpu.fir_filter(x, [0.25, 0.75, 0.75, 0.25], [0.5, 0.5], (2, 1), (1, 1, 2, 0),
                                                  (39, 21)))
    assert torch.equal(*outs)


def test_only_float_cpu_tensors_outside_autocast():
    assert not fir_filter_cpu.applies(torch.zeros(1, dtype=torch.float16))
    assert not fir_filter_cpu.applies(torch.zeros(1, dtype=torch.bfloat16))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not fir_filter_cpu.applies(torch.zeros(1))


@needs_plugin
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('case', range(len(CASES) + 1))
def test_channels_last_input_gives_the_same_bits(case, dtype):
    """A channels-last x is read in place (no copy) and gives the contiguous input's result to the bit, NCHW out.
    The extra case has 19 channels and 37 columns: whole 8 x 8 register transposes and partial blocks."""
    shape, taps, args = CASES[case] if case < len(CASES) else ((2, 19, 21, 37), [1, 3, 3, 1], dict(padding=1))
    f = U.setup_filter(taps)
    x = torch.randn(shape, dtype=dtype)
    x_last = x.contiguous(memory_format=torch.channels_last)
    assert not x_last.is_contiguous() or shape[1] == 1
    out, out_last = U.upfirdn2d(x, f, impl='fast', **args), U.upfirdn2d(x_last, f, impl='fast', **args)
    assert out_last.is_contiguous() and torch.equal(out_last, out)
