"""The compiled in-place softplus (torch_utils/ops/softplus_cpu.py) against float64 torch."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import softplus_cpu
from training.networks.layers import FullyConnectedLayer
from thread_testing import torch_threads

needs_plugin = pytest.mark.skipif(not softplus_cpu.applies(torch.zeros(1)), reason='softplus plugin unavailable')


def _grid() -> torch.Tensor:
    """-86 .. 86 densely (both polynomial branches, the threshold region, tiny and huge results) plus signed zeros."""
    return torch.cat([torch.linspace(-86, 86, 400001), torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1e-8, -1e-8])])


@needs_plugin
def test_float32_values_within_4e7_relative():
    x = _grid()
    y = softplus_cpu.softplus_(x.clone())
    exact = F.softplus(x.double())
    relative = (y.double() - exact).abs() / exact
    assert relative.max() < 4e-7, f'worst at x = {x[relative.argmax()].item()}'


@needs_plugin
def test_float32_gradient_is_the_sigmoid_within_1e6_relative():
    x = _grid()
    leaf = x.clone().requires_grad_()
    y = softplus_cpu.softplus_(leaf * 1.0)
    (grad,) = torch.autograd.grad(y, leaf, torch.ones_like(y))
    exact = torch.sigmoid(x.double())
    relative = (grad.double() - exact).abs() / exact
    assert relative.max() < 1e-6, f'worst at x = {x[relative.argmax()].item()}'


@needs_plugin
def test_float64_matches_torch_and_gradcheck():
    """Exact to rounding (numpy's logaddexp(0, x); torch's own softplus returns x itself above x = 20)."""
    x = torch.randn(50, dtype=torch.float64) * 30
    torch.testing.assert_close(softplus_cpu.softplus_(x.clone()), torch.from_numpy(np.logaddexp(0, x.numpy())),
                               rtol=4e-16, atol=0)
    leaf = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: softplus_cpu.softplus_(t * 1.0), (leaf,))


@needs_plugin
def test_in_place_and_non_finite_inputs():
    x = torch.tensor([float('nan'), float('inf'), -float('inf'), 100.0, -100.0])
    y = softplus_cpu.softplus_(x)
    assert y is x
    assert y[0].isnan() and y[1] == float('inf') and y[3] == 100.0
    assert 0 <= y[2] < 1e-37 and 0 <= y[4] < 1e-37


@needs_plugin
def test_same_bits_on_one_and_two_threads():
    x = torch.randn(100003) * 20
    outs = []
    for threads in (1, 2):
        with torch_threads(threads):
            outs.append(softplus_cpu.softplus_(x.clone()))
    assert torch.equal(*outs)


def test_applies_to_contiguous_float_cpu_tensors_outside_autocast():
    assert not softplus_cpu.applies(torch.zeros(4, 4).t()[:, :2])
    assert not softplus_cpu.applies(torch.zeros(3, dtype=torch.bfloat16))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not softplus_cpu.applies(torch.zeros(3))


@needs_plugin
def test_fully_connected_softplus_layer_uses_it_and_matches_pytorch(monkeypatch):
    torch.manual_seed(1)
    layer = FullyConnectedLayer(8, 16, activation='softplus', lr_multiplier=0.5, bias_init=0.3)
    x = torch.randn(33, 8, requires_grad=True)
    calls, results = [], []
    compiled = softplus_cpu.softplus_
    monkeypatch.setattr(softplus_cpu, 'softplus_', lambda t: calls.append(1) or compiled(t))
    for use in (True, False):
        monkeypatch.setattr(softplus_cpu, 'applies', lambda t, use=use: use)
        y = layer(x)
        results.append([y, *torch.autograd.grad(y.square().sum(), [x, *layer.parameters()])])
    assert len(calls) == 1
    for a, e in zip(*results):
        torch.testing.assert_close(a, e, rtol=2e-6, atol=2e-6)
