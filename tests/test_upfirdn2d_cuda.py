"""torch_utils/ops/upfirdn2d_cuda.py, checked on the CPU.

The transposed padding is checked against torch autograd of the reference, the kernel's element
math (compiled for the host, see cuda_testing.py) against the reference, and the autograd
Function (forward through that math, backward through the public upfirdn2d) with gradcheck.
"""
import pytest
import torch

from cuda_testing import HostUpfirdn2dPlugin, STYLEGAN_UPFIRDN2D_CASES, random_upfirdn2d_cases
from torch_utils.ops import upfirdn2d_cuda
from torch_utils.ops.upfirdn2d import _upfirdn2d_ref, upfirdn2d

CASES = random_upfirdn2d_cases(seed=1, count=60) + STYLEGAN_UPFIRDN2D_CASES


def _args(case):
    """(f, up, down, padding, flip_filter, gain) of a case, in _upfirdn2d_ref's argument order."""
    return case['f'], case['up'], case['down'], case['padding'], case['flip_filter'], case['gain']


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def host_plugin(monkeypatch):
    """Route upfirdn2d_cuda's kernel calls to the host-compiled element math."""
    monkeypatch.setattr(upfirdn2d_cuda, '_plugin', HostUpfirdn2dPlugin)


def test_transposed_padding_gives_the_autograd_gradient():
    """upfirdn2d(dy, f, up=down, down=up, transposed padding, not flip_filter) is the gradient of the ref."""
    torch.manual_seed(0)
    for case in CASES:
        f, up, down, padding, flip_filter, gain = _args(case)
        x = torch.randn(case['shape'], dtype=torch.float64, requires_grad=True)
        y = _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain)
        dy = torch.randn_like(y)
        expected, = torch.autograd.grad(y, x, dy)
        pad = upfirdn2d_cuda._transposed_padding(x.shape, f, up, down, padding)
        dx = upfirdn2d(dy, f, up=down, down=up, padding=pad, flip_filter=not flip_filter, gain=gain, impl='ref')
        assert dx.shape == x.shape, case
        torch.testing.assert_close(dx, expected, msg=lambda m: f'{case}: {m}')


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_kernel_math_matches_reference(host_plugin, dtype):
    """The kernel's polyphase loop (incl. the two-pass separable path) equals the reference."""
    torch.manual_seed(1)
    for case in CASES:
        f, up, down, padding, flip_filter, gain = _args(case)
        x = torch.randn(case['shape'], dtype=dtype)
        f = f.float()  # the public API hands the kernel float32 filters; the ref applies gain in f's dtype
        expected = _upfirdn2d_ref(x, f.to(dtype), up, down, padding, flip_filter, gain)
        actual = upfirdn2d_cuda._launch(x, f, up, down, padding, flip_filter, gain)
        torch.testing.assert_close(actual, expected, msg=lambda m: f'{case}: {m}')


def test_kernel_reads_non_contiguous_input(host_plugin):
    """A channels-last or sliced x gives the same result as a contiguous one."""
    case = STYLEGAN_UPFIRDN2D_CASES[0]
    x = torch.randn(case['shape'], dtype=torch.float64).to(memory_format=torch.channels_last)
    f, up, down, padding, flip_filter, gain = _args(case)
    torch.testing.assert_close(upfirdn2d_cuda.upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain),
                               _upfirdn2d_ref(x, f, up, down, padding, flip_filter, gain))


@pytest.mark.parametrize('case', CASES[:6] + STYLEGAN_UPFIRDN2D_CASES, ids=lambda c: str(c['shape']))
def test_function_gradients(host_plugin, case):
    """gradcheck and gradgradcheck of the autograd Function (first and second order), on small images."""
    torch.manual_seed(2)
    f, up, down, padding, flip_filter, gain = _args(case)
    x = torch.randn(case['shape'][:2] + (min(case['shape'][2], 4), min(case['shape'][3], 4)), dtype=torch.float64,
                    requires_grad=True)

    def fn(x):
        return upfirdn2d_cuda.upfirdn2d_cuda(x, f, up, down, padding, flip_filter, gain)

    assert torch.autograd.gradcheck(fn, (x,))
    assert torch.autograd.gradgradcheck(fn, (x,))
