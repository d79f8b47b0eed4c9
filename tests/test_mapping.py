"""MappingNetwork (training/networks/mapping.py): shapes, w_avg tracking, truncation, input checks."""
import pytest
import torch

from training.networks.mapping import MappingNetwork


def _mapping(**kwargs):
    torch.manual_seed(0)
    args = dict(z_dim=16, c_dim=8, w_dim=32, num_ws=6, num_layers=2)
    args.update(kwargs)
    return MappingNetwork(**args)


def _with_random_w_avg(mapping):
    with torch.no_grad():
        mapping.w_avg.copy_(torch.randn(mapping.w_dim))
    return mapping


@pytest.mark.parametrize('z_dim,c_dim', [(16, 8), (16, 0), (0, 8)])
def test_shapes(z_dim, c_dim):
    mapping = _mapping(z_dim=z_dim, c_dim=c_dim)
    z = torch.randn(3, z_dim) if z_dim else None
    c = torch.randn(3, c_dim) if c_dim else None
    ws = mapping(z, c)
    assert ws.shape == (3, 6, 32)
    torch.testing.assert_close(ws[:, 0], ws[:, -1])


def test_without_num_ws_returns_w():
    mapping = _mapping(num_ws=None, w_avg_beta=None)
    assert mapping(torch.randn(3, 16), torch.randn(3, 8)).shape == (3, 32)
    assert not hasattr(mapping, 'w_avg')


def test_truncation_psi_zero_gives_w_avg():
    mapping = _with_random_w_avg(_mapping())
    ws = mapping(torch.randn(4, 16), torch.randn(4, 8), truncation_psi=0)
    torch.testing.assert_close(ws, mapping.w_avg.expand(4, 6, 32), rtol=0, atol=0)


def test_truncation_half_is_midpoint_and_cutoff_limits_it():
    mapping = _with_random_w_avg(_mapping())
    z, c = torch.randn(4, 16), torch.randn(4, 8)
    ws = mapping(z, c)
    half = mapping(z, c, truncation_psi=0.5)
    torch.testing.assert_close(half, (ws + mapping.w_avg) / 2)
    cut = mapping(z, c, truncation_psi=0.5, truncation_cutoff=2)
    torch.testing.assert_close(cut[:, :2], half[:, :2])
    torch.testing.assert_close(cut[:, 2:], ws[:, 2:], rtol=0, atol=0)


def test_update_emas_moves_toward_batch_mean():
    mapping = _with_random_w_avg(_mapping(w_avg_beta=0.9))
    z, c = torch.randn(5, 16), torch.randn(5, 8)
    before = mapping.w_avg.clone()
    mapping(z, c)
    torch.testing.assert_close(mapping.w_avg, before, rtol=0, atol=0)
    ws = mapping(z, c, update_emas=True)
    expected = before + (1 - 0.9) * (ws[:, 0].mean(dim=0) - before)
    torch.testing.assert_close(mapping.w_avg, expected)


def test_truncation_needs_w_avg():
    mapping = _mapping(w_avg_beta=None)
    with pytest.raises(ValueError, match='truncation_psi'):
        mapping(torch.randn(2, 16), torch.randn(2, 8), truncation_psi=0.7)


@pytest.mark.parametrize('z,c,name', [
    (torch.randn(2, 15), torch.randn(2, 8), 'z'),
    (torch.randn(2, 16, 1), torch.randn(2, 8), 'z'),
    (torch.randn(2, 16), torch.randn(3, 8), 'c'),
    (torch.randn(2, 16), None, 'c'),
    (None, torch.randn(2, 8), 'z'),
])
def test_bad_inputs_raise_value_error_naming_argument(z, c, name):
    with pytest.raises(ValueError, match=rf'^{name}: expected'):
        _mapping()(z, c)


def test_invalid_construction():
    with pytest.raises(ValueError, match='z_dim, c_dim'):
        MappingNetwork(z_dim=0, c_dim=0, w_dim=8, num_ws=2)
