"""Pose-aware dual discriminator (training/networks/dual_discriminator.py, system.md §5, §4.2, §2.6)."""
import io
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from torch_utils import persistence
from training.cameras import camera_vector, mirror_camera, mirror_pose
from training.networks.dual_discriminator import DualDiscriminator, gaussian_blur, gaussian_kernel
from training.networks.symmetry import flip_images

R = 16
SMALL = dict(channel_base=256, channel_max=32, pose_hidden_features=(32, 16), mapping_kwargs=dict(num_layers=2))


def _D(seed=0, **kwargs):
    torch.manual_seed(seed)
    return DualDiscriminator(R, **{**SMALL, **kwargs})


def _cameras(n, seed=0):
    """n cameras [n, 25] all around the portrait sphere, both sides, |t_x| >= 0.01."""
    gen = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(4 * n, generator=gen) * 2 - 1) * math.pi
    c = camera_vector(yaw, math.pi / 2 + (torch.rand(4 * n, generator=gen) - 0.5))
    c = c[c[:, 3].abs() >= 1e-2][:n]
    assert (c[:, 3] > 0).any() and (c[:, 3] < 0).any()
    return c


def _images(n=4, raw=8, mask=8, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return dict(image=torch.randn(n, 3, R, R, generator=gen), image_raw=torch.randn(n, 3, raw, raw, generator=gen),
                image_mask=torch.rand(n, 1, mask, mask, generator=gen))


def _mirror(img):
    return {key: flip_images(value) for key, value in img.items()}


def _bilinear_matrix(src, dst):
    """[dst, src] half-pixel bilinear interpolation (align_corners=False, edge clamp), built by hand."""
    A = np.zeros((dst, src))
    for i in range(dst):
        s = max((i + 0.5) * src / dst - 0.5, 0.0)
        i0 = min(int(np.floor(s)), src - 1)
        i1 = min(i0 + 1, src - 1)
        A[i, i0] += 1 - (s - i0)
        A[i, i1] += s - i0
    return A


@pytest.mark.parametrize('raw,mask', [(8, 8), (4, 16), (16, 8)])
def test_forward_shapes(raw, mask):
    D = _D()
    out = D(_images(raw=raw, mask=mask), _cameras(4))
    assert set(out) == {'logits', 'pose'}
    assert out['logits'].shape == (4, 1) and out['pose'].shape == (4, 6)
    assert D.backbone.img_channels == 7 and D.backbone.c_dim == 31 and D.pose_predictor.feature_dim == 32 * 16


def test_paper_configuration():
    D = DualDiscriminator(512, mapping_kwargs=None)
    assert D.backbone.cmap_dim == 512 and D.backbone.mapping.num_layers == 8
    assert D.backbone.mapping.fc0.weight_gain == pytest.approx(0.01 / math.sqrt(512))
    assert D.pose_predictor.feature_dim == 8192
    assert D.backbone.b512.fromrgb.in_channels == 7


def test_input_matches_independent_computation():
    D = _D()
    img = _images(raw=8, mask=4)
    x = D.build_input(img).numpy()
    raw, mask = img['image_raw'].numpy(), img['image_mask'].numpy()
    A8, A4 = _bilinear_matrix(8, R), _bilinear_matrix(4, R)
    np.testing.assert_array_equal(x[:, :3], img['image'].numpy())
    np.testing.assert_allclose(x[:, 3:6], A8 @ raw @ A8.T, atol=1e-5)
    np.testing.assert_allclose(x[:, 6:], 2 * (A4 @ mask @ A4.T) - 1, atol=1e-5)
    full = D.build_input(dict(img, image_raw=img['image'], image_mask=torch.ones(4, 1, R, R)))
    assert torch.equal(full[:, 3:6], img['image']) and torch.equal(full[:, 6:], torch.ones(4, 1, R, R))


def test_blur_sigma_zero_is_identity():
    x = torch.randn(2, 3, 8, 8)
    assert gaussian_blur(x, 0) is x
    D, img = _D(), _images()
    assert torch.equal(D.build_input(img, blur_sigma=0), D.build_input(img))
    with pytest.raises(ValueError, match='blur_sigma'):
        gaussian_blur(x, -1)


def test_blur_matches_scipy_and_keeps_constants_away_from_borders():
    sigma = 1.5                                               # radius ceil(4.5) = 5
    assert gaussian_kernel(sigma).shape == (11,) and float(gaussian_kernel(sigma).sum()) == pytest.approx(1)
    x = torch.randn(2, 3, 20, 20, dtype=torch.float32)
    expected = scipy.ndimage.gaussian_filter(x.double().numpy(), sigma=(0, 0, sigma, sigma), mode='constant',
                                             truncate=3.0)
    np.testing.assert_allclose(gaussian_blur(x, sigma).numpy(), expected, atol=1e-5)
    const = gaussian_blur(torch.full((1, 1, 24, 24), 0.7), 2.0)          # radius 6
    torch.testing.assert_close(const[..., 6:-6, 6:-6], torch.full((1, 1, 12, 12), 0.7), rtol=0, atol=1e-6)
    assert const[0, 0, 0, 0] < 0.7                                       # zero padding at the border


def test_blur_touches_image_and_raw_but_not_mask():
    D, img = _D(), _images()
    sharp, blurred = D.build_input(img), D.build_input(img, blur_sigma=1.0)
    torch.testing.assert_close(blurred[:, :6], gaussian_blur(sharp[:, :6], 1.0), rtol=0, atol=0)
    assert torch.equal(blurred[:, 6:], sharp[:, 6:])


def test_predict_pose_is_mirror_equivariant():
    D = _D()
    img, c = _images(n=8), _cameras(8, seed=2)
    pose = D.predict_pose(img, c)
    torch.testing.assert_close(D.predict_pose(_mirror(img), mirror_camera(c)), mirror_pose(pose), rtol=0, atol=1e-5)
    torch.testing.assert_close(D(img, c)['pose'], pose, rtol=0, atol=0)


def test_folded_logits_are_mirror_invariant():
    D = _D(fold_logits=True)
    img, c = _images(n=8), _cameras(8, seed=2)
    torch.testing.assert_close(D(_mirror(img), mirror_camera(c))['logits'], D(img, c)['logits'],
                               rtol=0, atol=1e-5)


def _count_backbone_passes(D, img, c):
    calls = []
    handle = D.backbone.b16.register_forward_pre_hook(lambda *args: calls.append(1))
    out = D(img, c)
    handle.remove()
    return len(calls), out


def test_backbone_runs_once_when_folding_and_twice_like_the_original():
    img, c = _images(), _cameras(4)
    folded, unfolded = _D(fold_logits=True), _D()
    unfolded.load_state_dict(folded.state_dict())
    passes, out = _count_backbone_passes(folded, img, c)
    assert passes == 1
    passes, out_unfolded = _count_backbone_passes(unfolded, img, c)
    assert passes == 2
    torch.testing.assert_close(out_unfolded['pose'], out['pose'], rtol=0, atol=0)
    features = unfolded._features(unfolded.build_input(img))      # the original's second, unfolded pass
    cmap = unfolded.backbone.conditioning(torch.cat([c, out['pose']], dim=1))
    torch.testing.assert_close(out_unfolded['logits'], unfolded.backbone.b4.head(features, cmap),
                               rtol=0, atol=1e-5)
    right = c[:, 3] < 0
    c_right, img_right = c[right], {key: value[right] for key, value in img.items()}
    passes, out_right = _count_backbone_passes(unfolded, img_right, c_right)
    assert passes == 1
    torch.testing.assert_close(out_right['logits'], folded(img_right, c_right)['logits'], rtol=0, atol=0)


@pytest.mark.parametrize('fold_logits', [True, False])
def test_gradients_reach_every_parameter(fold_logits):
    D = _D(fold_logits=fold_logits)
    img = {key: value.requires_grad_(True) for key, value in _images().items()}
    out = D(img, _cameras(4))
    loss = torch.nn.functional.softplus(out['logits']).sum() + out['pose'].square().sum()
    loss.backward()
    for name, p in D.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert all(value.grad is not None for value in img.values())          # R1 needs all three inputs


@pytest.mark.parametrize('fold_logits', [True, False])
def test_pose_in_the_conditioning_is_detached(fold_logits):
    D = _D(fold_logits=fold_logits)
    out = D(_images(), _cameras(4))
    grads = torch.autograd.grad(out['logits'].sum(), list(D.pose_predictor.parameters()), allow_unused=True,
                                retain_graph=True)
    assert all(g is None or not g.any() for g in grads)
    grads = torch.autograd.grad(out['logits'].sum(), list(D.backbone.mapping.parameters()), allow_unused=True)
    assert all(g is not None and g.any() for g in grads)


def test_disc_c_noise_only_in_training_and_never_on_the_pose():
    D = _D(disc_c_noise=1.0)
    img, c = _images(), _cameras(4)
    a, b = D(img, c), D(img, c)
    assert not torch.equal(a['logits'], b['logits']) and torch.equal(a['pose'], b['pose'])
    D.eval()
    assert torch.equal(D(img, c)['logits'], D(img, c)['logits'])
    with pytest.raises(ValueError, match='disc_c_noise'):
        _D(disc_c_noise=-1.0)


def test_state_dict_round_trip():
    D = _D(disc_c_noise=0.5, fold_logits=True)
    buffer = io.BytesIO()
    torch.save(persistence.module_to_dict(D), buffer)
    buffer.seek(0)
    clone = persistence.module_from_dict(torch.load(buffer, weights_only=True)).eval()
    D.eval()
    img, c = _images(), _cameras(4)
    assert clone.fold_logits is True and clone.disc_c_noise == 0.5
    for key in ('logits', 'pose'):
        torch.testing.assert_close(clone(img, c)[key], D(img, c)[key], rtol=0, atol=0)


@pytest.mark.parametrize('change,pattern', [
    (lambda img, c: (dict(image=img['image'], image_mask=img['image_mask']), c), "img: missing key 'image_raw'"),
    (lambda img, c: (list(img.values()), c), 'img: expected a dict'),
    (lambda img, c: (dict(img, image=torch.zeros(4, 3, 8, 8)), c), r"img\['image'\]: expected shape \[N, 3, 16, 16\]"),
    (lambda img, c: (dict(img, image_raw=torch.zeros(4, 4, 8, 8)), c), r"img\['image_raw'\]: expected shape"),
    (lambda img, c: (dict(img, image_raw=torch.zeros(4, 3, 8, 4)), c), r"img\['image_raw'\]: expected a square"),
    (lambda img, c: (dict(img, image_mask=torch.zeros(4, 3, 8, 8)), c), r"img\['image_mask'\]: expected shape"),
    (lambda img, c: (dict(img, image_mask=torch.zeros(2, 1, 8, 8)), c), r"img\['image_mask'\]: expected shape \[4,"),
    (lambda img, c: (img, torch.zeros(4, 31)), r'c: expected shape \[4, 25\]'),
    (lambda img, c: (img, c[:2]), r'c: expected shape \[4, 25\]'),
])
def test_bad_inputs_raise_value_error_naming_argument(change, pattern):
    D = _D()
    img, c = change(_images(), _cameras(4))
    with pytest.raises(ValueError, match=pattern):
        D(img, c)
