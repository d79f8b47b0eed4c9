"""Synthesis layers, blocks and network (training/networks/synthesis.py)."""
import numpy as np
import pytest
import torch

from torch_utils.ops import conv2d_resample, upfirdn2d
from training.networks import layer_epilogue
from training.networks.synthesis import SynthesisBlock, SynthesisLayer, SynthesisNetwork, ToRGBLayer
from grad_testing import assert_results_close

W_DIM = 32
SMALL = dict(channel_base=1024, channel_max=64)


def _network(img_resolution=16, img_channels=3, **kwargs):
    torch.manual_seed(0)
    return SynthesisNetwork(w_dim=W_DIM, img_resolution=img_resolution, img_channels=img_channels,
                            **{**SMALL, **kwargs})


@pytest.mark.parametrize('img_resolution,img_channels', [(16, 3), (32, 32), (64, 96)])
def test_shapes_and_num_ws(img_resolution, img_channels):
    net = _network(img_resolution, img_channels)
    assert net.num_ws == 2 * int(np.log2(img_resolution)) - 2  # 1 + 2 per block after 4x4, + final ToRGB
    ws = torch.randn(2, net.num_ws, W_DIM)
    img = net(ws)
    assert img.shape == (2, img_channels, img_resolution, img_resolution)
    assert img.dtype == torch.float32 and torch.isfinite(img).all()


def test_channel_counts_follow_channel_base():
    net = _network(64, channel_base=1024, channel_max=64)
    assert [getattr(net, f'b{r}').out_channels for r in net.block_resolutions] == [64, 64, 64, 32, 16]


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_architectures(architecture):
    net = _network(16, architecture=architecture)
    assert net.num_ws == 6
    assert hasattr(net.b8, 'torgb') == (architecture == 'skip')
    assert hasattr(net.b8, 'skip') == (architecture == 'resnet')
    img = net(torch.randn(2, 6, W_DIM))
    assert img.shape == (2, 3, 16, 16)


def test_ws_shape_error_names_argument():
    net = _network(16)
    with pytest.raises(ValueError, match=r'ws: expected shape \[N, 6, 32\], got \[2, 5, 32\]'):
        net(torch.randn(2, 5, W_DIM))


def test_noise_modes():
    net = _network(16)
    for name, p in net.named_parameters():
        if name.endswith('noise_strength'):
            p.data.fill_(1.0)
    ws = torch.randn(2, net.num_ws, W_DIM)
    const = net(ws, noise_mode='const')
    torch.testing.assert_close(net(ws, noise_mode='const'), const, rtol=0, atol=0)
    none = net(ws, noise_mode='none')
    assert not torch.allclose(none, const)
    assert not torch.allclose(net(ws, noise_mode='random'), net(ws, noise_mode='random'))
    with pytest.raises(ValueError, match='noise_mode'):
        net(ws, noise_mode='bogus')


def test_fused_equals_non_fused_network():
    net = _network(32, img_channels=8)
    ws = torch.randn(3, net.num_ws, W_DIM)
    fused = net(ws, noise_mode='const', fused_modconv=True)
    plain = net(ws, noise_mode='const', fused_modconv=False)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_fused_modconv_inference_only_convention():
    block = SynthesisBlock(0, 8, W_DIM, 4, 3, is_last=True, fused_modconv_default='inference_only')
    assert block._resolve_fused(None) is False  # training mode by default
    block.eval()
    assert block._resolve_fused(None) is True
    assert block._resolve_fused(False) is False


def test_fp16_layers_run_fp32_on_cpu():
    net = _network(32, num_fp16_res=2, conv_clamp=256)
    assert [getattr(net, f'b{r}').use_fp16 for r in net.block_resolutions] == [False, False, True, True]
    x = img = None
    for res, ws in zip(net.block_resolutions, net.split_ws(torch.randn(2, net.num_ws, W_DIM))):
        x, img = getattr(net, f'b{res}')(x, img, ws)
        assert x.dtype == torch.float32 and img.dtype == torch.float32


