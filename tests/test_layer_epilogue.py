"""The compiled synthesis-layer epilogue (training/networks/layer_epilogue.py) against a PyTorch formula."""
import math
import os

import pytest
import torch

from training.networks import layer_epilogue
from thread_testing import torch_threads

needs_plugin = pytest.mark.skipif(not layer_epilogue.applies(torch.zeros(1)), reason='layer_epilogue plugin unavailable')


def formula(x, scale, bias, noise, low, high, alpha):
    """act(clamp(x * scale + bias + noise, low, high)) with act(v) = v if v > 0 else alpha v, by torch ops."""
    z = x * scale[:, :, None, None] + bias[None, :, None, None]
    if noise is not None:
        z = z + noise.reshape(-1, 1, *x.shape[2:])
    z = torch.clamp(z, low, high)
    return torch.where(z > 0, z, alpha * z)


def _inputs(noise_shape, dtype=torch.float64, seed=0, shape=(3, 4, 5, 7)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    scale = torch.randn(shape[:2], generator=g, dtype=dtype)
    bias = torch.randn(shape[1], generator=g, dtype=dtype)
    noise = torch.randn(noise_shape, generator=g, dtype=dtype) if noise_shape else None
    return x, scale, bias, noise


NOISES = [None, (3, 1, 5, 7), (1, 1, 5, 7), (5, 7)]      # none, random per sample, const [1, ...] and [H, W]
BOUNDS = [(-math.inf, math.inf, 0.2), (-0.7 / 0.2, 0.7, 0.2), (-0.7, 0.7, 0.0)]   # lrelu, lrelu + clamp, relu + clamp


@needs_plugin
@pytest.mark.parametrize('noise_shape', NOISES)
@pytest.mark.parametrize('low,high,alpha', BOUNDS)
def test_values_and_gradients_match_the_formula(noise_shape, low, high, alpha):
    inputs = [t.requires_grad_() for t in _inputs(noise_shape) if t is not None]

    def compiled(x, scale, bias, *noise):
        return layer_epilogue.layer_epilogue(x, scale, bias, noise[0] if noise else None, low, high, alpha)

    def reference(x, scale, bias, *noise):
        return formula(x, scale, bias, noise[0] if noise else None, low, high, alpha)

    grad = torch.randn(3, 4, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    actual, expected = compiled(*inputs), reference(*inputs)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)
    for name, a, e in zip(('x', 'scale', 'bias', 'noise'), torch.autograd.grad(actual, inputs, grad),
                          torch.autograd.grad(expected, inputs, grad)):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10, msg=lambda m: f'{name}: {m}')
    if math.isfinite(high):
        assert (expected.abs() == high).any() and (expected.abs() < high).any()    # clamped and free elements


@needs_plugin
def test_gradcheck_with_noise_and_clamp():
    x, scale, bias, noise = [t.requires_grad_() for t in _inputs((3, 1, 5, 7), shape=(3, 2, 5, 7))]
    assert torch.autograd.gradcheck(
        lambda *a: layer_epilogue.layer_epilogue(*a, -2.0, 0.6, 0.2), (x, scale, bias, noise))


@needs_plugin
def test_gradients_only_where_asked_and_first_order_only():
    x, scale, bias, noise = _inputs((3, 1, 5, 7))
    scale.requires_grad_()
    y = layer_epilogue.layer_epilogue(x, scale, bias, noise, -math.inf, math.inf, 0.2)
    (grad_scale,) = torch.autograd.grad(y.sum(), scale, create_graph=True)
    expected = torch.autograd.grad(formula(x, scale, bias, noise, -math.inf, math.inf, 0.2).sum(), scale)[0]
    torch.testing.assert_close(grad_scale, expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(RuntimeError, match='once_differentiable|does not require grad'):
        torch.autograd.grad(grad_scale.sum(), scale)


@needs_plugin
def test_float32_large_planes_and_thread_count_independence():
    """Several pixel blocks per row (P = 2500 > 1024), float32: same bits on 1 and 2 threads."""
    x, scale, bias, noise = [t.requires_grad_() for t in _inputs((2, 1, 50, 50), torch.float32, shape=(2, 3, 50, 50))]
    grad = torch.randn(2, 3, 50, 50)
    results = []
    for threads in (1, 2):
        with torch_threads(threads):
            y = layer_epilogue.layer_epilogue(x, scale, bias, noise, -1.5, 0.3, 0.2)
            results.append([y, *torch.autograd.grad(y, (x, scale, bias, noise), grad)])
    for one, two in zip(*results):
        assert torch.equal(one, two)
    expected = formula(x, scale, bias, noise, -1.5, 0.3, 0.2)
    torch.testing.assert_close(results[0][0], expected, rtol=1e-6, atol=1e-6)
    reference_grads = torch.autograd.grad(expected, (x, scale, bias, noise), grad)
    for a, e in zip(results[0][1:], reference_grads):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)


@needs_plugin
def test_shape_errors_name_the_operand():
    x, scale, bias, noise = _inputs((3, 1, 5, 7))
    with pytest.raises(RuntimeError, match='scale must have shape'):
        layer_epilogue.layer_epilogue(x, scale[:, :2], bias, noise, -math.inf, math.inf, 0.2)
    with pytest.raises(RuntimeError, match='noise must be'):
        layer_epilogue.layer_epilogue(x, scale, bias, torch.zeros(2, 1, 5, 7, dtype=x.dtype), -math.inf, math.inf, 0.2)


def test_applies_only_to_cpu_float32_and_float64_outside_autocast():
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert not layer_epilogue.applies(torch.zeros(1))
    assert not layer_epilogue.applies(torch.zeros(1, dtype=torch.float16))
    assert not layer_epilogue.applies(torch.zeros(1, dtype=torch.bfloat16))
    assert not layer_epilogue.applies(torch.zeros(1, device='meta'))


def test_source_exists():
    assert os.path.isfile(os.path.join(layer_epilogue.SOURCE_DIR, 'layer_epilogue.cpp'))
