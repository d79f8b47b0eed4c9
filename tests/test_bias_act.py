"""torch_utils/ops/bias_act.py and bias_act_fast.py: every activation against plain formulas,
every implementation against the reference, gradients, argument errors."""
import math

import pytest
import torch

from torch_utils.ops import bias_act as B

IMPLS = ['ref', 'fast'] + (['cuda'] if torch.cuda.is_available() else [])
SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772

# Written out from the definitions, independently of torch.nn.functional.
FORMULAS = {
    'linear': lambda x, a: x,
    'relu': lambda x, a: torch.where(x > 0, x, torch.zeros_like(x)),
    'lrelu': lambda x, a: torch.where(x > 0, x, a * x),
    'tanh': lambda x, a: (torch.exp(x) - torch.exp(-x)) / (torch.exp(x) + torch.exp(-x)),
    'sigmoid': lambda x, a: 1 / (1 + torch.exp(-x)),
    'elu': lambda x, a: torch.where(x > 0, x, torch.exp(x) - 1),
    'selu': lambda x, a: SELU_SCALE * torch.where(x > 0, x, SELU_ALPHA * (torch.exp(x) - 1)),
    'softplus': lambda x, a: torch.log(1 + torch.exp(x)),
    'swish': lambda x, a: x / (1 + torch.exp(-x)),
}
DEFAULT_GAIN = {'relu': math.sqrt(2), 'lrelu': math.sqrt(2), 'swish': math.sqrt(2)}


pytestmark = pytest.mark.usefixtures('one_thread')


def _expected(x, b, dim, act, alpha, gain, clamp):
    """clamp(act(x + b) * gain) from the plain formulas, with StyleGAN2's defaults."""
    if b is not None:
        x = x + b.reshape([-1 if i == dim else 1 for i in range(x.ndim)])
    y = FORMULAS[act](x, 0.2 if alpha is None else alpha)
    y = y * (DEFAULT_GAIN.get(act, 1.0) if gain is None else gain)
    return y if clamp is None or clamp < 0 else y.clamp(-clamp, clamp)


def test_activation_table_matches_formulas():
    """The registry holds exactly the activations the formulas cover."""
    assert set(B.activation_funcs) == set(FORMULAS)


@pytest.mark.parametrize('impl', IMPLS)
@pytest.mark.parametrize('act', sorted(FORMULAS))
@pytest.mark.parametrize('dtype', [torch.float64, torch.float32])
def test_matches_formulas(impl, act, dtype):
    """With/without b along dims 1 and 2, alpha, gain and clamp, every impl equals the formulas."""
    device = 'cuda' if impl == 'cuda' else 'cpu'
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn([3, 5, 4, 6], generator=gen, dtype=torch.float64) * 2).to(device, dtype)
    for dim, use_b, alpha, gain, clamp in [(1, True, None, None, None), (2, True, 0.3, 2.5, None),
                                           (1, False, None, 0.7, 1.5), (2, True, 0.1, None, 0.5),
                                           (1, True, None, -1.5, 2.0), (3, True, 0.25, 1.0, 0.0)]:
        b = torch.randn([x.shape[dim]], generator=gen, dtype=torch.float64).to(device, dtype) if use_b else None
        actual = B.bias_act(x, b, dim=dim, act=act, alpha=alpha, gain=gain, clamp=clamp, impl=impl)
        expected = _expected(x.double(), None if b is None else b.double(), dim, act, alpha, gain, clamp)
        assert actual.shape == x.shape and actual.dtype == dtype
        tol = 1e-12 if dtype == torch.float64 else 1e-5
        torch.testing.assert_close(actual.double(), expected, atol=tol, rtol=tol,
                                   msg=lambda m: f'{dim} {use_b} {alpha} {gain} {clamp}: {m}')


def _away_from_kinks(shape, gen, clamp):
    """float64 inputs whose |x + b| stays at least 0.1 from 0 and, after gain sqrt 2, from the clamp."""
    x = torch.rand(shape, generator=gen, dtype=torch.float64) * 0.6 + 0.2
    sign = torch.where(torch.rand(shape, generator=gen) < 0.5, -1.0, 1.0).double()
    x = x * sign
    if clamp is not None:
        x = torch.where(x.abs() > 0.5, x * 2, x)   # some values pass the clamp (|y| > 1), none sit on it
    return x


@pytest.mark.parametrize('impl', ['ref', 'fast'])
@pytest.mark.parametrize('act', sorted(FORMULAS))
def test_gradients(impl, act):
    """gradcheck and gradgradcheck w.r.t. x and b for every activation, with and without clamping."""
    gen = torch.Generator().manual_seed(1)
    for clamp in (None, 1.0):
        x = _away_from_kinks([2, 3, 4], gen, clamp).requires_grad_()
        b = torch.zeros([3], dtype=torch.float64, requires_grad=True)
        fn = lambda x, b: B.bias_act(x, b, act=act, clamp=clamp, impl=impl)
        assert torch.autograd.gradcheck(fn, (x, b))
        assert torch.autograd.gradgradcheck(fn, (x, b))


def test_auto_takes_fast_for_relu_family_only():
    """'auto' picks the two-pass path exactly where it is exact (relu/lrelu, gain > 0)."""
    assert B._auto_impl('lrelu', 0.2, math.sqrt(2)) == 'fast'
    assert B._auto_impl('relu', 0.0, 1.0) == 'fast'
    assert B._auto_impl('lrelu', 0.2, -1.0) == 'ref'
    assert B._auto_impl('lrelu', -0.5, 1.0) == 'ref'
    assert B._auto_impl('linear', 0.0, 2.0) == 'ref'
    assert B._auto_impl('tanh', 0.0, 1.0) == 'ref'


def test_fast_path_does_not_modify_inputs():
    """The in-place steps act on a fresh tensor only."""
    x, b = torch.randn([2, 3, 4]), torch.randn([3])
    x0, b0 = x.clone(), b.clone()
    B.bias_act(x, b, act='lrelu', clamp=0.5, impl='fast')
    B.bias_act(x, None, act='relu', gain=1.0, impl='fast')
    assert torch.equal(x, x0) and torch.equal(b, b0)


def test_unknown_activation_lists_valid_ones():
    """An unknown activation raises ValueError naming act and listing the choices."""
    with pytest.raises(ValueError, match='^act:.*linear, relu, lrelu, tanh'):
        B.bias_act(torch.zeros([2, 3]), act='gelu')


@pytest.mark.parametrize('b,dim', [(torch.zeros([4]), 1), (torch.zeros([3, 1]), 1), (torch.zeros([3]), 0)])
def test_wrong_bias_shape_names_b(b, dim):
    """A bias that does not match x.shape[dim] raises ValueError naming b."""
    with pytest.raises(ValueError, match='^b:'):
        B.bias_act(torch.zeros([2, 3]), b, dim=dim)


def test_other_bad_arguments():
    """Integer x, out-of-range dim and bad impls raise one-line ValueErrors."""
    with pytest.raises(ValueError, match='^x:'):
        B.bias_act(torch.zeros([2, 3], dtype=torch.int32))
    with pytest.raises(ValueError, match='^dim:'):
        B.bias_act(torch.zeros([2, 3]), torch.zeros([3]), dim=2)
    with pytest.raises(ValueError, match="impl='cuda' needs a CUDA tensor") as info:
        B.bias_act(torch.zeros([2, 3]), impl='cuda')
    assert '\n' not in str(info.value)
    with pytest.raises(ValueError, match='auto, ref, fast, cuda'):
        B.bias_act(torch.zeros([2, 3]), impl='cpp')
