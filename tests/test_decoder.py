"""The tri-grid decoder MLP (training/networks/decoder.py) against a float64 numpy computation."""
import dataclasses

import numpy as np
import pytest
import torch

from configs.schema import RenderingConfig
from training.networks.decoder import TriGridDecoder

CFG = RenderingConfig()


def numpy_decoder(decoder, x, lr_mul):
    """Independent forward: softplus(x W0^T g0 + b0 m) W1^T g1 + b1 m with equalized-lr gains g = m / sqrt(fan_in)."""
    w0, b0 = decoder.fc0.weight.detach().double().numpy(), decoder.fc0.bias.detach().double().numpy()
    w1, b1 = decoder.fc1.weight.detach().double().numpy(), decoder.fc1.bias.detach().double().numpy()
    h = x @ (w0 * lr_mul / np.sqrt(w0.shape[1])).T + b0 * lr_mul
    h = np.log1p(np.exp(h))
    return h @ (w1 * lr_mul / np.sqrt(w1.shape[1])).T + b1 * lr_mul


@pytest.mark.parametrize('lr_mul', [1.0, 0.1])
def test_shapes_and_values_match_numpy(lr_mul):
    torch.manual_seed(0)
    decoder = TriGridDecoder(dataclasses.replace(CFG, decoder_lr_mul=lr_mul))
    with torch.no_grad():
        decoder.fc0.bias.normal_()
        decoder.fc1.bias.normal_()
    x = torch.randn(2, 50, CFG.triplane_features)
    sigma, features = decoder(x)
    assert sigma.shape == (2, 50, 1) and features.shape == (2, 50, CFG.decoder_output)
    ref = numpy_decoder(decoder, x.double().numpy().reshape(100, -1), lr_mul).reshape(2, 50, -1)
    np.testing.assert_allclose(sigma.detach().numpy(), ref[..., :1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features.detach().numpy(), ref[..., 1:], rtol=1e-4, atol=1e-5)


def test_feature_activations():
    torch.manual_seed(1)
    x = torch.randn(1, 40, CFG.triplane_features) * 10
    raw = {}
    for activation in ('none', 'sigmoid', 'lrelu'):
        torch.manual_seed(2)
        raw[activation] = TriGridDecoder(dataclasses.replace(CFG, decoder_activation=activation))(x)
    sigma, linear = raw['none']
    m = CFG.sigmoid_margin
    torch.testing.assert_close(raw['sigmoid'][1], torch.sigmoid(linear) * (1 + 2 * m) - m)
    torch.testing.assert_close(raw['lrelu'][1], torch.where(linear > 0, linear, 0.2 * linear) * np.sqrt(2))
    assert raw['sigmoid'][1].min() >= -m and raw['sigmoid'][1].max() <= 1 + m
    for other in ('sigmoid', 'lrelu'):
        torch.testing.assert_close(raw[other][0], sigma)             # density is never activated


def test_rejects_bad_activation_and_input():
    with pytest.raises(ValueError, match='decoder_activation'):
        TriGridDecoder(dataclasses.replace(CFG, decoder_activation='tanh'))
    with pytest.raises(ValueError, match='x: expected'):
        TriGridDecoder(CFG)(torch.zeros(2, 3, 7))
