"""Discriminator parts (training/networks/discriminator_blocks.py)."""
import numpy as np
import pytest
import torch

from training.networks.discriminator_blocks import DiscriminatorBlock, DiscriminatorEpilogue, MinibatchStdLayer


def _mbstd_numpy(x, group_size, num_channels):
    """Direct loop: sample n is in group n % (N / G); stddev over the group, mean over chunk and pixels."""
    n, c, h, w = x.shape
    num_groups = n // group_size
    out = np.zeros((n, num_channels, h, w))
    for m in range(num_groups):
        members = [m + k * num_groups for k in range(group_size)]
        for f in range(num_channels):
            chunk = x[members, f * (c // num_channels):(f + 1) * (c // num_channels)]
            std = np.sqrt(((chunk - chunk.mean(axis=0)) ** 2).mean(axis=0) + 1e-8)
            out[members, f] = std.mean()
    return np.concatenate([x, out], axis=1)


@pytest.mark.parametrize('group_size,num_channels', [(4, 1), (2, 2), (None, 1)])
def test_minibatch_std_matches_numpy(group_size, num_channels):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6, 3, 3))
    out = MinibatchStdLayer(group_size, num_channels)(torch.from_numpy(x))
    np.testing.assert_allclose(out.numpy(), _mbstd_numpy(x, group_size or 8, num_channels), rtol=1e-10)


def test_minibatch_std_small_batch_uses_whole_batch():
    x = torch.randn(2, 4, 2, 2, dtype=torch.float64)
    out = MinibatchStdLayer(4)(x)
    np.testing.assert_allclose(out.numpy(), _mbstd_numpy(x.numpy(), 2, 1), rtol=1e-10)


def test_minibatch_std_indivisible_batch_raises():
    with pytest.raises(ValueError, match='group size'):
        MinibatchStdLayer(4)(torch.randn(6, 4, 2, 2))


@pytest.mark.parametrize('architecture', ['orig', 'skip', 'resnet'])
def test_block_shapes(architecture):
    torch.manual_seed(0)
    first = DiscriminatorBlock(0, 8, 16, resolution=16, img_channels=3, architecture=architecture)
    second = DiscriminatorBlock(16, 16, 32, resolution=8, img_channels=3, architecture=architecture,
                                first_layer_idx=first.num_layers)
    x, img = first(None, torch.randn(2, 3, 16, 16))
    assert x.shape == (2, 16, 8, 8)
    assert (img is not None) == (architecture == 'skip')
    x, img = second(x, img)
    assert x.shape == (2, 32, 4, 4)
    if architecture == 'skip':
        assert img.shape == (2, 3, 4, 4)


def test_block_layer_count_and_freezing():
    block = DiscriminatorBlock(0, 8, 16, resolution=16, img_channels=3, freeze_layers=2)
    assert block.num_layers == 4  # fromrgb, conv0, conv1, skip
    trainable = {name.split('.')[0] for name, _ in block.named_parameters()}
    assert trainable == {'conv1', 'skip'}


def test_epilogue_features_and_projection_formula():
    torch.manual_seed(1)
    epilogue = DiscriminatorEpilogue(16, cmap_dim=12, resolution=4, img_channels=3)
    x, cmap = torch.randn(4, 16, 4, 4), torch.randn(4, 12)
    features = epilogue.features(x)
    assert features.shape == (4, epilogue.feature_dim) == (4, 16 * 4 * 4)
    out = epilogue.out(epilogue.fc(features))
    expected = (out * cmap).sum(dim=1, keepdim=True) / np.sqrt(12)
    torch.testing.assert_close(epilogue(x, None, cmap), expected)


def test_epilogue_unconditional_and_skip():
    torch.manual_seed(2)
    epilogue = DiscriminatorEpilogue(8, cmap_dim=0, resolution=4, img_channels=3, architecture='skip',
                                     mbstd_num_channels=0)
    logits = epilogue(torch.randn(3, 8, 4, 4), torch.randn(3, 3, 4, 4), None)
    assert logits.shape == (3, 1)
    with pytest.raises(ValueError, match=r'^img: expected'):
        epilogue(torch.randn(3, 8, 4, 4), None, None)
