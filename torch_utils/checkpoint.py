"""Network snapshots as data: atomic `torch.save` of {name: module_to_dict(module), extras...}.

A snapshot `network-snapshot-{kimg:06d}.pkl` is a torch.save'd dict holding

* one entry per network ('G', 'D', 'G_ema', 'D_ema'): persistence.module_to_dict output, i.e.
  {'class_name', 'init_args', 'init_kwargs', 'state_dict'};
* plain-data extras (e.g. 'training_set_kwargs', 'pose_predict_kwargs'): None, bool, int, float,
  str, tensors, and lists/tuples/dicts of them (EasyDicts are stored as dicts);
* 'format_version': FORMAT_VERSION.

It loads with torch.load(weights_only=True), so reading one never unpickles arbitrary objects.
Files are written to a temporary sibling and moved into place with os.replace, so a reader sees
either the old file or the complete new one.
"""
import contextlib
import os
import pickle
import re
import tempfile

import torch

from torch_utils import persistence

FORMAT_VERSION = 1
MODULE_KEYS = frozenset(('class_name', 'init_args', 'init_kwargs', 'state_dict'))
EXPECTED = f'a network snapshot of this project (torch_utils/checkpoint.py, format_version {FORMAT_VERSION})'
_PLAIN_SCALARS = (type(None), bool, int, float, str)
ZIP_MAGIC = b'PK\x03\x04'                 # torch.save's zip container
PICKLE_PROTO = b'\x80'                     # first byte of a protocol-2+ pickle
NVIDIA_PICKLE_MARKERS = (b'_reconstruct_persistent_obj', b'torch_utils.persistence')
HEAD_BYTES = 1 << 20                       # bytes inspected to recognise a file


class SnapshotFormatError(ValueError):
    """A file is not a readable network snapshot; the message is one line saying why."""


def _umask():
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path):
    """Yield the path of an empty temporary sibling of `path`; on success it replaces `path`.

    For writers that need a file name. On any exception the temporary is deleted and an
    existing `path` is left untouched. The parent folder must exist. The result gets the usual
    permissions (0666 minus the umask).
    """
    path = os.path.abspath(os.fspath(path))
    fd, tmp_path = tempfile.mkstemp(prefix=f'.{os.path.basename(path)}.', suffix='.tmp', dir=os.path.dirname(path))
    os.close(fd)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, path)
    finally:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)


@contextlib.contextmanager
def atomic_write(path, mode='wb'):
    """Yield a file open for writing that replaces `path` only once complete (see atomic_path)."""
    with atomic_path(path) as tmp_path, open(tmp_path, mode) as file:
        yield file
        file.flush()
        os.fsync(file.fileno())


def _plain(value, where):
    """Copy of an extra as weights_only-loadable data (dict subclasses become dicts); TypeError otherwise."""
    if type(value) in _PLAIN_SCALARS:
        return value
    if isinstance(value, torch.Tensor):
        return value.detach().to('cpu', copy=True)
    if type(value) in (list, tuple):
        return type(value)(_plain(item, f'{where}[{index}]') for index, item in enumerate(value))
    if isinstance(value, dict):
        return {key: _plain(item, f'{where}[{key!r}]') for key, item in value.items()}
    raise TypeError(f'snapshot extra {where} is a {type(value).__qualname__}; extras must be plain data '
                    '(None, bool, int, float, str, tensors, lists, tuples, dicts)')


def snapshot_dict(modules, extras=None):
    """The dict that save_network_snapshot writes: modules as module_to_dict, extras as plain data."""
    data = {}
    for name, module in modules.items():
        data[name] = None if module is None else persistence.module_to_dict(module)
    for name, value in (extras or {}).items():
        if name in data or name == 'format_version':
            raise ValueError(f'snapshot extra {name!r} clashes with a network name or format_version')
        data[name] = _plain(value, repr(name))
    data['format_version'] = FORMAT_VERSION
    return data


def save_network_snapshot(path, modules, extras=None):
    """Atomically write modules ({'G': G, ...}; None entries allowed) and plain extras to `path`."""
    data = snapshot_dict(modules, extras)
    with atomic_write(path) as file:
        torch.save(data, file)


def is_module_entry(value):
    """True for a dict written by persistence.module_to_dict."""
    return isinstance(value, dict) and MODULE_KEYS <= set(value)


