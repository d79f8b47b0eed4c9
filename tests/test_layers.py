"""Equalized-lr layers (training/networks/layers.py) against independent float64 computations."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from training.networks.layers import Conv2dLayer, FullyConnectedLayer, check_shape, compute_dtype, normalize_2nd_moment


def test_normalize_2nd_moment_matches_numpy():
    torch.manual_seed(0)
    x = torch.randn(5, 7) * 3 + 1
    ref = x.double().numpy()
    ref = ref / np.sqrt((ref ** 2).mean(axis=1, keepdims=True) + 1e-8)
    np.testing.assert_allclose(normalize_2nd_moment(x).numpy(), ref, rtol=1e-5)


@pytest.mark.parametrize('lr_multiplier', [1.0, 0.01])
def test_fc_effective_weight_std(lr_multiplier):
    torch.manual_seed(0)
    fc = FullyConnectedLayer(256, 128, lr_multiplier=lr_multiplier)
    init_std = 1 / lr_multiplier  # stored weight ~ randn / lr_mul
    assert fc.weight.std().item() == pytest.approx(init_std, rel=0.03)
    effective = fc.weight * fc.weight_gain
    assert effective.std().item() == pytest.approx(lr_multiplier / np.sqrt(256) * init_std, rel=0.03)


@pytest.mark.parametrize('activation', ['linear', 'lrelu', 'softplus'])
def test_fc_output_matches_formula(activation):
    torch.manual_seed(1)
    lr_mul = 0.01
    fc = FullyConnectedLayer(12, 6, activation=activation, lr_multiplier=lr_mul)
    with torch.no_grad():
        fc.bias.copy_(torch.randn(6) * 50)
    x = torch.randn(4, 12)
    w = fc.weight.detach().double().numpy() * (lr_mul / np.sqrt(12))
    ref = x.double().numpy() @ w.T + fc.bias.detach().double().numpy() * lr_mul
    if activation == 'lrelu':
        ref = np.where(ref > 0, ref, 0.2 * ref) * np.sqrt(2)
    if activation == 'softplus':
        ref = np.logaddexp(ref, 0)
    np.testing.assert_allclose(fc(x).detach().numpy(), ref, rtol=1e-5, atol=1e-6)


def test_fc_bias_init_is_effective_initial_bias():
    fc = FullyConnectedLayer(3, 4, bias_init=1, lr_multiplier=0.1)
    out = fc(torch.zeros(2, 3))
    torch.testing.assert_close(out, torch.ones(2, 4))


def test_fc_without_bias():
    torch.manual_seed(2)
    fc = FullyConnectedLayer(5, 3, bias=False)
    x = torch.randn(2, 5)
    torch.testing.assert_close(fc(x), x @ (fc.weight / np.sqrt(5)).t())


def test_conv2d_layer_matches_plain_conv():
    torch.manual_seed(3)
    layer = Conv2dLayer(4, 6, kernel_size=3, activation='lrelu', conv_clamp=0.5)
    with torch.no_grad():
        layer.bias.copy_(torch.randn(6))
    x = torch.randn(2, 4, 8, 8)
    ref = F.conv2d(x.double(), layer.weight.double() / np.sqrt(4 * 9), layer.bias.double(), padding=1)
    ref = (F.leaky_relu(ref, 0.2) * np.sqrt(2)).clamp(-0.5, 0.5)
    torch.testing.assert_close(layer(x).double(), ref, rtol=1e-5, atol=1e-6)


def test_conv2d_layer_gain_scales_output_and_clamp():
    torch.manual_seed(4)
    layer = Conv2dLayer(3, 5, kernel_size=3, activation='lrelu', conv_clamp=0.2)
    x = torch.randn(1, 3, 8, 8)
    out = layer(x, gain=0.5)
    assert out.abs().max().item() <= 0.1 + 1e-7
    layer.conv_clamp = None
    torch.testing.assert_close(layer(x, gain=0.5), layer(x) * 0.5)


@pytest.mark.parametrize('up,down,size', [(1, 2, 4), (2, 1, 16), (1, 1, 8)])
def test_conv2d_layer_resampling_shapes(up, down, size):
    layer = Conv2dLayer(3, 5, kernel_size=3, up=up, down=down)
    assert layer(torch.randn(2, 3, 8, 8)).shape == (2, 5, size, size)


def test_conv2d_layer_frozen_has_no_parameters():
    layer = Conv2dLayer(3, 5, kernel_size=1, trainable=False)
    assert list(layer.parameters()) == []
    assert {'weight', 'bias', 'resample_filter'} <= set(dict(layer.named_buffers()))


def test_check_shape_message():
    with pytest.raises(ValueError, match=r'ws: expected shape \[N, 14, 512\], got \[2, 13, 512\]'):
        check_shape('ws', torch.zeros(2, 13, 512), [None, 14, 512])
    with pytest.raises(ValueError, match=r'c: expected a tensor of shape \[N, 25\], got NoneType'):
        check_shape('c', None, [None, 25])


def test_compute_dtype_uses_fp16_only_on_cuda():
    assert compute_dtype(True, False, torch.device('cuda')) == torch.float16
    assert compute_dtype(True, True, torch.device('cuda')) == torch.float32
    assert compute_dtype(False, False, torch.device('cuda')) == torch.float32
    for device in ('cpu', 'mps'):
        assert compute_dtype(True, False, torch.device(device)) == torch.float32
