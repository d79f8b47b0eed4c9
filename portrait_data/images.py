"""Image and mask files: header probing, decoding to arrays, checks, mask pairing, PNG encoding.

Images are PNG or JPEG, RGB (3 channels) or grayscale (1 channel). Masks are single-channel
(mode L, or 1-bit which reads as 0/255), 255 = person, same size as their image.
"""
import io
import posixpath
from typing import BinaryIO, Container, Optional, Tuple

import numpy as np
import PIL.Image

from portrait_data.errors import DatasetError

IMAGE_FORMATS = ('PNG', 'JPEG')
IMAGE_CHANNELS = {'RGB': 3, 'L': 1}  # PIL mode -> channels of an image
MASK_MODES = ('L', '1')
PNG_COMPRESS_LEVEL = 0  # as StyleGAN/EG3D's dataset_tool: bigger files, 2-5x faster decoding


def probe(stream: BinaryIO, where: str, kind: str = 'image') -> Tuple[str, Tuple[int, int]]:
    """Read only the header: (PIL mode, (width, height)); DatasetError names `where`."""
    try:
        with PIL.Image.open(stream) as img:
            fmt, mode, size = img.format, img.mode, img.size
    except Exception as exc:
        raise DatasetError(f'{where}: cannot read {kind}: {reason(exc)}') from exc
    if fmt not in IMAGE_FORMATS:
        raise DatasetError(f'{where}: {kind} format {fmt} is not PNG or JPEG')
    return mode, size


def decode(data: bytes, where: str, kind: str = 'image') -> np.ndarray:
    """Decode PNG/JPEG bytes to uint8 [H, W] or [H, W, C]; a 1-bit image becomes 0/255."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as img:
            if img.format not in IMAGE_FORMATS:
                raise DatasetError(f'{where}: {kind} format {img.format} is not PNG or JPEG')
            array = np.asarray(img)
    except DatasetError:
        raise
    except Exception as exc:
        raise DatasetError(f'{where}: cannot decode {kind}: {reason(exc)}') from exc
    if array.dtype == bool:
        array = array.astype(np.uint8) * 255
    if array.dtype != np.uint8:
        raise DatasetError(f'{where}: {kind} has {array.dtype} pixels; expected 8-bit')
    return array


def reason(exc: Exception) -> str:
    """One-line description of a decoding exception (without PIL's repr of the stream)."""
    if isinstance(exc, PIL.UnidentifiedImageError):
        return 'UnidentifiedImageError: not a readable PNG or JPEG file'
    text = str(exc).splitlines()[0] if str(exc) else ''
    return f'{type(exc).__name__}: {text}' if text else type(exc).__name__


def image_channels(mode: str, where: str) -> int:
    """Channels of an image of PIL `mode` (RGB -> 3, L -> 1); other modes are an error."""
    if mode not in IMAGE_CHANNELS:
        raise DatasetError(f'{where}: image mode {mode} is not RGB or L (convert with dataset_tool.py)')
    return IMAGE_CHANNELS[mode]


def check_mask_mode(mode: str, where: str) -> None:
    """Masks must be single-channel 8-bit (L) or 1-bit; anything else is an error."""
    if mode not in MASK_MODES:
        raise DatasetError(f'{where}: mask mode {mode} is not single-channel (expected L or 1, 255 = person)')


def check_resolution(size: Tuple[int, int], where: str) -> int:
    """Side of a square, power-of-two image of `size` (width, height); else DatasetError."""
    width, height = size
    if width != height:
        raise DatasetError(f'{where}: image is {width}x{height}, not square')
    if width < 1 or width & (width - 1):
        raise DatasetError(f'{where}: image side {width} is not a power of two')
    return width


def mask_name_for(image_name: str, mask_names: Container[str]) -> Optional[str]:
    """The mask paired with `image_name` by relative path: the same path, else the same stem + .png."""
    if image_name in mask_names:
        return image_name
    png = posixpath.splitext(image_name)[0] + '.png'
    return png if png in mask_names else None


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of uint8 [H, W] (grayscale) or [H, W, 3] (RGB)."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(array)).save(buffer, format='PNG', compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()
