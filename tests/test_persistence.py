"""Tests for torch_utils.persistence: recorded init arguments, dict round trip through
torch.save/torch.load(weights_only=True), plain pickling, and one-line errors."""

import copy
import io
import pickle

import pytest
import torch

import dnnlib
from torch_utils import persistence


@persistence.persistent_class
class ToyNet(torch.nn.Module):
    """Tiny MLP whose layout depends on plain-data constructor arguments."""

    def __init__(self, in_features, hidden=(4, 3), activation='relu', options=None):
        super().__init__()
        options = options or {}
        sizes = [in_features] + list(hidden)
        self.layers = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = activation
        self.gain = options['gain'] if options else 1.0
        self.register_buffer('offset', torch.zeros(sizes[-1]))
        self.register_buffer('scratch', torch.zeros(2), persistent=False)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
            x = torch.relu(x) if self.activation == 'relu' else torch.tanh(x)
        return x * self.gain + self.offset


@persistence.persistent_class
class AttrNet(ToyNet):
    """Persistent subclass that reads its options by attribute (EasyDict style)."""

    def __init__(self, in_features, opts):
        super().__init__(in_features, hidden=[opts.width], options={'gain': opts.gain})
        self.opts = opts


class UndecoratedChild(ToyNet):
    """Subclass of a persistent class that forgot the decorator."""


class NotPersistent(torch.nn.Module):
    """Plain module."""


def _round_trip(module):
    """module_to_dict -> torch.save -> torch.load(weights_only=True) -> module_from_dict."""
    buffer = io.BytesIO()
    torch.save(persistence.module_to_dict(module), buffer)
    buffer.seek(0)
    return persistence.module_from_dict(torch.load(buffer, weights_only=True))


def test_decorator_records_deep_copied_arguments_and_keeps_the_class():
    options = {'gain': 2.0}
    net = ToyNet(3, [5, 2], activation='tanh', options=options)
    assert type(net) is ToyNet and ToyNet.__name__ == 'ToyNet' and isinstance(net, torch.nn.Module)
    assert net.init_args == (3, [5, 2]) and net.init_kwargs == {'activation': 'tanh', 'options': {'gain': 2.0}}
    options['gain'] = 9.0
    assert net.init_kwargs['options']['gain'] == 2.0
    assert persistence.is_persistent(ToyNet) and persistence.is_persistent(net)
    assert not persistence.is_persistent(UndecoratedChild) and not persistence.is_persistent(NotPersistent())


def test_outermost_decorated_class_records_its_own_arguments():
    net = AttrNet(3, dnnlib.EasyDict(width=6, gain=0.5))
    assert net.init_args == (3, {'width': 6, 'gain': 0.5}) and type(net.init_args[1]) is dnnlib.EasyDict
    assert net.init_kwargs == {}


def test_round_trip_through_weights_only_load_gives_identical_outputs():
    torch.manual_seed(0)
    net = ToyNet(3, (5, 2), activation='tanh', options={'gain': 2.0})
    with torch.no_grad():
        net.offset.copy_(torch.tensor([0.5, -1.0]))
    data = persistence.module_to_dict(net)
    assert data['class_name'] == f'{ToyNet.__module__}.ToyNet'
    assert data['init_args'] == [3, (5, 2)] and set(data['state_dict']) == set(net.state_dict())
    rebuilt = _round_trip(net)
    assert type(rebuilt) is ToyNet and rebuilt is not net
    x = torch.randn(4, 3)
    assert torch.equal(rebuilt(x), net(x))
    assert rebuilt.init_args == net.init_args and rebuilt.init_kwargs == net.init_kwargs


def test_easydict_arguments_survive_the_round_trip():
    torch.manual_seed(1)
    net = AttrNet(2, dnnlib.EasyDict(width=3, gain=1.5))
    data = persistence.module_to_dict(net)
    assert type(data['init_args'][1]) is dict  # plain containers only in the checkpoint
    rebuilt = _round_trip(net)
    assert rebuilt.opts.width == 3
    x = torch.randn(5, 2)
    assert torch.equal(rebuilt(x), net(x))


