"""Super-resolution modules (training/networks/superresolution.py, system.md §2.10)."""
import io

import pytest
import torch
import torch.nn.functional as F

from torch_utils import persistence
from training.networks.superresolution import SuperResolution, build_superresolution

W_DIM = 16
SMALL = dict(channels=(8, 4), w_dim=W_DIM)


def _inputs(resolution, batch=1, num_ws=3, seed=1):
    gen = torch.Generator().manual_seed(seed)
    rgb = torch.randn(batch, 3, resolution, resolution, generator=gen)
    x = torch.randn(batch, 32, resolution, resolution, generator=gen)
    return rgb, x, torch.randn(batch, num_ws, W_DIM, generator=gen)


def _blocks(sr):
    return [getattr(sr, f'block{i}') for i in range(sr.num_blocks)]


@pytest.mark.parametrize('img_resolution,native,ups,resolutions', [
    (128, 64, [1, 2], [64, 128]),      # x2 (Hybrid2X)
    (256, 128, [1, 2], [128, 256]),    # x4 (Hybrid4X)
    (512, 128, [2, 2], [256, 512]),    # x8 (Hybrid8XDC)
])
def test_paper_layouts_output_shapes(img_resolution, native, ups, resolutions):
    torch.manual_seed(0)
    sr = build_superresolution(img_resolution, **SMALL)
    assert sr.input_resolution == native
    assert [b.up for b in _blocks(sr)] == ups and [b.resolution for b in _blocks(sr)] == resolutions
    assert all(b.architecture == 'skip' for b in _blocks(sr))
    out = sr(*_inputs(native))
    assert out.shape == (1, 3, img_resolution, img_resolution) and out.dtype == torch.float32
    assert torch.isfinite(out).all()


@pytest.mark.parametrize('img_resolution,channels', [(128, [128, 64]), (256, [128, 64]), (512, [256, 128])])
def test_paper_default_channels(img_resolution, channels):
    sr = build_superresolution(img_resolution)
    assert [b.out_channels for b in _blocks(sr)] == channels
    assert sr.block0.in_channels == 32 and sr.w_dim == 512


def _tiny(img_resolution=32, input_resolution=16, **kwargs):
    torch.manual_seed(0)
    return build_superresolution(img_resolution, input_resolution, **{**SMALL, **kwargs})


@pytest.mark.parametrize('r', [8, 12, 16, 24])
def test_non_native_inputs_are_resized_antialiased(r):
    sr = _tiny()
    rgb, x, ws = _inputs(r, batch=2)
    out = sr(rgb, x, ws)
    assert out.shape == (2, 3, 32, 32)
    resize = dict(size=(16, 16), mode='bilinear', align_corners=False, antialias=True)
    expected = sr(F.interpolate(rgb, **resize), F.interpolate(x, **resize), ws)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_x4_scale_uses_two_upsampling_blocks():
    sr = _tiny(64, 16)
    assert [b.up for b in _blocks(sr)] == [2, 2]
    assert sr(*_inputs(16)).shape == (1, 3, 64, 64)


def test_extra_blocks_keep_resolution_first():
    sr = _tiny(32, 16, channels=(8, 8, 4))
    assert [b.up for b in _blocks(sr)] == [1, 1, 2]
    assert sr(*_inputs(16)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize('fused_modconv', [False, True])
def test_backward_with_rgb_a_view_of_the_features(fused_modconv):
    """Regression for EG3D's in-place add into a view (machine.md §5): must not raise on the CPU.

    With non-fused modconv (training), conv0 saves x, so an in-place add into rgb = x[:, :3] fails here."""
    sr = _tiny(fused_modconv_default=fused_modconv)
    _, leaf, ws = _inputs(16, batch=2)
    leaf.requires_grad_(True)
    ws.requires_grad_(True)
    x = leaf * 1.0                      # a non-leaf feature image, as rendered
    rgb = x[:, :3]                      # a view, at the native resolution (no resize copy)
    sr(rgb, x, ws).square().mean().backward()
    assert leaf.grad is not None and ws.grad is not None
    for name, p in sr.named_parameters():
        if not name.endswith('noise_strength'):     # unused with noise_mode='none'
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_only_the_last_w_is_used():
    sr = _tiny()
    rgb, x, ws = _inputs(16, batch=2, num_ws=5)
    other = ws.clone()
    other[:, :-1] = torch.randn_like(other[:, :-1])
    torch.testing.assert_close(sr(rgb, x, ws), sr(rgb, x, other), rtol=0, atol=0)
    assert sr(rgb, x, ws[:, -1:]).shape == (2, 3, 32, 32)


def test_noise_mode_default_none_and_configurable():
    sr = _tiny()
    with torch.no_grad():
        for name, p in sr.named_parameters():
            if name.endswith('noise_strength'):
                p.fill_(1.0)
    inputs = _inputs(16)
    torch.testing.assert_close(sr(*inputs), sr(*inputs), rtol=0, atol=0)
    assert not torch.equal(sr(*inputs, noise_mode='random'), sr(*inputs, noise_mode='random'))
    assert not torch.equal(sr(*inputs), sr(*inputs, noise_mode='const'))


def test_fp16_request_runs_float32_on_cpu_with_clamp():
    sr = _tiny(use_fp16=True, conv_clamp=256)
    assert all(b.use_fp16 for b in _blocks(sr)) and sr.block0.conv0.conv_clamp == 256
    out = sr(*_inputs(16), force_fp32=False)
    assert out.dtype == torch.float32


@pytest.mark.parametrize('which,shape,pattern', [
    ('rgb', (1, 4, 16, 16), r'rgb: expected shape \[N, 3, \*, \*\]'),
    ('rgb', (1, 3, 16, 8), r'rgb: expected a square image'),
    ('x', (1, 32, 8, 8), r'x: expected shape \[1, 32, 16, 16\]'),
    ('x', (1, 16, 16, 16), r'x: expected shape'),
    ('ws', (1, 3, W_DIM + 1), r'ws: expected shape \[1, \*, 16\]'),
    ('ws', (1, 0, W_DIM), r'ws: expected at least one w'),
])
def test_bad_shapes_raise_value_error_naming_argument(which, shape, pattern):
    sr = _tiny()
    inputs = dict(zip(['rgb', 'x', 'ws'], _inputs(16)))
    inputs[which] = torch.zeros(shape)
    with pytest.raises(ValueError, match=pattern):
        sr(**inputs)


def test_bad_configurations():
    with pytest.raises(ValueError, match='input_resolution'):
        build_superresolution(96, 64)
    with pytest.raises(ValueError, match='input_resolution'):
        build_superresolution(64, 64)
    with pytest.raises(ValueError, match='channels: no default layout for a x8'):
        build_superresolution(512, 64)
    with pytest.raises(ValueError, match='channels: expected at least 2'):
        build_superresolution(64, 16, channels=(8,))
    assert [b.up for b in _blocks(build_superresolution(512, 64, channels=(8, 8, 4), w_dim=W_DIM))] == [2, 2, 2]


def test_state_dict_round_trip():
    sr = _tiny()
    buffer = io.BytesIO()
    torch.save(persistence.module_to_dict(sr), buffer)
    buffer.seek(0)
    clone = persistence.module_from_dict(torch.load(buffer, weights_only=True))
    assert isinstance(clone, SuperResolution)
    inputs = _inputs(12, batch=2)
    torch.testing.assert_close(clone(*inputs), sr(*inputs), rtol=0, atol=0)
