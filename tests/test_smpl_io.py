"""SMPL file finding and chumpy-free loading (training/deformation/smpl_io.py) and the two scripts."""
import importlib.util
import os
import pickle
import sys
import types

import numpy as np
import pytest
import scipy.sparse
from click.testing import CliRunner

from training.deformation import smpl_io

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
V, F = 40, 76


def _random_smpl(seed=0):
    """Small random arrays in the SMPL layout (V=40), J_regressor sparse as in SMPL files."""
    rng = np.random.default_rng(seed)
    regressor = rng.random((24, V)) * (rng.random((24, V)) < 0.2) + np.eye(24, V)
    parents = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21])
    return {
        'v_template': rng.normal(size=(V, 3)),
        'f': rng.integers(0, V, size=(F, 3)).astype(np.uint32),
        'weights': rng.dirichlet(np.ones(24), size=V),
        'J_regressor': scipy.sparse.csc_matrix(regressor / regressor.sum(1, keepdims=True)),
        'kintree_table': np.stack([parents.astype(np.uint32), np.arange(24, dtype=np.uint32)]),
        'shapedirs': rng.normal(size=(V, 3, 10)),
        'posedirs': rng.normal(size=(V, 3, 207)),
        'bs_style': 'lbs',
    }


def _fake_chumpy_classes():
    """Throwaway classes named chumpy.ch.Ch with chumpy's pickled state layout."""
    package, module = types.ModuleType('chumpy'), types.ModuleType('chumpy.ch')

    class Ch:
        """Pickles like chumpy's Ch: the instance dict (with 'x') via __getstate__."""

        def __init__(self, x):
            self.x = np.asarray(x, np.float64)
            self._dirty_vars = set()
            self._itr = None
            self._depends_on_deps = {}
            self._make_dense = self._make_sparse = False

        def __getstate__(self):
            return dict(self.__dict__)

    Ch.__module__, Ch.__qualname__ = 'chumpy.ch', 'Ch'
    module.Ch, package.ch = Ch, module
    return package, module


def _write_chumpy_pickle(path, arrays, monkeypatch):
    """Pickle `arrays` (protocol 2, like SMPL) with shapedirs and posedirs as fake chumpy objects."""
    package, module = _fake_chumpy_classes()
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, 'chumpy', package)
        patch.setitem(sys.modules, 'chumpy.ch', module)
        data = dict(arrays, shapedirs=module.Ch(arrays['shapedirs']), posedirs=module.Ch(arrays['posedirs']))
        with open(path, 'wb') as file:
            pickle.dump(data, file, protocol=2)
    assert 'chumpy' not in sys.modules and 'chumpy.ch' not in sys.modules


