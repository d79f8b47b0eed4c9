"""StyleGAN2 Generator and Discriminator (training/networks/stylegan2.py) end to end on the CPU."""
import io

import numpy as np
import pytest
import torch

from torch_utils import persistence
from training.networks.stylegan2 import Discriminator, Generator

Z_DIM, C_DIM, W_DIM = 16, 8, 32
SMALL = dict(channel_base=1024, channel_max=64)


def _generator(img_resolution=16, img_channels=3, seed=0, **kwargs):
    torch.manual_seed(seed)
    return Generator(Z_DIM, C_DIM, W_DIM, img_resolution, img_channels, mapping_kwargs=dict(num_layers=2),
                     **SMALL, **kwargs)


def _discriminator(img_resolution=16, img_channels=3, seed=0, c_dim=C_DIM, **kwargs):
    torch.manual_seed(seed)
    return Discriminator(c_dim, img_resolution, img_channels, mapping_kwargs=dict(num_layers=2), **SMALL, **kwargs)


def _latents(batch=2, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, Z_DIM, generator=gen), torch.randn(batch, C_DIM, generator=gen)


@pytest.mark.parametrize('img_resolution,img_channels', [(16, 3), (32, 32), (64, 96)])
def test_generator_and_discriminator_shapes(img_resolution, img_channels):
    G = _generator(img_resolution, img_channels)
    D = _discriminator(img_resolution, img_channels)
    z, c = _latents()
    assert G.mapping(z, c).shape == (2, G.num_ws, W_DIM)
    img = G(z, c, noise_mode='const')
    assert img.shape == (2, img_channels, img_resolution, img_resolution)
    assert D(img, c).shape == (2, 1)


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_discriminator_architectures(architecture):
    D = _discriminator(architecture=architecture)
    assert D(torch.randn(4, 3, 16, 16), torch.randn(4, C_DIM)).shape == (4, 1)


def test_unconditional_discriminator():
    D = _discriminator(c_dim=0)
    assert D.cmap_dim == 0 and not hasattr(D, 'mapping')
    assert D(torch.randn(2, 3, 16, 16), None).shape == (2, 1)


def test_discriminator_projection_equals_formula():
    D = _discriminator()
    img, c = torch.randn(4, 3, 16, 16), torch.randn(4, C_DIM)
    x, _ = D.run_blocks(img)
    out = D.b4.out(D.b4.fc(D.b4.features(x)))
    cmap = D.mapping(None, c)
    expected = (out * cmap).sum(dim=1, keepdim=True) / np.sqrt(D.cmap_dim)
    torch.testing.assert_close(D(img, c), expected)


def _assert_all_grads(module):
    for name, p in module.named_parameters():
        assert p.grad is not None, f'{name}: no gradient'
        assert torch.isfinite(p.grad).all(), f'{name}: non-finite gradient'
        assert p.grad.abs().sum() > 0, f'{name}: all-zero gradient'


@pytest.mark.parametrize('architecture', ['skip', 'resnet'])
def test_gradients_reach_every_parameter(architecture):
    G = _generator(architecture=architecture)
    D = _discriminator(architecture=architecture)
    z, c = _latents(batch=4)
    logits = D(G(z, c), c)
    torch.nn.functional.softplus(-logits).mean().backward()
    _assert_all_grads(G)
    _assert_all_grads(D)


def test_state_dict_round_trip_reproduces_outputs():
    G, D = _generator(32), _discriminator(32)
    G2, D2 = _generator(32, seed=123), _discriminator(32, seed=123)
    G2.load_state_dict(G.state_dict())
    D2.load_state_dict(D.state_dict())
    z, c = _latents()
    img = G(z, c, noise_mode='const')
    torch.testing.assert_close(G2(z, c, noise_mode='const'), img, rtol=0, atol=0)
    torch.testing.assert_close(D2(img, c), D(img, c), rtol=0, atol=0)


def test_fixed_seeds_are_deterministic():
    z, c = _latents()
    outs = []
    for _ in range(2):
        G = _generator()
        torch.manual_seed(7)
        outs.append(G(z, c, noise_mode='random'))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_truncation_through_generator():
    G = _generator()
    with torch.no_grad():
        G.mapping.w_avg.copy_(torch.randn(W_DIM))
    z, c = _latents()
    avg_img = G.synthesis(G.mapping.w_avg.expand(2, G.num_ws, W_DIM), noise_mode='const')
    torch.testing.assert_close(G(z, c, truncation_psi=0, noise_mode='const'), avg_img)


