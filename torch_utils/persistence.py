"""Checkpoints as data, not code: `@persistent_class` records a module's constructor arguments
so that `module_to_dict` can save {class path, init args, state_dict} and `module_from_dict`
can rebuild the module by name. The dict loads with torch.load(weights_only=True)."""

import copy
import functools

import torch

import dnnlib

_persistent_classes = set()
_PLAIN_SCALARS = (type(None), bool, int, float, str)
_MAX_LISTED_KEYS = 8


def _check_plain(value, where, class_name):
    """Raise TypeError unless value is plain data: None/bool/int/float/str and lists, tuples,
    dicts or EasyDicts of them (exact types: NumPy scalars or namedtuples would not load with
    weights_only=True)."""
    if type(value) in _PLAIN_SCALARS:
        return
    if type(value) in (list, tuple):
        for index, item in enumerate(value):
            _check_plain(item, f'{where}[{index}]', class_name)
        return
    if type(value) in (dict, dnnlib.EasyDict):
        for key, item in value.items():
            if type(key) not in (str, int):
                raise TypeError(f'{class_name}: key {key!r} in {where} is a {type(key).__qualname__}; '
                                'persistent init arguments need str or int dict keys')
            _check_plain(item, f'{where}[{key!r}]', class_name)
        return
    raise TypeError(f'{class_name}: init argument {where} is a {type(value).__qualname__}; persistent classes '
                    'accept only None, bool, int, float, str, list, tuple and dict (e.g. convert with float()/int())')


def persistent_class(cls):
    """Class decorator for torch.nn.Module subclasses: after construction, self.init_args (tuple)
    and self.init_kwargs (dict) hold deep copies of the constructor arguments.

    The class itself is returned (same name, isinstance and plain pickling unchanged); only its
    __init__ is wrapped. Arguments must be plain data (see _check_plain); EasyDicts are allowed.
    A subclass of a persistent class must be decorated too for module_to_dict to accept it.
    """
    if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
        raise TypeError(f'@persistent_class expects a torch.nn.Module subclass, got {cls!r}')
    original_init = cls.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        _check_plain(args, 'args', cls.__qualname__)
        _check_plain(kwargs, 'kwargs', cls.__qualname__)
        init_args, init_kwargs = copy.deepcopy(args), copy.deepcopy(kwargs)
        original_init(self, *args, **kwargs)
        self.init_args = init_args        # set last, so the outermost decorated class wins
        self.init_kwargs = init_kwargs

    cls.__init__ = __init__
    _persistent_classes.add(cls)
    return cls


def is_persistent(obj):
    """True if obj is a class decorated with @persistent_class or an instance of one."""
    return (obj if isinstance(obj, type) else type(obj)) in _persistent_classes


def _class_path(cls):
    """Dotted 'module.QualName' of cls."""
    return f'{cls.__module__}.{cls.__qualname__}'


def _to_plain(value):
    """Copy of value with EasyDicts turned into dicts (tuples/lists/dicts recursed)."""
    if isinstance(value, dict):
        return {key: _to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_plain(item) for item in value)
    return value


def _from_plain(value):
    """Copy of value with dicts turned into EasyDicts, so both access styles keep working."""
    if isinstance(value, dict):
        return dnnlib.EasyDict({key: _from_plain(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return type(value)(_from_plain(item) for item in value)
    return value


def module_to_dict(module):
    """{'class_name': 'pkg.mod.Class', 'init_args': [...], 'init_kwargs': {...},
    'state_dict': {name: CPU tensor copy}} for a module of a @persistent_class class."""
    cls = type(module)
    if not is_persistent(cls):
        raise TypeError(f'{_class_path(cls)} is not decorated with @persistent_class')
    if '<locals>' in cls.__qualname__ or cls.__module__ == '__main__':
        raise TypeError(f'{_class_path(cls)} cannot be rebuilt by name; '
                        'define it at the top level of an importable module')
    return {
        'class_name': _class_path(cls),
        'init_args': list(_to_plain(module.init_args)),
        'init_kwargs': _to_plain(module.init_kwargs),
        'state_dict': {name: tensor.detach().to('cpu', copy=True) for name, tensor in module.state_dict().items()},
    }


def _short_list(names):
    """Comma-separated names, truncated to _MAX_LISTED_KEYS with a '(+N more)' suffix."""
    names = sorted(names)
    text = ', '.join(names[:_MAX_LISTED_KEYS])
    return text + (f' (+{len(names) - _MAX_LISTED_KEYS} more)' if len(names) > _MAX_LISTED_KEYS else '')


def _check_state_dict(module, state_dict, class_name):
    """Raise ValueError (one line) on missing/unexpected keys or shape mismatches."""
    expected = module.state_dict()
    missing = set(expected) - set(state_dict)
    unexpected = set(state_dict) - set(expected)
    if missing or unexpected:
        raise ValueError(f'state_dict does not match {class_name}: missing keys [{_short_list(missing)}]; '
                         f'unexpected keys [{_short_list(unexpected)}]')
    mismatched = [f'{name} {list(state_dict[name].shape)} vs {list(tensor.shape)}'
                  for name, tensor in expected.items() if state_dict[name].shape != tensor.shape]
    if mismatched:
        raise ValueError(f'state_dict does not match {class_name}: '
                         f'shape mismatch (saved vs built) [{_short_list(mismatched)}]')


def module_from_dict(data, device=None):
    """Rebuild a module saved by module_to_dict: construct the named persistent class with the
    saved arguments (dicts come back as EasyDict), load the state_dict strictly, move to device.

    Only @persistent_class subclasses of torch.nn.Module are constructed, so a checkpoint cannot
    call arbitrary functions; importing the class's module does run that module's top level.
    """
    class_name = data['class_name']
    try:
        cls = dnnlib.util.get_obj_by_name(class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ImportError(f'unknown class {class_name!r} in checkpoint: {err}') from None
    if not is_persistent(cls):
        raise TypeError(f'{class_name!r} in checkpoint is not a @persistent_class module class')
    module = cls(*_from_plain(list(data['init_args'])), **_from_plain(dict(data['init_kwargs'])))
    _check_state_dict(module, data['state_dict'], class_name)
    module.load_state_dict(data['state_dict'], strict=True)
    return module.to(device) if device is not None else module
