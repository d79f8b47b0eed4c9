"""torch_utils/ops/dispatch.py: choosing an operator implementation."""
import pytest
import torch

from torch_utils.ops.dispatch import resolve_impl


def _never_called() -> bool:
    raise AssertionError('cuda_available() must not be called for CPU tensors')


def test_explicit_impls_pass_through():
    """'ref' and 'fast' are returned as given; the CUDA probe is not touched on the CPU."""
    x = torch.zeros([1])
    assert resolve_impl('op', 'ref', x, _never_called) == 'ref'
    assert resolve_impl('op', 'fast', x, _never_called) == 'fast'


def test_auto_on_cpu_asks_the_op():
    """'auto' on the CPU returns the op's fallback choice, or 'ref' without one."""
    x = torch.zeros([1])
    assert resolve_impl('op', 'auto', x, _never_called) == 'ref'
    assert resolve_impl('op', 'auto', x, _never_called, auto_fallback=lambda t: 'fast') == 'fast'


def test_unknown_impl_lists_the_choices():
    """Unknown impls raise a one-line ValueError naming the op and listing the valid choices."""
    with pytest.raises(ValueError, match=r"^op: unknown impl 'cpp'; expected one of auto, ref, fast, cuda$"):
        resolve_impl('op', 'cpp', torch.zeros([1]), _never_called)


def test_cuda_on_cpu_tensor_is_a_one_line_error():
    """impl='cuda' with a CPU tensor names the device in a single line."""
    with pytest.raises(ValueError, match="op: impl='cuda' needs a CUDA tensor, got x on cpu") as info:
        resolve_impl('op', 'cuda', torch.zeros([1]), _never_called)
    assert '\n' not in str(info.value)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
def test_cuda_tensor_choices():
    """On CUDA, 'auto' takes the kernel when it builds and the fallback otherwise; 'cuda' insists."""
    x = torch.zeros([1], device='cuda')
    assert resolve_impl('op', 'auto', x, lambda: True) == 'cuda'
    assert resolve_impl('op', 'auto', x, lambda: False, auto_fallback=lambda t: 'ref') == 'ref'
    with pytest.raises(RuntimeError, match='could not be built'):
        resolve_impl('op', 'cuda', x, lambda: False)