def test_update_emas_only_in_training_calls():
    G = _generator()
    z, c = _latents()
    before = G.mapping.w_avg.clone()
    G(z, c)
    assert torch.equal(G.mapping.w_avg, before)
    G(z, c, update_emas=True)
    assert not torch.equal(G.mapping.w_avg, before)


def test_bad_inputs_raise_value_error():
    G, D = _generator(), _discriminator()
    z, c = _latents()
    with pytest.raises(ValueError, match=r'^z: expected shape \[N, 16\]'):
        G(z[:, :-1], c)
    with pytest.raises(ValueError, match=r'^c: expected shape \[2, 8\]'):
        G(z, c[:1])
    with pytest.raises(ValueError, match=r'^ws: expected shape \[N, 6, 32\], got \[2, 7, 32\]'):
        G.synthesis(torch.randn(2, 7, W_DIM))
    with pytest.raises(ValueError, match=r'^img: expected shape \[N, 3, 16, 16\]'):
        D(torch.randn(2, 3, 8, 8), c)
    with pytest.raises(ValueError, match=r'^c: expected'):
        D(torch.randn(2, 3, 16, 16), None)


def test_constructor_kwargs_are_recorded():
    """Persistence records init kwargs so that checkpoints can rebuild the networks."""
    G = Generator(z_dim=Z_DIM, c_dim=C_DIM, w_dim=W_DIM, img_resolution=16, img_channels=3, **SMALL)
    D = Discriminator(c_dim=C_DIM, img_resolution=16, img_channels=3, **SMALL)
    assert G.init_kwargs['img_resolution'] == 16 and G.init_kwargs['channel_base'] == 1024
    assert D.init_kwargs['c_dim'] == C_DIM


def test_checkpoint_dict_round_trip():
    """module_to_dict / module_from_dict rebuild G and D from plain data (torch.load weights_only)."""
    G = Generator(z_dim=Z_DIM, c_dim=C_DIM, w_dim=W_DIM, img_resolution=16, img_channels=3,
                  mapping_kwargs=dict(num_layers=2), **SMALL)
    D = Discriminator(c_dim=C_DIM, img_resolution=16, img_channels=3, **SMALL)
    buffer = io.BytesIO()
    torch.save({'G': persistence.module_to_dict(G), 'D': persistence.module_to_dict(D)}, buffer)
    buffer.seek(0)
    data = torch.load(buffer, weights_only=True)
    G2, D2 = persistence.module_from_dict(data['G']), persistence.module_from_dict(data['D'])
    z, c = _latents()
    img = G(z, c, noise_mode='const')
    torch.testing.assert_close(G2(z, c, noise_mode='const'), img, rtol=0, atol=0)
    torch.testing.assert_close(D2(img, c), D(img, c), rtol=0, atol=0)


def test_reduced_precision_path_close_to_fp32(monkeypatch):
    """The float16 code path (normally CUDA only) forced on the CPU stays close to float32."""
    import training.networks.discriminator_blocks as discriminator_blocks
    import training.networks.synthesis as synthesis

    def fp16_anywhere(use_fp16, force_fp32, device):
        return torch.float16 if (use_fp16 and not force_fp32) else torch.float32
    monkeypatch.setattr(synthesis, 'compute_dtype', fp16_anywhere)
    monkeypatch.setattr(discriminator_blocks, 'compute_dtype', fp16_anywhere)
    G = _generator(32, num_fp16_res=2, conv_clamp=256, fp16_channels_last=True)
    D = _discriminator(32, num_fp16_res=2, block_kwargs=dict(fp16_channels_last=True))
    z, c = _latents()
    for fused in (True, False):
        img = G(z, c, noise_mode='const', fused_modconv=fused)
        assert img.dtype == torch.float32
        torch.testing.assert_close(img, G(z, c, noise_mode='const', fused_modconv=fused, force_fp32=True),
                                   rtol=0, atol=2e-2)
        logits = D(img, c)
        torch.testing.assert_close(logits, D(img, c, force_fp32=True), rtol=0, atol=2e-2)
        logits.sum().backward()
