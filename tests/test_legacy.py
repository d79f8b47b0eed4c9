"""legacy.load_network_pkl: our snapshots load as EG3D users expect; pickles that carry code are refused."""
import io
import os
import pickle

import pytest
import torch

import legacy
from torch_utils import checkpoint, persistence
from training.networks.dual_discriminator import DualDiscriminator
from training.networks.mapping import MappingNetwork
from training.networks.stylegan2 import Generator

Z_DIM, C_DIM, W_DIM = 8, 31, 16
SMALL_D = dict(channel_base=256, channel_max=16, pose_hidden_features=(16,), mapping_kwargs=dict(num_layers=2),
               num_fp16_res=0, conv_clamp=None)


def _snapshot(path, seed=0):
    """Write a snapshot with G, D, G_ema, D_ema and extras; returns the networks."""
    torch.manual_seed(seed)
    G = Generator(Z_DIM, C_DIM, W_DIM, 8, 3, channel_base=256, channel_max=16, mapping_kwargs=dict(num_layers=2))
    D = DualDiscriminator(8, **SMALL_D)
    checkpoint.save_network_snapshot(path, {'G': G, 'D': D, 'G_ema': G, 'D_ema': D},
                                     {'training_set_kwargs': {'resolution': 8},
                                      'pose_predict_kwargs': {'blur_sigma': 0.0, 'neural_rendering_resolution': 8}})
    return G, D


def _outputs(G):
    gen = torch.Generator().manual_seed(3)
    z, c = torch.randn(2, Z_DIM, generator=gen), torch.randn(2, C_DIM, generator=gen)
    with torch.no_grad():
        return G(z, c, noise_mode='const')


def test_load_from_open_file_as_eg3d_users_do(tmp_path):
    path = tmp_path / 'network-snapshot-000004.pkl'
    G, D = _snapshot(path)
    with open(path, 'rb') as f:
        data = legacy.load_network_pkl(f)
    assert {'G', 'D', 'G_ema', 'D_ema', 'training_set_kwargs', 'pose_predict_kwargs'} <= set(data)
    for key in ('G', 'D', 'G_ema', 'D_ema'):
        module = data[key]
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())
        assert all(p.device.type == 'cpu' for p in module.parameters())
    assert torch.equal(_outputs(data['G_ema']), _outputs(G.eval()))
    assert data['pose_predict_kwargs'] == {'blur_sigma': 0.0, 'neural_rendering_resolution': 8}


def test_load_from_path_and_file_offset(tmp_path):
    path = tmp_path / 'snap.pkl'
    G, _ = _snapshot(path)
    assert torch.equal(_outputs(legacy.load_network_pkl(str(path))['G']), _outputs(G.eval()))
    buffer = io.BytesIO(b'header' + path.read_bytes())
    buffer.seek(6)
    assert torch.equal(_outputs(legacy.load_network_pkl(buffer)['G']), _outputs(G.eval()))


def test_force_fp16_rebuilds_with_eg3d_settings(tmp_path):
    path = tmp_path / 'snap.pkl'
    _snapshot(path)
    data = legacy.load_network_pkl(path, force_fp16=True)
    assert data['D'].init_kwargs['num_fp16_res'] == 4 and data['D'].init_kwargs['conv_clamp'] == 256
    only_mapping = tmp_path / 'mapping.pkl'
    checkpoint.save_network_snapshot(only_mapping, {'G': MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=2)})
    with pytest.raises(checkpoint.SnapshotFormatError, match='force_fp16 needs networks with a num_fp16_res'):
        legacy.load_network_pkl(only_mapping, force_fp16=True)


def _error(data, tmp_path):
    """The one-line message of loading `data` bytes through a file object."""
    path = tmp_path / 'network.pkl'
    path.write_bytes(data)
    with open(path, 'rb') as f, pytest.raises(checkpoint.SnapshotFormatError) as info:
        legacy.load_network_pkl(f)
    message = str(info.value)
    assert '\n' not in message and str(path) in message and 'expected' in message
    return message


def test_garbage_file(tmp_path):
    assert 'not a PyTorch file' in _error(b'\x00\x01 not a network \xff' * 200, tmp_path)


def _nvidia_reconstruct(meta):
    """Stand-in for NVIDIA's torch_utils.persistence._reconstruct_persistent_obj; records calls."""
    _nvidia_reconstruct.calls.append(meta)


_nvidia_reconstruct.calls = []


class _PersistentObject:
    """Pickles like an NVIDIA persistent object: a call of _reconstruct_persistent_obj with embedded source."""

    def __reduce__(self):
        meta = dict(type='class', version=4, module_src='import os\nos.system("echo pwned")\n',
                    class_name='networks.TriPlaneGenerator', state={})
        return _nvidia_reconstruct, (meta,)


@pytest.fixture
def nvidia_pickle_bytes(monkeypatch):
    """Bytes of an EG3D-style snapshot pickle {'G': <persistent object>, ...} (as pickle.dump writes it)."""
    monkeypatch.setattr(_nvidia_reconstruct, '__module__', 'torch_utils.persistence')
    monkeypatch.setattr(_nvidia_reconstruct, '__qualname__', '_reconstruct_persistent_obj')
    monkeypatch.setattr(persistence, '_reconstruct_persistent_obj', _nvidia_reconstruct, raising=False)
    return pickle.dumps({'G': _PersistentObject(), 'G_ema': _PersistentObject(), 'training_set_kwargs': {}})


def test_original_eg3d_pickle_is_recognised_and_not_run(tmp_path, nvidia_pickle_bytes):
    message = _error(nvidia_pickle_bytes, tmp_path)
    assert 'this looks like an original EG3D/3DPortraitGAN pickle; those embed code and are not loaded' in message
    buffer = io.BytesIO()
    torch.save({'G': _PersistentObject()}, buffer)
    assert 'original EG3D/3DPortraitGAN pickle' in _error(buffer.getvalue(), tmp_path)
    assert _nvidia_reconstruct.calls == []


class _Evil:
    """A pickle payload that creates a file when unpickled."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return os.mkdir, (self.target,)


@pytest.mark.parametrize('container', ['pickle', 'torch.save'])
def test_arbitrary_code_pickle_is_refused(tmp_path, container):
    target = str(tmp_path / 'pwned')
    payload = {'G': _Evil(target), 'format_version': 1}
    if container == 'pickle':
        data = pickle.dumps(payload)
    else:
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        data = buffer.getvalue()
    message = _error(data, tmp_path)
    assert ('plain Python pickle' in message) if container == 'pickle' else ('safe loading refuses' in message)
    assert not os.path.exists(target)