def test_conv_clamp_applies_on_cpu():
    torch.manual_seed(1)
    layer = SynthesisLayer(8, 8, W_DIM, resolution=8, conv_clamp=0.05)
    out = layer(torch.randn(2, 8, 8, 8), torch.randn(2, W_DIM))
    assert out.abs().max().item() <= 0.05 + 1e-7
    torgb = ToRGBLayer(8, 3, W_DIM, conv_clamp=0.01)
    assert torgb(out, torch.randn(2, W_DIM)).abs().max().item() <= 0.01 + 1e-7


def test_torgb_is_undemodulated_1x1_with_weight_gain():
    torch.manual_seed(2)
    torgb = ToRGBLayer(8, 3, W_DIM)
    x, w = torch.randn(2, 8, 4, 4), torch.randn(2, W_DIM)
    styles = torgb.affine(w) / np.sqrt(8)
    ref = torch.einsum('oi,ni,nihw->nohw', torgb.weight[:, :, 0, 0], styles, x) + torgb.bias[None, :, None, None]
    torch.testing.assert_close(torgb(x, w), ref, rtol=1e-5, atol=1e-5)


def test_skip_block_adds_torgb_to_upsampled_image():
    torch.manual_seed(3)
    block = SynthesisBlock(8, 8, W_DIM, resolution=8, img_channels=3, is_last=False, architecture='skip')
    x, img, ws = torch.randn(2, 8, 4, 4), torch.randn(2, 3, 4, 4), torch.randn(2, 3, W_DIM)
    out_x, out_img = block(x, img, ws, noise_mode='none')
    rgb = block.torgb(out_x, ws[:, 2], fused_modconv=True)
    torch.testing.assert_close(out_img, upfirdn2d.upsample2d(img, block.resample_filter) + rgb)


@pytest.mark.parametrize('up', [1, 2])
def test_skip_path_backward_on_cpu_with_image_view(up):
    """Regression for EG3D's CPU-only bug: img is a view of a tensor that conv0 saved for backward."""
    torch.manual_seed(4)
    block = SynthesisBlock(8, 8, W_DIM, resolution=8 * up, img_channels=3, is_last=True, architecture='skip', up=up,
                           fused_modconv_default='inference_only')
    block.train()  # non-fused path: x * styles saves x itself for the style gradient
    features = torch.randn(2, 8, 8, 8, requires_grad=True)
    x = features * 1.0
    img = x[:, :3]
    out_x, out_img = block(x, img, torch.randn(2, 3, W_DIM, requires_grad=True))
    (out_img.square().mean() + out_x.mean()).backward()
    assert features.grad is not None and torch.isfinite(features.grad).all()


def test_block_without_upsampling_keeps_resolution():
    block = SynthesisBlock(8, 4, W_DIM, resolution=8, img_channels=3, is_last=False, architecture='resnet', up=1)
    x, img = block(torch.randn(2, 8, 8, 8), None, torch.randn(2, 2, W_DIM))
    assert x.shape == (2, 4, 8, 8) and img is None


def test_block_input_checks():
    block = SynthesisBlock(8, 8, W_DIM, resolution=8, img_channels=3, is_last=False)
    with pytest.raises(ValueError, match=r'^x: expected'):
        block(torch.randn(2, 8, 8, 8), None, torch.randn(2, 3, W_DIM))
    with pytest.raises(ValueError, match=r'^img: expected'):
        block(torch.randn(2, 8, 4, 4), torch.randn(2, 4, 4, 4), torch.randn(2, 3, W_DIM))


def test_invalid_options_raise():
    with pytest.raises(ValueError, match='img_resolution'):
        SynthesisNetwork(W_DIM, 48, 3)
    with pytest.raises(ValueError, match='architecture'):
        SynthesisBlock(0, 8, W_DIM, 4, 3, is_last=True, architecture='bogus')


