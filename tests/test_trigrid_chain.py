"""Chained compiled tri-grid sampling (trigrid_cpp.sample_chained): several calls on one set of planes add
their planes gradients into one buffer; the gradients equal those of independent grid_sample lookups."""
import pytest
import torch

from test_trigrid_cpp import random_case
from training.rendering import trigrid_cpp
from training.rendering.planes import TriGridSampler, _grid_sample_trigrid
from grad_testing import assert_results_close

needs_plugin = pytest.mark.skipif(not trigrid_cpp.available('cpu'),
                                  reason='the trigrid_sample CPU plugin is unavailable')
DEPTH = 3


def _case(seed=0, dtype=torch.float64):
    planes, coords, _ = random_case(2, 4, DEPTH, 9, 70, 300, dtype=dtype, seed=seed)
    parts = [coords[:, :100], coords[:, 100:180], coords[:, 180:]]
    g = torch.Generator().manual_seed(seed + 1)
    grads = [torch.randn(2, c.shape[1], 4, generator=g, dtype=dtype) for c in parts]
    return planes, parts, grads


def _grads(sample_fn, planes, parts, grads, used):
    """d/d planes and d/d each coords of sum over the `used` calls of <features, grad>."""
    planes = planes.clone().requires_grad_()
    parts = [c.clone().requires_grad_() for c in parts]
    features = sample_fn(planes, parts)
    loss = sum((features[k] * grads[k]).sum() for k in used)
    return torch.autograd.grad(loss, [planes, *parts], allow_unused=True)


def _chained(planes, parts):
    table, token, out = trigrid_cpp.texel_table(planes, DEPTH), None, []
    for coords in parts:
        features, token = trigrid_cpp.sample_chained(planes, table, coords, token)
        out.append(features)
    return out


def _reference(planes, parts):
    return [_grid_sample_trigrid(planes, coords, DEPTH) for coords in parts]


@needs_plugin
@pytest.mark.parametrize('used', [(0, 1, 2), (0, 2), (1,), (2,), (0,)])
def test_chained_gradients_equal_independent_lookups(used):
    """Every subset of calls reaching the loss, including ones where the first call (whose node returns the
    planes gradient) or a middle one is unused."""
    planes, parts, grads = _case()
    actual = _grads(_chained, planes, parts, grads, used)
    expected = _grads(_reference, planes, parts, grads, used)
    assert_results_close(actual, expected, rtol=1e-10, atol=1e-10)


@needs_plugin
def test_backward_twice_gives_the_same_gradient_and_leaves_nothing_behind():
    planes, parts, grads = _case(seed=3)
    planes = planes.clone().requires_grad_()
    features = _chained(planes, parts)
    loss = sum((f * g).sum() for f, g in zip(features, grads))
    first = torch.autograd.grad(loss, planes, retain_graph=True)[0].clone()
    second = torch.autograd.grad(loss, planes)[0]
    torch.testing.assert_close(second, first, rtol=0, atol=0)


@needs_plugin
def test_coordinate_gradients_only_when_the_planes_are_frozen():
    planes, parts, grads = _case(seed=4)
    parts = [c.clone().requires_grad_() for c in parts]
    features = _chained(planes, parts)
    actual = torch.autograd.grad(sum((f * g).sum() for f, g in zip(features, grads)), parts)
    expected = torch.autograd.grad(sum((f * g).sum() for f, g in zip(_reference(planes, parts), grads)), parts)
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)


@needs_plugin
def test_sampler_chains_float32_calls():
    """TriGridSampler (the renderer's) chains its calls: float32 planes gradient of two passes vs grid_sample."""
    planes, parts, grads = _case(seed=5, dtype=torch.float32)
    def through_sampler(p, coords_list):
        sampler = TriGridSampler(p, DEPTH, box_warp=2.0, impl='cpp')
        return [sampler(c) for c in coords_list]
    actual = _grads(through_sampler, planes, parts, grads, (0, 1, 2))
    expected = _grads(_reference, planes, parts, grads, (0, 1, 2))
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=1e-4, atol=1e-4)
