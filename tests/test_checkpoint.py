"""Network snapshots (torch_utils/checkpoint.py): round trip, weights_only loading, atomic writes, errors."""
import os
import stat

import pytest
import torch

import dnnlib
from torch_utils import checkpoint, persistence
from training.networks.stylegan2 import Discriminator, Generator

Z_DIM, C_DIM, W_DIM = 8, 4, 16
SMALL = dict(channel_base=256, channel_max=16, mapping_kwargs=dict(num_layers=2))


def _networks(seed=0):
    """A small StyleGAN2 G, D pair with non-trivial buffers."""
    torch.manual_seed(seed)
    G = Generator(Z_DIM, C_DIM, W_DIM, 8, 3, **SMALL)
    D = Discriminator(C_DIM, 8, 3, **SMALL)
    G.mapping.w_avg.normal_()
    return G, D


def _inputs():
    gen = torch.Generator().manual_seed(1)
    return torch.randn(2, Z_DIM, generator=gen), torch.randn(2, C_DIM, generator=gen)


def _g_out(G):
    z, c = _inputs()
    with torch.no_grad():
        return G(z, c, truncation_psi=0.7, noise_mode='const')


def test_round_trip_gives_identical_outputs_and_extras(tmp_path):
    G, D = _networks()
    path = tmp_path / 'network-snapshot-000000.pkl'
    extras = {'training_set_kwargs': dnnlib.EasyDict(path='data.zip', resolution=8, xflip=True),
              'pose_predict_kwargs': dict(blur_sigma=0.0, neural_rendering_resolution=64),
              'mean': torch.arange(3.0), 'cfg': ('a', [1, 2.5, None])}
    checkpoint.save_network_snapshot(path, {'G': G, 'D': D, 'G_ema': G, 'D_ema': None}, extras)
    data = checkpoint.load_network_snapshot(str(path))
    assert isinstance(data['G'], Generator) and isinstance(data['D'], Discriminator)
    assert data['D_ema'] is None and data['format_version'] == checkpoint.FORMAT_VERSION
    assert torch.equal(_g_out(data['G']), _g_out(G))
    assert torch.equal(_g_out(data['G_ema']), _g_out(G))
    for name, tensor in D.state_dict().items():
        assert torch.equal(data['D'].state_dict()[name], tensor)
    assert data['training_set_kwargs'] == {'path': 'data.zip', 'resolution': 8, 'xflip': True}
    assert data['pose_predict_kwargs'] == extras['pose_predict_kwargs']
    assert torch.equal(data['mean'], torch.arange(3.0)) and data['cfg'] == ('a', [1, 2.5, None])


def test_file_loads_with_weights_only(tmp_path):
    G, D = _networks()
    path = tmp_path / 'snap.pkl'
    checkpoint.save_network_snapshot(path, {'G': G, 'D': D}, {'training_set_kwargs': {'resolution': 8}})
    raw = torch.load(path, weights_only=True)
    assert raw['format_version'] == 1
    assert raw['G']['class_name'] == 'training.networks.stylegan2.Generator'
    assert set(raw['G']) == set(checkpoint.MODULE_KEYS)
    assert isinstance(persistence.module_from_dict(raw['D']), Discriminator)


def test_load_from_open_file(tmp_path):
    G, _ = _networks()
    path = tmp_path / 'snap.pkl'
    checkpoint.save_network_snapshot(path, {'G_ema': G})
    with open(path, 'rb') as f:
        data = checkpoint.load_network_snapshot(f)
    assert torch.equal(_g_out(data['G_ema']), _g_out(G))


def test_failed_write_leaves_old_file_intact(tmp_path, monkeypatch):
    G, D = _networks()
    path = tmp_path / 'snap.pkl'
    checkpoint.save_network_snapshot(path, {'G': G})
    before = path.read_bytes()

    def broken_save(obj, f, *args, **kwargs):
        f.write(b'PK\x03\x04 half a snapshot')
        raise OSError('disk full')

    monkeypatch.setattr(torch, 'save', broken_save)
    with pytest.raises(OSError, match='disk full'):
        checkpoint.save_network_snapshot(path, {'G': G, 'D': D})
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ['snap.pkl']


def test_failed_first_write_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(torch, 'save', lambda *args, **kwargs: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_network_snapshot(tmp_path / 'snap.pkl', {'G': _networks()[0]})
    assert os.listdir(tmp_path) == []


def test_written_file_has_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        checkpoint.save_network_snapshot(tmp_path / 'snap.pkl', {'G': _networks()[0]})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'snap.pkl').st_mode) == 0o640


def test_non_plain_extra_is_refused_before_writing(tmp_path):
    with pytest.raises(TypeError, match=r"extra 'opts'\['fn'\] is a function"):
        checkpoint.save_network_snapshot(tmp_path / 'snap.pkl', {'G': _networks()[0]}, {'opts': {'fn': _inputs}})
    with pytest.raises(ValueError, match="clashes"):
        checkpoint.save_network_snapshot(tmp_path / 'snap.pkl', {'G': _networks()[0]}, {'G': 1})
    assert os.listdir(tmp_path) == []


def _one_line_error(path, match):
    """Assert that loading `path` raises a one-line SnapshotFormatError matching `match`."""
    with pytest.raises(checkpoint.SnapshotFormatError, match=match) as info:
        checkpoint.load_network_snapshot(path)
    assert '\n' not in str(info.value) and str(path) in str(info.value)
    return str(info.value)


def test_wrong_layouts_are_explained(tmp_path):
    G, _ = _networks()
    state = tmp_path / 'state.pt'
    torch.save(G.state_dict(), state)
    _one_line_error(state, 'a PyTorch file, but not a network snapshot of this project')
    newer = tmp_path / 'newer.pkl'
    torch.save({'G': persistence.module_to_dict(G), 'format_version': 2}, newer)
    _one_line_error(newer, 'format_version 2; this code reads format_version 1')


def test_corrupt_and_foreign_files_are_explained(tmp_path):
    path = tmp_path / 'snap.pkl'
    checkpoint.save_network_snapshot(path, {'G': _networks()[0]})
    truncated = tmp_path / 'truncated.pkl'
    truncated.write_bytes(path.read_bytes()[:300])
    _one_line_error(truncated, 'corrupt or truncated PyTorch file')
    empty = tmp_path / 'empty.pkl'
    empty.write_bytes(b'')
    _one_line_error(empty, 'empty file')
    text = tmp_path / 'notes.pkl'
    text.write_text('hello\n' * 10)
    _one_line_error(text, 'not a PyTorch file')


def test_unknown_class_is_explained(tmp_path):
    G, _ = _networks()
    entry = persistence.module_to_dict(G)
    entry['class_name'] = 'training.networks.stylegan2.NoSuchGenerator'
    path = tmp_path / 'snap.pkl'
    torch.save({'G': entry, 'format_version': 1}, path)
    _one_line_error(path, "cannot rebuild 'G': unknown class")
