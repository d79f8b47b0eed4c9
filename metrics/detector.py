"""The feature detector of FID and KID: the standard Inception-v3 TorchScript network, or a local TorchScript file.

Calling convention (StyleGAN2-ADA, StyleGAN3, EG3D): a TorchScript module called as
`module(images, return_features=True)` with `images` a uint8 tensor [N, 3, H, W] (RGB, values
0..255, any H and W; the Inception module resizes to 299 x 299 and normalises internally) that
returns float32 pool features [N, 2048]. Any TorchScript module following this convention works
(tests use a tiny stand-in built the same way).

Where the detector comes from, first match wins:
  1. the `spec` argument (calc_metrics.py --detector): a local path, file:// or http(s) URL;
  2. the environment variable $PORTRAIT3D_DETECTOR (the same forms; meant for offline clusters);
  3. DEFAULT_DETECTOR_URL, downloaded once into the dnnlib cache (dnnlib.util.open_url).
The default is StyleGAN2-ADA's TorchScript archive `inception-2015-12-05.pt`. StyleGAN3 and EG3D
fetch the same network as `inception-2015-12-05.pkl` from NGC, but that file is a Python pickle
which runs code stored in it when loaded; it is refused with a one-line message, like every other
file that is not a TorchScript archive.
"""
import hashlib
import os
import urllib.parse
import warnings
from typing import Optional

import torch

import dnnlib

DEFAULT_DETECTOR_URL = ('https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/'
                        'inception-2015-12-05.pt')
DETECTOR_ENV_VAR = 'PORTRAIT3D_DETECTOR'
ZIP_MAGIC = b'PK\x03\x04'               # TorchScript archives are zip files
PICKLE_MAGIC = b'\x80'                  # first byte of a protocol-2+ Python pickle
PROBE_SHAPE = (2, 3, 32, 32)            # uint8 batch used once to check the calling convention
HOW_TO_PROVIDE = (f'give a local TorchScript file with --detector PATH or ${DETECTOR_ENV_VAR} '
                  f'(download {DEFAULT_DETECTOR_URL} where there is internet)')

_loaded = {}                            # (source, device) -> FeatureDetector, so snapshots reuse one detector


class DetectorError(ValueError):
    """The feature detector cannot be found, downloaded or used; the message is one line saying how to fix it."""


class FeatureDetector:
    """images uint8 [N, C, H, W] (C = 1 or 3) -> float32 features [N, feature_dim], via a TorchScript module.

    `name` (the file stem) and `identity` (md5 of the file) label cached real-image statistics.
    """

    def __init__(self, module: torch.jit.ScriptModule, name: str, identity: str, device: torch.device):
        self.module, self.name, self.identity, self.device = module, name, identity, torch.device(device)
        self.feature_dim = int(self(torch.zeros(PROBE_SHAPE, dtype=torch.uint8)).shape[1])

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """Features [N, D] of images [N, C, H, W] (uint8, or any dtype holding 0..255); grey is repeated to RGB."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise DetectorError(f'detector input: expected images [N, 1 or 3, H, W], got shape {list(images.shape)}')
        if images.shape[1] == 1:
            images = images.repeat(1, 3, 1, 1)
        features = self.module(images.to(self.device, torch.uint8), return_features=True)
        if not isinstance(features, torch.Tensor) or features.ndim != 2 or features.shape[0] != images.shape[0]:
            got = list(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise DetectorError(f'detector {self.name}: expected features [N, D] from module(images, '
                                f'return_features=True), got {got}')
        return features.to(torch.float32)


def detector_source(spec: Optional[str] = None) -> str:
    """The path or URL to load: `spec`, else ${DETECTOR_ENV_VAR}, else DEFAULT_DETECTOR_URL."""
    return spec or os.environ.get(DETECTOR_ENV_VAR) or DEFAULT_DETECTOR_URL


def _first_line(err: Exception) -> str:
    """First line of an exception's message (its type name if empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def _file_md5(path: str) -> str:
    """Hex md5 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(1 << 20), b''):
            digest.update(chunk)
    return digest.hexdigest()


def _local_file(source: str, verbose: bool) -> str:
    """Local path of `source` (downloading a URL into the cache once); DetectorError on failure."""
    try:
        return dnnlib.util.open_url(source, return_filename=True, verbose=verbose)
    except dnnlib.util.DownloadError as err:
        raise DetectorError(f'detector: {str(err).split(";")[0]}; {HOW_TO_PROVIDE}') from None
    except (OSError, ValueError) as err:
        raise DetectorError(f'detector: {source}: {err}; {HOW_TO_PROVIDE}') from None


def _load_module(path: str, device: torch.device) -> torch.jit.ScriptModule:
    """torch.jit.load of a TorchScript archive; DetectorError (one line) for pickles and other files."""
    with open(path, 'rb') as f:
        head = f.read(len(ZIP_MAGIC))
    if head.startswith(PICKLE_MAGIC):
        raise DetectorError(f'detector: {path} is a Python pickle (like StyleGAN3/EG3D\'s inception-2015-12-05.pkl), '
                            f'which would run code stored in it; use the TorchScript archive {DEFAULT_DETECTOR_URL}')
    if head != ZIP_MAGIC:
        raise DetectorError(f'detector: {path} is not a TorchScript archive (a zip file saved by torch.jit.save)')
    try:
        with warnings.catch_warnings():    # torch 2.x deprecates TorchScript; the Inception detector exists only as one
            warnings.simplefilter('ignore', DeprecationWarning)
            return torch.jit.load(path, map_location=device).eval()
    except RuntimeError as err:
        raise DetectorError(f'detector: {path}: torch.jit.load failed: {_first_line(err)}') from None


def load_detector(spec: Optional[str] = None, device='cpu', verbose: bool = False) -> FeatureDetector:
    """The FeatureDetector of `spec` (see the module docstring for the search order) on `device`.

    Loaded once per (source, device) and process. Raises DetectorError with a one-line message when
    the file is missing, cannot be downloaded, or does not follow the calling convention.
    """
    source, device = detector_source(spec), torch.device(device)
    key = (source, str(device))
    if key not in _loaded:
        path = _local_file(source, verbose)
        module = _load_module(path, device)
        name = os.path.basename(urllib.parse.urlsplit(source).path if '://' in source else path)
        try:
            _loaded[key] = FeatureDetector(module, os.path.splitext(name)[0], _file_md5(path), device)
        except RuntimeError as err:
            raise DetectorError(f'detector: {path}: calling module(images uint8 {list(PROBE_SHAPE)}, '
                                f'return_features=True) failed: {_first_line(err)}') from None
    return _loaded[key]
