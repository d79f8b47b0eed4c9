"""torch_utils/ops/bias_act_cuda.py, checked on the CPU.

`_grad_formulas` (the spec of the kernel's derivatives) is checked against torch.autograd; the
kernel's element math (compiled for the host, see cuda_testing.py) against the reference in all
three modes through the autograd chain; and that chain with gradcheck / gradgradcheck.
"""
import os
import re

import pytest
import torch

from cuda_testing import HostBiasActPlugin, bias_act_grads
from torch_utils import custom_ops
from torch_utils.ops import bias_act_cuda
from torch_utils.ops.bias_act import _bias_act_ref, _resolve_params, activation_funcs

ACTS = list(activation_funcs)
# (act, alpha): lrelu also with a negative slope, whose gradient has to come from x.
ACT_ALPHAS = [(act, None) for act in ACTS] + [('lrelu', -0.3)]


pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture
def host_plugin(monkeypatch):
    """Route bias_act_cuda's kernel calls to the host-compiled element math."""
    monkeypatch.setattr(bias_act_cuda, '_plugin', HostBiasActPlugin)


def _inputs(seed: int, shape=(3, 4, 5), dtype=torch.float64):
    """Random u in [-4, 4] away from the kinks at 0, as (x, b) with b along dim 1."""
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=gen, dtype=dtype) * 8 - 4)
    x = torch.where(x.abs() < 0.05, x + 0.1, x)
    return x, torch.zeros(shape[1], dtype=dtype)


@pytest.mark.parametrize('act, alpha', ACT_ALPHAS)
def test_grad_formulas_match_autograd(act, alpha):
    """d1 is act' and d2 is act'' (or act'' / act' for formulas in y), written in the formula's variable."""
    spec, alpha, _, _ = _resolve_params(act, alpha, 1, None)
    formula = bias_act_cuda._grad_formulas[act]
    u = torch.cat([_inputs(0)[0].flatten(), torch.tensor([-30., -21., 21., 30.], dtype=torch.float64)])
    u.requires_grad_(True)
    a = spec.func(u, alpha)
    d1, = torch.autograd.grad(a.sum(), u, create_graph=True)
    d2 = torch.autograd.grad(d1.sum(), u, allow_unused=True)[0] if d1.requires_grad else None
    d2 = torch.zeros_like(u) if d2 is None else d2
    source = bias_act_cuda._grad_source(act, alpha)
    v = (u if source == 'x' else a).detach()
    torch.testing.assert_close(formula.d1(v, alpha), d1.detach())
    if formula.d2 is None:
        torch.testing.assert_close(d2, torch.zeros_like(d2))
    elif source == 'x':
        torch.testing.assert_close(formula.d2(v), d2)
    else:
        torch.testing.assert_close(formula.d2(v) * d1.detach(), d2)


def test_kernel_activation_codes_match_cuda_idx():
    """The BiasActKind enum in bias_act.h uses the same codes as activation_funcs[...].cuda_idx."""
    with open(os.path.join(custom_ops.SOURCE_DIR, 'bias_act.h')) as f:
        enum = re.search(r'enum BiasActKind : int \{([^}]*)\}', f.read()).group(1)
    codes = {name: int(code) for name, code in re.findall(r'\bk(\w+) = (\d+)', enum)}
    assert codes == {f'{act[0].upper()}{act[1:]}': spec.cuda_idx for act, spec in activation_funcs.items()}


@pytest.mark.parametrize('act, alpha', ACT_ALPHAS)
@pytest.mark.parametrize('clamp, gain, dim', [(None, None, 1), (0.7, 1.3, 2), (None, 0.0, 0)])
def test_kernel_matches_reference_to_second_order(host_plugin, act, alpha, clamp, gain, dim):
    """Forward, dx, db and the second-order gradients of the kernel chain equal the reference's."""
    spec, alpha, gain, clamp = _resolve_params(act, alpha, gain, clamp)
    x, _ = _inputs(1)
    b = torch.randn(x.shape[dim], dtype=x.dtype)
    dy, w = torch.randn_like(x), torch.randn_like(x)
    expected = bias_act_grads(lambda x, b: _bias_act_ref(x, b, dim, spec, alpha, gain, clamp), x, b, dy, w)
    actual = bias_act_grads(lambda x, b: bias_act_cuda.bias_act_cuda(x, b, dim, act, alpha, gain, clamp), x, b, dy, w)
    for name, a, e in zip(['y', 'dx', 'db', 'ddx', 'ddb'], actual, expected):
        torch.testing.assert_close(a, e, msg=lambda m: f'{name}: {m}')


@pytest.mark.parametrize('act', ACTS)
def test_kernel_float32_forward(host_plugin, act):
    """The float32 instantiation agrees with the reference."""
    spec, alpha, gain, clamp = _resolve_params(act, None, None, 2.0)
    x, b = _inputs(2, dtype=torch.float32)
    b = torch.randn_like(b)
    torch.testing.assert_close(bias_act_cuda.bias_act_cuda(x, b, 1, act, alpha, gain, clamp),
                               _bias_act_ref(x, b, 1, spec, alpha, gain, clamp))


@pytest.mark.parametrize('act, alpha', ACT_ALPHAS)
def test_function_gradcheck(host_plugin, act, alpha):
    """gradcheck and gradgradcheck of the autograd chain, with and without a bias."""
    _, alpha, gain, _ = _resolve_params(act, alpha, None, None)
    x, _ = _inputs(3, shape=(2, 3, 4))
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    x.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x, b: bias_act_cuda.bias_act_cuda(x, b, 1, act, alpha, gain, -1), (x, b))
    assert torch.autograd.gradgradcheck(lambda x, b: bias_act_cuda.bias_act_cuda(x, b, 1, act, alpha, gain, -1),
                                        (x, b))
    assert torch.autograd.gradgradcheck(lambda x: bias_act_cuda.bias_act_cuda(x, None, 1, act, alpha, gain, -1), (x,))


@pytest.mark.parametrize('act, kept', [('tanh', 'y'), ('lrelu', 'y'), ('linear', 'y'), ('swish', 'x')])
def test_backward_keeps_only_its_gradient_source(host_plugin, act, kept):
    """Activations with gradients from y keep only y (usually alive anyway) for backward, not x."""
    _, alpha, gain, _ = _resolve_params(act, None, None, None)
    x = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    y = bias_act_cuda.bias_act_cuda(x, torch.zeros(3, dtype=torch.float64), 1, act, alpha, gain, -1)
    saved_x, _, saved_y = y.grad_fn.saved_tensors
    assert (saved_x.numel() > 0, saved_y.numel() > 0) == ('x' in kept, 'y' in kept)