def _describe_foreign(head, name):
    """One-line SnapshotFormatError for bytes that are not a PyTorch zip file."""
    if not head:
        return SnapshotFormatError(f'{name}: empty file; expected {EXPECTED}')
    if any(marker in head for marker in NVIDIA_PICKLE_MARKERS):
        return SnapshotFormatError(f'{name}: this looks like an original EG3D/3DPortraitGAN pickle; those embed code '
                                   f'and are not loaded by this project (expected {EXPECTED})')
    if head[:1] == PICKLE_PROTO:
        return SnapshotFormatError(f'{name}: a plain Python pickle, which could run code when loaded and is refused; '
                                   f'expected {EXPECTED}')
    return SnapshotFormatError(f'{name}: not a PyTorch file (unrecognised content); expected {EXPECTED}')


def _refused_global(message):
    """The 'GLOBAL module.name' that torch's weights_only unpickler refused, or None."""
    match = re.search(r'GLOBAL ([\w.]+)', message)
    return match.group(1) if match else None


def read_snapshot_dict(path_or_file):
    """The snapshot dict (modules not yet rebuilt) in a path or an open, seekable binary file.

    Loads with torch.load(weights_only=True): nothing outside torch's safe allow-list is
    unpickled. Raises SnapshotFormatError (one line) for empty, foreign, corrupt or refused
    content and for dicts of another layout or format version.
    """
    if isinstance(path_or_file, (str, os.PathLike)):
        with open(path_or_file, 'rb') as file:
            return _read_open_file(file, file_name(path_or_file))
    return _read_open_file(path_or_file, file_name(path_or_file))


def _read_open_file(file, name):
    """read_snapshot_dict of an open binary file, read from its current position."""
    start = file.tell()
    head = file.read(HEAD_BYTES)
    file.seek(start)
    if not head.startswith(ZIP_MAGIC):
        raise _describe_foreign(head, name)
    try:
        data = torch.load(file, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as err:
        if any(marker in head for marker in NVIDIA_PICKLE_MARKERS):
            raise _describe_foreign(head, name) from None
        refused = _refused_global(str(err)) or 'an object outside the safe allow-list'
        raise SnapshotFormatError(f'{name}: holds Python objects that safe loading refuses ({refused}); '
                                  f'expected {EXPECTED}') from None
    except (RuntimeError, EOFError, OSError) as err:
        reason = ' '.join(str(err).split('.')[0].split()) or type(err).__name__
        raise SnapshotFormatError(f'{name}: a corrupt or truncated PyTorch file ({reason}); '
                                  f'expected {EXPECTED}') from None
    _check_format(data, name)
    return data


def _check_format(data, name):
    """Raise SnapshotFormatError unless `data` is a snapshot dict of a readable format version."""
    if not isinstance(data, dict) or 'format_version' not in data:
        raise SnapshotFormatError(f'{name}: a PyTorch file, but not {EXPECTED}')
    version = data['format_version']
    if version != FORMAT_VERSION:
        raise SnapshotFormatError(f'{name}: snapshot format_version {version!r}; this code reads '
                                  f'format_version {FORMAT_VERSION} (use the matching version of this project)')


def build_modules(data, device=None, name='network file'):
    """Copy of a snapshot dict with every module entry rebuilt (module_from_dict) on `device`."""
    out = {}
    for key, value in data.items():
        if is_module_entry(value):
            try:
                out[key] = persistence.module_from_dict(value, device=device)
            except (ImportError, TypeError, ValueError, KeyError) as err:
                raise SnapshotFormatError(f'{name}: cannot rebuild {key!r}: {err}') from None
        else:
            out[key] = value
    return out


def file_name(path_or_file):
    """A name for messages: the path, or an open file's .name, or 'network file'."""
    if isinstance(path_or_file, (str, os.PathLike)):
        return os.fspath(path_or_file)
    return str(getattr(path_or_file, 'name', 'network file'))


def load_network_snapshot(path_or_file, device=None):
    """Read a snapshot written by save_network_snapshot: {'G': module, ..., extras..., 'format_version'}.

    `path_or_file` is a path or a seekable binary file; modules go to `device` (default the CPU),
    in train mode as constructed. Raises SnapshotFormatError (one line) for anything else.
    """
    return build_modules(read_snapshot_dict(path_or_file), device, file_name(path_or_file))
