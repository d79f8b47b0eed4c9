"""modulated_conv2d (training/networks/modulated_conv.py) against per-sample plain convolutions."""
import pytest
import torch
import torch.nn.functional as F

from torch_utils.ops import conv2d_resample, upfirdn2d
from training.networks.modulated_conv import _prenormalize_fp16, demodulation_coefficients, modulated_conv2d


def _inputs(batch=3, in_channels=5, out_channels=4, kernel=3, size=8, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, size, size, generator=gen, dtype=torch.float64)
    weight = torch.randn(out_channels, in_channels, kernel, kernel, generator=gen, dtype=torch.float64)
    styles = torch.randn(batch, in_channels, generator=gen, dtype=torch.float64) + 1
    return x, weight, styles


def _per_sample_weight(weight, style, demodulate):
    """Eq. 1 and 3 for one sample, written directly."""
    w = weight * style[None, :, None, None]
    if demodulate:
        w = w / torch.sqrt((w ** 2).sum(dim=[1, 2, 3], keepdim=True) + 1e-8)
    return w


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
def test_matches_per_sample_conv2d(fused, demodulate):
    x, weight, styles = _inputs()
    out = modulated_conv2d(x, weight, styles, padding=1, demodulate=demodulate, fused_modconv=fused)
    ref = torch.cat([F.conv2d(x[n:n + 1], _per_sample_weight(weight, styles[n], demodulate), padding=1)
                     for n in range(x.shape[0])])
    torch.testing.assert_close(out, ref)


def test_demodulated_output_has_unit_scale_per_channel():
    """With unit-variance input, demodulation restores unit output std (eq. 2-3)."""
    x, weight, styles = _inputs(batch=2, in_channels=64, out_channels=8, size=32, seed=1)
    out = modulated_conv2d(x, weight, styles * 10, padding=1)
    assert out[:, :, 1:-1, 1:-1].std().item() == pytest.approx(1.0, rel=0.1)


@pytest.mark.parametrize('up', [1, 2])
def test_upsampling_matches_per_sample_resample(up):
    x, weight, styles = _inputs(seed=2)
    f = upfirdn2d.setup_filter([1, 3, 3, 1]).double()
    out = modulated_conv2d(x, weight, styles, up=up, padding=1, resample_filter=f, flip_weight=(up == 1))
    ref = torch.cat([conv2d_resample.conv2d_resample(x[n:n + 1], _per_sample_weight(weight, styles[n], True), f=f,
                                                     up=up, padding=1, flip_weight=(up == 1))
                     for n in range(x.shape[0])])
    assert out.shape == (3, 4, 8 * up, 8 * up)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize('up', [1, 2])
@pytest.mark.parametrize('demodulate', [True, False])
def test_fused_equals_non_fused(up, demodulate):
    x, weight, styles = _inputs(seed=3)
    x, weight, styles = x.float(), weight.float(), styles.float()
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    noise = torch.randn(3, 1, 8 * up, 8 * up)
    kwargs = dict(noise=noise, up=up, padding=1, resample_filter=f, demodulate=demodulate, flip_weight=(up == 1))
    fused = modulated_conv2d(x, weight, styles, fused_modconv=True, **kwargs)
    plain = modulated_conv2d(x, weight, styles, fused_modconv=False, **kwargs)
    torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-5)


def test_noise_is_added_after_demodulation():
    x, weight, styles = _inputs(seed=4)
    noise = torch.randn(3, 1, 8, 8, dtype=torch.float64)
    without = modulated_conv2d(x, weight, styles, padding=1)
    torch.testing.assert_close(modulated_conv2d(x, weight, styles, noise=noise, padding=1), without + noise)


def test_fp16_prenormalisation_leaves_demodulated_result_unchanged():
    x, weight, styles = _inputs(seed=5)
    weight2, styles2 = _prenormalize_fp16(weight * 100, styles * 30)
    torch.testing.assert_close(modulated_conv2d(x, weight2, styles2, padding=1),
                               modulated_conv2d(x, weight, styles, padding=1))


def test_bad_shapes_raise():
    x, weight, styles = _inputs()
    with pytest.raises(ValueError, match='styles'):
        modulated_conv2d(x, weight, styles[:, :4])
    with pytest.raises(ValueError, match='weight'):
        modulated_conv2d(x, weight[:, :4], styles)


@pytest.mark.parametrize('fused', [True, False])
@pytest.mark.parametrize('demodulate', [True, False])
def test_gain_and_offset_are_applied_after_demodulation(fused, demodulate):
    """out = demod(conv) * gain + noise, for a per-channel offset as the synthesis layer passes it."""
    x, weight, styles = _inputs(seed=6)
    offset = torch.randn(1, 4, 8, 8, dtype=torch.float64)
    out = modulated_conv2d(x, weight, styles, noise=offset, padding=1, demodulate=demodulate,
                           fused_modconv=fused, gain=1.7)
    ref = torch.cat([F.conv2d(x[n:n + 1], _per_sample_weight(weight, styles[n], demodulate), padding=1)
                     for n in range(x.shape[0])])
    torch.testing.assert_close(out, ref * 1.7 + offset)


def test_demodulation_coefficients_match_the_per_sample_weight_norms():
    _, weight, styles = _inputs(seed=7)
    expected = torch.stack([1 / (weight * s[None, :, None, None]).square().sum(dim=[1, 2, 3]).add(1e-8).sqrt()
                            for s in styles])
    torch.testing.assert_close(demodulation_coefficients(weight, styles), expected)


def test_upsampling_modulation_written_channels_last_only_without_autograd():
    """Non-fused upsampling in float32: without autograd the modulated input is written channels-last for the
    transposed convolution (same result as the float64 reference); styles that need a gradient get one."""
    x, weight, styles = _inputs(in_channels=16, seed=5)
    f = upfirdn2d.setup_filter([1, 3, 3, 1])
    expected = modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f.double(), flip_weight=False,
                                fused_modconv=False)
    x, weight, styles = x.float(), weight.float(), styles.float()
    with torch.no_grad():
        out = modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                               fused_modconv=False)
    torch.testing.assert_close(out.double(), expected, rtol=1e-5, atol=1e-5)
    styles.requires_grad_()
    out = modulated_conv2d(x, weight, styles, up=2, padding=1, resample_filter=f, flip_weight=False,
                           fused_modconv=False)
    grad, = torch.autograd.grad(out.square().sum(), styles)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
