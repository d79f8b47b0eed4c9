"""Finding, loading and saving SMPL model files without chumpy.

SMPL v1.0.0 pickles are Python-2 pickles (latin1) whose arrays are partly chumpy `Ch` objects;
chumpy does not install on current Python/NumPy. `load_smpl` maps every chumpy class to a stub
that keeps the pickled state and turns it into `np.asarray(state['x'])`, and accepts only the
classes an SMPL pickle contains (NumPy arrays, SciPy sparse matrices, chumpy). `.npz` files
written by `save_smpl_npz` (see scripts/convert_smpl.py) need neither pickle nor chumpy.

Returned arrays (SMPL key layout): v_template [V, 3], f [F, 3], weights [V, 24],
J_regressor [24, V] (dense), kintree_table [2, 24], shapedirs [V, 3, K], posedirs [V, 3, 207],
plus 'stand_in' (str) for the portrait3d procedural body.
"""
import os
import pickle
from typing import Dict, List

import numpy as np

GENDERS = ('neutral', 'male', 'female')
NUM_JOINTS = 24
NUM_POSE_BASIS = 207
SMPL_URL = 'https://smpl.is.tue.mpg.de'
_EXTENSIONS = ('.pkl', '.npz')
# Key -> expected shape; 'V' and 'F' are the file's vertex and face counts, None is any size.
SMPL_SHAPES = {
    'v_template': ('V', 3),
    'f': ('F', 3),
    'weights': ('V', NUM_JOINTS),
    'J_regressor': (NUM_JOINTS, 'V'),
    'kintree_table': (2, NUM_JOINTS),
    'shapedirs': ('V', 3, None),
    'posedirs': ('V', 3, NUM_POSE_BASIS),
}
# Classes an SMPL pickle may name (module prefix -> allowed names); chumpy.* maps to a stub.
_ALLOWED_CLASSES = {
    'numpy': {'ndarray', 'dtype', '_reconstruct', 'scalar', '_frombuffer'},
    'scipy.sparse': {'csc_matrix', 'csr_matrix', 'coo_matrix', 'csc_array', 'csr_array', 'coo_array'},
    'copy_reg': {'_reconstructor'}, 'copyreg': {'_reconstructor'},
    '__builtin__': {'object', 'set', 'frozenset', 'complex', 'slice'},
    'builtins': {'object', 'set', 'frozenset', 'complex', 'slice'},
    '_codecs': {'encode'},
}


def smpl_candidates(path: str, gender: str = 'neutral') -> List[str]:
    """Files tried for `path`: the file itself, or SMPL_<GENDER>.pkl/.npz in path or path/smpl."""
    if gender not in GENDERS:
        raise ValueError(f'SMPL gender must be one of {", ".join(GENDERS)}; got {gender!r}')
    path = os.fspath(path)
    if os.path.splitext(path)[1] in _EXTENSIONS:
        return [path]
    name = f'SMPL_{gender.upper()}'
    return [os.path.join(path, *sub, name + ext) for sub in ((), ('smpl',)) for ext in _EXTENSIONS]


def find_smpl_file(path: str, gender: str = 'neutral') -> str:
    """The first existing file of `smpl_candidates`; FileNotFoundError (one line) if none."""
    candidates = smpl_candidates(path, gender)
    for candidate in candidates:
        if os.path.isfile(candidate):
            return candidate
    raise FileNotFoundError(
        f'SMPL model not found: expected {" or ".join(candidates)}. Get SMPL from {SMPL_URL} (licence '
        'required), or make a stand-in for testing with `python scripts/make_procedural_smpl.py DIR`.')


class _ChumpyStub:
    """Stands in for any chumpy class while unpickling: keeps the pickled state."""

    def __init__(self, *args, **kwargs):
        """Accept any constructor arguments a pickle may pass; the state comes later."""
        self.state = {}

    def __setstate__(self, state):
        """Keep the pickled state (chumpy's: the instance dict, array under 'x')."""
        self.state = state