def _layer_reference(layer, x, w, noise, gain):
    """clamp(lrelu(demodulated per-sample conv + noise + bias) * sqrt(2) * gain), written out per sample."""
    styles = layer.affine(w)
    outs = []
    for n in range(x.shape[0]):
        weight = layer.weight * styles[n][None, :, None, None]
        weight = weight / (weight.square().sum(dim=[1, 2, 3], keepdim=True) + 1e-8).sqrt()
        outs.append(conv2d_resample.conv2d_resample(x[n:n + 1], weight, f=layer.resample_filter, up=layer.up,
                                                    padding=1, flip_weight=(layer.up == 1)))
    y = torch.cat(outs) + layer.bias[None, :, None, None] + (0 if noise is None else noise)
    y = torch.where(y > 0, y, 0.2 * y) * np.sqrt(2) * gain
    return y if layer.conv_clamp is None else y.clamp(-layer.conv_clamp * gain, layer.conv_clamp * gain)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('up,clamp,gain', [(1, None, 1.0), (2, None, 1.0), (1, 0.3, 1.0), (2, 0.3, np.sqrt(0.5))])
def test_layer_epilogue_folds_gain_noise_and_bias_exactly(fused, up, clamp, gain):
    torch.manual_seed(5)
    layer = SynthesisLayer(6, 5, W_DIM, resolution=8, up=up, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.noise_strength.fill_(0.7)
    x, w = torch.randn(3, 6, 8 // up, 8 // up, dtype=torch.float64), torch.randn(3, W_DIM, dtype=torch.float64)
    for mode, noise in [('const', layer.noise_const * 0.7), ('none', None)]:
        out = layer(x, w, noise_mode=mode, fused_modconv=fused, gain=gain)
        torch.testing.assert_close(out, _layer_reference(layer, x, w, noise, gain))
        if clamp is not None:
            assert (out.abs() <= clamp * gain + 1e-12).all() and (out.abs() == clamp * gain).any()


@pytest.mark.skipif(not layer_epilogue.applies(torch.zeros(1)), reason='layer_epilogue plugin unavailable')
@pytest.mark.parametrize('up,clamp,gain,mode', [(1, None, 1.0, 'const'), (2, 0.3, np.sqrt(0.5), 'const'),
                                                (1, 0.3, 1.0, 'none')])
def test_compiled_epilogue_gives_the_pytorch_layer_and_gradients(monkeypatch, up, clamp, gain, mode):
    """Non-fused layers on the CPU run the compiled epilogue; switched off they take the PyTorch path."""
    torch.manual_seed(7)
    layer = SynthesisLayer(6, 5, W_DIM, resolution=8, up=up, conv_clamp=clamp).double()
    with torch.no_grad():
        layer.bias.normal_()
        layer.noise_strength.fill_(0.7)
    x = torch.randn(3, 6, 8 // up, 8 // up, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, W_DIM, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    inputs = [x, w, *layer.parameters()]
    calls = []
    compiled = layer_epilogue.layer_epilogue
    monkeypatch.setattr(layer_epilogue, 'layer_epilogue', lambda *args: calls.append(1) or compiled(*args))
    results = []
    for use_compiled in (True, False):
        monkeypatch.setattr(layer_epilogue, 'applies', lambda t, use=use_compiled: use)
        out = layer(x, w, noise_mode=mode, fused_modconv=False, gain=gain)
        results.append([out, *torch.autograd.grad(out, inputs, grad, allow_unused=True)])
    assert len(calls) == 1
    assert_results_close(*results, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('clamp', [None, 0.05])
def test_torgb_adds_the_skip_image_without_touching_it(fused, clamp):
    torch.manual_seed(6)
    torgb = ToRGBLayer(8, 3, W_DIM, conv_clamp=clamp)
    x, w, img = torch.randn(2, 8, 4, 4), torch.randn(2, W_DIM), torch.randn(2, 3, 4, 4)
    before = img.clone()
    out = torgb(x, w, fused_modconv=fused, skip=img)
    torch.testing.assert_close(out, torgb(x, w, fused_modconv=fused) + before)
    assert torch.equal(img, before)