def _assert_same(loaded, arrays):
    for key in smpl_io.SMPL_SHAPES:
        expected = arrays[key].toarray() if scipy.sparse.issparse(arrays[key]) else arrays[key]
        np.testing.assert_array_equal(loaded[key], expected, err_msg=key)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, os.path.join(REPO, 'scripts', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_chumpy_pickle_loads_without_chumpy(tmp_path, monkeypatch):
    arrays = _random_smpl()
    path = tmp_path / 'SMPL_NEUTRAL.pkl'
    _write_chumpy_pickle(path, arrays, monkeypatch)
    with pytest.raises(ModuleNotFoundError, match='chumpy'):
        with open(path, 'rb') as file:
            pickle.load(file, encoding='latin1')
    loaded = smpl_io.load_smpl(str(path))
    _assert_same(loaded, arrays)
    assert all(type(value) is np.ndarray for value in loaded.values())
    assert 'chumpy' not in sys.modules


@pytest.mark.parametrize('layout', ['SMPL_{}.pkl', 'smpl/SMPL_{}.pkl', 'SMPL_{}.npz', 'smpl/SMPL_{}.npz'])
@pytest.mark.parametrize('gender', ['neutral', 'female'])
def test_folder_layouts(tmp_path, layout, gender):
    arrays = _random_smpl()
    path = tmp_path / layout.format(gender.upper())
    path.parent.mkdir(exist_ok=True)
    save = smpl_io.save_smpl_npz if path.suffix == '.npz' else smpl_io.save_smpl_pickle
    save(arrays, str(path))
    assert smpl_io.find_smpl_file(str(tmp_path), gender) == str(path)
    _assert_same(smpl_io.load_smpl(str(tmp_path), gender), arrays)
    _assert_same(smpl_io.load_smpl(str(path)), arrays)


def test_missing_file_message(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        smpl_io.load_smpl(str(tmp_path / 'models'))
    message = str(info.value)
    assert '\n' not in message
    assert os.path.join(str(tmp_path / 'models'), 'smpl', 'SMPL_NEUTRAL.pkl') in message
    assert os.path.join(str(tmp_path / 'models'), 'SMPL_NEUTRAL.pkl') in message
    assert 'https://smpl.is.tue.mpg.de' in message and 'licence' in message
    assert 'scripts/make_procedural_smpl.py' in message


def test_bad_gender():
    with pytest.raises(ValueError, match='gender'):
        smpl_io.smpl_candidates('/nowhere', 'robot')


@pytest.mark.parametrize('key,value,expected', [
    ('weights', None, "missing key 'weights'"),
    ('posedirs', np.zeros((V, 3, 200)), "'posedirs' has shape (40, 3, 200), expected (40, 3, 207)"),
    ('J_regressor', np.zeros((24, V + 1)), "'J_regressor' has shape (24, 41), expected (24, 40)"),
    ('f', np.full((F, 3), V, np.uint32), "'f' indexes vertices outside"),
    ('v_template', np.array(['a'] * V), "'v_template' holds"),
])
def test_wrong_keys_and_shapes(tmp_path, key, value, expected):
    arrays = _random_smpl()
    if value is None:
        del arrays[key]
    else:
        arrays[key] = value
    path = str(tmp_path / 'SMPL_NEUTRAL.pkl')
    smpl_io.save_smpl_pickle(arrays, path)
    with pytest.raises(ValueError) as info:
        smpl_io.load_smpl(path)
    assert expected in str(info.value) and path in str(info.value) and '\n' not in str(info.value)


def test_chumpy_object_without_array(tmp_path, monkeypatch):
    package, module = _fake_chumpy_classes()
    path = tmp_path / 'SMPL_NEUTRAL.pkl'
    with monkeypatch.context() as patch:
        patch.setitem(sys.modules, 'chumpy', package)
        patch.setitem(sys.modules, 'chumpy.ch', module)
        term = module.Ch(np.zeros(3))
        del term.x
        smpl_io.save_smpl_pickle(dict(_random_smpl(), shapedirs=term), str(path))
    with pytest.raises(ValueError, match="'shapedirs' is a chumpy object"):
        smpl_io.load_smpl(str(path))


def test_refuses_foreign_classes(tmp_path):
    path = tmp_path / 'SMPL_NEUTRAL.pkl'
    smpl_io.save_smpl_pickle(dict(_random_smpl(), bs_style=os.getcwd), str(path))
    with pytest.raises(pickle.UnpicklingError, match='refusing to load'):
        smpl_io.load_smpl(str(path))


def test_npz_conversion_round_trip(tmp_path, monkeypatch):
    arrays = _random_smpl()
    source = tmp_path / 'SMPL_NEUTRAL.pkl'
    _write_chumpy_pickle(source, arrays, monkeypatch)
    result = CliRunner().invoke(_load_script('convert_smpl').main, [str(source)])
    assert result.exit_code == 0, result.output
    converted = smpl_io.load_smpl(str(tmp_path / 'SMPL_NEUTRAL.npz'))
    original = smpl_io.load_smpl(str(source))
    assert converted.keys() == original.keys()
    for key in original:
        np.testing.assert_array_equal(converted[key], original[key], err_msg=key)
        assert converted[key].dtype == original[key].dtype
    with np.load(tmp_path / 'SMPL_NEUTRAL.npz', allow_pickle=False) as data:
        assert sorted(data.files) == sorted(smpl_io.SMPL_SHAPES)


def test_make_procedural_smpl_script(tmp_path):
    result = CliRunner().invoke(_load_script('make_procedural_smpl').main, [str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert 'stand-in' in result.output
    assert 'NOT SMPL' in (tmp_path / 'smpl' / 'STAND_IN.txt').read_text()
    with open(tmp_path / 'smpl' / 'SMPL_NEUTRAL.pkl', 'rb') as file:
        raw = pickle.load(file, encoding='latin1')               # a plain pickle: no chumpy needed
    assert raw['stand_in'] == 'portrait3d procedural body'
    loaded = smpl_io.load_smpl(str(tmp_path))
    assert loaded['stand_in'] == 'portrait3d procedural body'
    assert loaded['v_template'].shape == (6890, 3) and loaded['f'].shape == (13776, 3)