class _SMPLUnpickler(pickle.Unpickler):
    """Unpickler that maps chumpy classes to `_ChumpyStub` and refuses non-SMPL classes."""

    def find_class(self, module, name):
        """Resolve a pickled global: chumpy -> stub, allowed NumPy/SciPy/builtins -> real."""
        if module == 'chumpy' or module.startswith('chumpy.'):
            return _ChumpyStub
        for prefix, names in _ALLOWED_CLASSES.items():
            if (module == prefix or module.startswith(prefix + '.')) and name in names:
                if prefix == 'scipy.sparse':
                    import scipy.sparse
                    return getattr(scipy.sparse, name)
                return super().find_class(module, name)
        raise pickle.UnpicklingError(f'refusing to load {module}.{name} (an SMPL pickle holds only NumPy, '
                                     'SciPy sparse and chumpy objects)')


def _plain(value, path: str, key: str):
    """A chumpy stub -> its array; anything else unchanged."""
    if isinstance(value, _ChumpyStub):
        state = getattr(value, 'state', None)
        if not isinstance(state, dict) or 'x' not in state:
            raise ValueError(f'{path}: key {key!r} is a chumpy object without an array (no "x" in its state)')
        return np.asarray(state['x'])
    return value


def _read(path: str) -> Dict[str, object]:
    """Raw key -> value mapping of an SMPL .pkl (chumpy-free) or .npz file."""
    if path.endswith('.npz'):
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    with open(path, 'rb') as file:
        data = _SMPLUnpickler(file, encoding='latin1').load()
    if not isinstance(data, dict):
        raise ValueError(f'{path}: expected a dict of SMPL arrays, got a {type(data).__name__}')
    return {key: _plain(value, path, key) for key, value in data.items()}


def _check_shapes(arrays: Dict[str, np.ndarray], path: str):
    """Raise ValueError (one line, naming the file and key) unless the SMPL layout holds."""
    sizes = {'V': len(arrays['v_template']), 'F': len(arrays['f'])}
    for key, spec in SMPL_SHAPES.items():
        shape = arrays[key].shape
        expected = tuple(sizes.get(s, s) for s in spec)
        if len(shape) != len(expected) or any(e is not None and e != s for e, s in zip(expected, shape)):
            pretty = ', '.join('K' if e is None else str(e) for e in expected)
            raise ValueError(f'{path}: key {key!r} has shape {tuple(shape)}, expected ({pretty})')
    if arrays['f'].min() < 0 or arrays['f'].max() >= sizes['V']:
        raise ValueError(f'{path}: key \'f\' indexes vertices outside [0, {sizes["V"]})')


def load_smpl(path: str, gender: str = 'neutral') -> Dict[str, object]:
    """Load an SMPL model (file, or folder as in `smpl_candidates`) as plain arrays.

    Returns the keys of `SMPL_SHAPES` as ndarrays (J_regressor densified) and 'stand_in' (str)
    if the file is the portrait3d procedural body. Errors are one line naming file and key.
    """
    path = find_smpl_file(path, gender)
    raw = _read(path)
    missing = [key for key in SMPL_SHAPES if key not in raw]
    if missing:
        raise ValueError(f'{path}: missing key {missing[0]!r} (an SMPL model has {", ".join(SMPL_SHAPES)})')
    arrays = {}
    for key in SMPL_SHAPES:
        value = raw[key]
        if hasattr(value, 'toarray'):
            value = value.toarray()
        value = np.asarray(value)
        if not np.issubdtype(value.dtype, np.number):
            raise ValueError(f'{path}: key {key!r} holds {value.dtype} data, expected numbers')
        arrays[key] = value
    _check_shapes(arrays, path)
    if 'stand_in' in raw:
        arrays['stand_in'] = str(raw['stand_in'])
    return arrays


def save_smpl_npz(arrays: Dict[str, object], path: str):
    """Write SMPL arrays (as from `load_smpl`) to a compressed, pickle-free .npz file."""
    plain = {key: np.asarray(value.toarray() if hasattr(value, 'toarray') else value)
             for key, value in arrays.items() if key in SMPL_SHAPES or key == 'stand_in'}
    np.savez_compressed(path, **plain)


def save_smpl_pickle(arrays: Dict[str, object], path: str):
    """Write arrays in the SMPL pickle layout (protocol 2, as the SMPL files; loadable by smplx)."""
    with open(path, 'wb') as file:
        pickle.dump(dict(arrays), file, protocol=2)