def test_state_dict_is_a_detached_cpu_copy():
    net = ToyNet(2)
    data = persistence.module_to_dict(net)
    with torch.no_grad():
        net.layers[0].weight.add_(1.0)
    assert not torch.equal(data['state_dict']['layers.0.weight'], net.layers[0].weight)
    assert all(t.device.type == 'cpu' and not t.requires_grad for t in data['state_dict'].values())


def test_module_from_dict_moves_to_device():
    rebuilt = persistence.module_from_dict(persistence.module_to_dict(ToyNet(2)), device='cpu')
    assert rebuilt.offset.device.type == 'cpu'


def test_plain_pickle_and_deepcopy_still_work():
    torch.manual_seed(2)
    net = ToyNet(3)
    x = torch.randn(2, 3)
    for clone in (pickle.loads(pickle.dumps(net)), copy.deepcopy(net)):
        assert type(clone) is ToyNet and clone.init_args == (3,)
        assert torch.equal(clone(x), net(x))


def test_non_plain_arguments_are_rejected_at_construction():
    with pytest.raises(TypeError, match=r"ToyNet: init argument kwargs\['options'\]\['gain'\] is a Tensor"):
        ToyNet(3, options={'gain': torch.tensor(2.0)})
    with pytest.raises(TypeError, match=r'ToyNet: init argument args\[1\]\[0\] is a float64'):
        ToyNet(3, [__import__('numpy').float64(4.0)])


def test_module_to_dict_rejects_undecorated_classes():
    with pytest.raises(TypeError, match='UndecoratedChild is not decorated'):
        persistence.module_to_dict(UndecoratedChild(2))
    with pytest.raises(TypeError, match='NotPersistent is not decorated'):
        persistence.module_to_dict(NotPersistent())

    @persistence.persistent_class
    class Local(torch.nn.Module):
        pass

    with pytest.raises(TypeError, match='define it at the top level'):
        persistence.module_to_dict(Local())
    with pytest.raises(TypeError, match='expects a torch.nn.Module subclass'):
        persistence.persistent_class(dict)


def test_unknown_or_unsafe_class_names_fail_in_one_line():
    data = persistence.module_to_dict(ToyNet(2))
    for class_name, error in (('no_such_package_xyz.Net', ImportError), (f'{ToyNet.__module__}.Missing', ImportError),
                              ('os.system', TypeError), ('torch.nn.Linear', TypeError)):
        with pytest.raises(error) as info:
            persistence.module_from_dict(dict(data, class_name=class_name))
        assert class_name in str(info.value) and '\n' not in str(info.value)


def test_state_dict_mismatch_lists_keys_in_one_line():
    data = persistence.module_to_dict(ToyNet(2, hidden=[3] * 12))
    state = dict(data['state_dict'])
    del state['offset']
    state['extra.weight'] = torch.zeros(1)
    with pytest.raises(ValueError) as info:
        persistence.module_from_dict(dict(data, state_dict=state))
    message = str(info.value)
    assert '\n' not in message and 'missing keys [offset]' in message and 'unexpected keys [extra.weight]' in message
    many_missing = {name: t for name, t in data['state_dict'].items() if not name.startswith('layers.')}
    with pytest.raises(ValueError, match=r'missing keys \[layers\.0\.bias, .* \(\+16 more\)\]; unexpected keys \[\]'):
        persistence.module_from_dict(dict(data, state_dict=many_missing))
    wrong_shape = dict(data['state_dict'], offset=torch.zeros(5))
    with pytest.raises(ValueError, match=r'shape mismatch \(saved vs built\) \[offset \[5\] vs \[3\]\]'):
        persistence.module_from_dict(dict(data, state_dict=wrong_shape))
