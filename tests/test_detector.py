"""metrics.detector: loading a TorchScript detector (local file, env var, URL cache), the calling convention,
and one-line errors. The detector here is a tiny STAND-IN built by the test (tests/standin_detector.py)."""
import hashlib
import pickle
import warnings

import numpy as np
import pytest
import torch

import dnnlib
from metrics import detector as detector_lib
from metrics.detector import DEFAULT_DETECTOR_URL, DETECTOR_ENV_VAR, DetectorError, detector_source, load_detector
from metrics.standin_detector import FEATURE_DIM, save_standin_detector
from metrics_testing import standin_features_numpy


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    """No detector env var, a private cache dir, and no detectors loaded by other tests."""
    monkeypatch.delenv(DETECTOR_ENV_VAR, raising=False)
    monkeypatch.setenv('PORTRAIT3D_CACHE_DIR', str(tmp_path / 'cache'))
    monkeypatch.setattr(detector_lib, '_loaded', {})


def _images(n=3, side=32, channels=3, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, channels, side, side), dtype=np.uint8)


def test_local_file_features_follow_the_convention(tmp_path):
    path = save_standin_detector(tmp_path / 'standin-detector.pt')
    detector = load_detector(path)
    images = _images()
    features = detector(torch.from_numpy(images))
    assert features.dtype == torch.float32 and features.shape == (3, FEATURE_DIM)
    np.testing.assert_allclose(features.numpy(), standin_features_numpy(images), atol=1e-6)
    assert detector.feature_dim == FEATURE_DIM and detector.name == 'standin-detector'
    assert detector.identity == hashlib.md5((tmp_path / 'standin-detector.pt').read_bytes()).hexdigest()
    assert load_detector(path) is detector                      # loaded once per process


def test_grey_images_are_repeated_to_rgb(tmp_path):
    detector = load_detector(save_standin_detector(tmp_path / 'd.pt'))
    grey = _images(channels=1)
    expected = standin_features_numpy(np.repeat(grey, 3, axis=1))
    np.testing.assert_allclose(detector(torch.from_numpy(grey)).numpy(), expected, atol=1e-6)


def test_search_order_argument_env_default(tmp_path, monkeypatch):
    assert detector_source(None) == DEFAULT_DETECTOR_URL
    env_file = save_standin_detector(tmp_path / 'env.pt', seed=1)
    monkeypatch.setenv(DETECTOR_ENV_VAR, env_file)
    assert detector_source(None) == env_file
    assert detector_source('given.pt') == 'given.pt'
    images = _images()
    np.testing.assert_allclose(load_detector().__call__(torch.from_numpy(images)).numpy(),
                               standin_features_numpy(images, seed=1), atol=1e-6)


def test_cached_url_loads_without_network(tmp_path):
    url = 'https://example.invalid/metrics/standin-2015.pt'
    cache_dir = dnnlib.util.make_cache_dir_path('downloads')
    (tmp_path / 'cache' / 'downloads').mkdir(parents=True)
    save_standin_detector(f'{cache_dir}/{dnnlib.util.url_cache_prefix(url)}standin-2015.pt')
    detector = load_detector(url)
    assert detector.name == 'standin-2015' and detector.feature_dim == FEATURE_DIM


def _one_line_error(spec):
    with pytest.raises(DetectorError) as info:
        load_detector(spec)
    message = str(info.value)
    assert '\n' not in message
    return message


def test_offline_without_file_says_how_to_provide_it():
    message = _one_line_error('http://127.0.0.1:9/inception-2015-12-05.pt')
    assert 'cannot download' in message and '--detector' in message and f'${DETECTOR_ENV_VAR}' in message


def test_missing_file(tmp_path):
    message = _one_line_error(str(tmp_path / 'nope.pt'))
    assert 'nope.pt' in message and '--detector' in message and DETECTOR_ENV_VAR in message


def test_pickles_and_other_files_are_refused(tmp_path):
    pickled = tmp_path / 'inception-2015-12-05.pkl'
    pickled.write_bytes(pickle.dumps({'not': 'run'}))
    assert 'Python pickle' in _one_line_error(str(pickled))
    junk = tmp_path / 'junk.pt'
    junk.write_bytes(b'hello world')
    assert 'not a TorchScript archive' in _one_line_error(str(junk))


class WrongOutput(torch.nn.Module):
    """Returns one number per image: not the [N, D] feature convention."""

    def forward(self, images: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        return images.to(torch.float32).mean(dim=(1, 2, 3))


class NoFlag(torch.nn.Module):
    """Has no return_features argument."""

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.to(torch.float32).flatten(1)


@pytest.mark.parametrize('module, expected', [(WrongOutput, 'expected features [N, D]'), (NoFlag, 'failed')])
def test_modules_breaking_the_convention(tmp_path, module, expected):
    path = tmp_path / f'{module.__name__}.pt'
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', DeprecationWarning)
        torch.jit.save(torch.jit.script(module()), str(path))
    assert expected in _one_line_error(str(path))
