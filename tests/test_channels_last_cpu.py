"""The compiled channels-last scaling (torch_utils/ops/channels_last_cpu.py) against torch.mul."""
import pytest
import torch

from torch_utils.ops import channels_last_cpu
from thread_testing import torch_threads

needs_plugin = pytest.mark.skipif(channels_last_cpu._plugin() is None, reason='channels_last plugin unavailable')


@needs_plugin
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
@pytest.mark.parametrize('shape', [(2, 16, 5, 24), (3, 19, 4, 37), (1, 3, 2, 5)])
def test_equals_torch_mul_to_the_bit(shape, dtype):
    """Whole 8 x 8 register blocks (16 x 24), partial ones (19 channels, 37 columns) and a tensor smaller than a
    block: one product per element, so exactly torch's, in a channels-last tensor."""
    x = torch.randn(shape, dtype=dtype)
    scale = torch.randn(shape[:2], dtype=dtype)
    out = channels_last_cpu.scaled(x, scale)
    assert out.shape == x.shape and out.dtype == dtype
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(out, x * scale[:, :, None, None])


@needs_plugin
def test_same_bits_on_one_and_two_threads():
    x, scale = torch.randn(2, 24, 9, 40), torch.randn(2, 24)
    outs = []
    for threads in (1, 2):
        with torch_threads(threads):
            outs.append(channels_last_cpu.scaled(x, scale))
    assert torch.equal(*outs)


def test_fallback_and_refusal_of_autograd():
    """A non-contiguous x goes through torch.mul (same values, channels-last); a gradient cannot be had."""
    x = torch.randn(2, 5, 6, 7).transpose(2, 3)
    scale = torch.randn(2, 5)
    out = channels_last_cpu.scaled(x, scale)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, x * scale[:, :, None, None])
    with pytest.raises(RuntimeError, match='not differentiable'):
        channels_last_cpu.scaled(x, scale.requires_grad_())
    with torch.no_grad():
        assert torch.equal(channels_last_cpu.scaled(x, scale), out)
