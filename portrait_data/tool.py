"""Photo conversion behind `dataset_tool.py convert`: photos + preprocessing JSON (+ masks) ->
an image zip with dataset.json and a mask zip.

The preprocessing JSON maps an image (relative path, with or without extension) to
{"camera_pose": 4x4 cam2world, "smpl_pose": 72 SMPL floats or the 6 pose floats,
 "intrinsics": optional 3x3 normalised by the image width (x) and height (y)}.
"""
import json
import posixpath
from contextlib import ExitStack
from typing import Dict, List, Optional, Tuple

import numpy as np
import PIL.Image
from tqdm import tqdm

from configs.schema import CameraConfig
from portrait_data import images as img_io
from portrait_data.archive import Archive
from portrait_data.errors import DatasetError
from portrait_data.labels import LABELS_FILE, POSE_DIM, check_labels, checked_labels_json
from portrait_data.writer import WriteSummary, enter_writers

SMPL_POSE_JOINTS = (12, 15)  # SMPL joints (neck, head) whose axis-angles form the 6-float pose
SMPL_POSE_FLOATS = 72        # 24 joints x 3 (global orient = joint 0)
RECORD_FIELDS = {'cam2world': 'camera_pose', 'intrinsics': 'intrinsics', 'pose': 'smpl_pose'}


def default_intrinsics(cfg: CameraConfig = CameraConfig()) -> np.ndarray:
    """Normalised intrinsics float64 [3, 3] of the preset: focal cfg.focal, principal cfg.principal."""
    return np.array([[cfg.focal, 0, cfg.principal], [0, cfg.focal, cfg.principal], [0, 0, 1]], np.float64)


def _numeric(value, where: str, field: str, shape: Optional[Tuple[int, ...]] = None) -> np.ndarray:
    """A finite float64 array from JSON `value`, optionally of exactly `shape`."""
    problem = f'{where}: {field}: expected a (nested) list of numbers, got {str(value)[:60]}'
    if not isinstance(value, list):
        raise DatasetError(problem)
    try:
        array = np.asarray(value)
    except ValueError as exc:
        raise DatasetError(problem) from exc
    if array.dtype.kind not in 'iuf' or array.size == 0:
        raise DatasetError(problem)
    if shape is not None and array.shape != shape:
        raise DatasetError(f'{where}: {field}: expected shape {list(shape)}, got {list(array.shape)}')
    if not np.isfinite(array).all():
        raise DatasetError(f'{where}: {field}: contains non-finite values')
    return array.astype(np.float64)


def label_from_record(record, where: str) -> np.ndarray:
    """31-float label (float64) of one preprocessing record; intrinsics default to the preset's."""
    if not isinstance(record, dict):
        raise DatasetError(f'{where}: expected an object with camera_pose and smpl_pose')
    for field in ('camera_pose', 'smpl_pose'):
        if field not in record:
            raise DatasetError(f'{where}: {field}: missing')
    cam2world = _numeric(record['camera_pose'], where, 'camera_pose', (4, 4))
    smpl = _numeric(record['smpl_pose'], where, 'smpl_pose').reshape(-1)
    if smpl.size == SMPL_POSE_FLOATS:
        pose = np.concatenate([smpl[3 * j:3 * j + 3] for j in SMPL_POSE_JOINTS])
    elif smpl.size == POSE_DIM:
        pose = smpl
    else:
        raise DatasetError(f'{where}: smpl_pose: expected {SMPL_POSE_FLOATS} or {POSE_DIM} numbers, got {smpl.size}')
    K = default_intrinsics()
    if record.get('intrinsics') is not None:
        K = _numeric(record['intrinsics'], where, 'intrinsics', (3, 3))
    return np.concatenate([cam2world.reshape(-1), K.reshape(-1), pose])


def read_records(path: str) -> Dict[str, dict]:
    """The preprocessing JSON {image: record} (DatasetError naming the file if malformed)."""
    try:
        with open(path, 'r', encoding='utf-8') as f:
            records = json.load(f)
    except OSError as exc:
        raise DatasetError(f'{path}: cannot read: {exc.strerror}') from exc
    except (ValueError, UnicodeDecodeError) as exc:
        raise DatasetError(f'{path}: not valid JSON: {exc}') from exc
    if not isinstance(records, dict):
        raise DatasetError(f'{path}: expected an object {{image name: {{"camera_pose": ..., "smpl_pose": ...}}}}')
    return records


def match_records(records: Dict[str, dict], names: List[str], where: str) -> Tuple[Dict[str, str], int]:
    """({image: record key}, count of keys with no image); a key is a path with or without extension."""
    by_key = {}
    for name in names:
        by_key[name] = name
        by_key.setdefault(posixpath.splitext(name)[0], name)
    matched = {}
    for key in records:
        name = by_key.get(key)
        if name is None:
            continue
        if name in matched:
            raise DatasetError(f"{where}: '{key}': describes image '{name}' already described by '{matched[name]}'")
        matched[name] = key
    for name in names:
        if name not in matched:
            raise DatasetError(f"{where}: no entry for image '{name}'")
    return matched, len(records) - len(matched)


def crop_intrinsics(label: np.ndarray, width: int, height: int) -> np.ndarray:
    """Label float64 [31] with intrinsics re-normalised from a width x height image to its centre square."""
    side = min(width, height)
    K = label[16:25].reshape(3, 3).copy()
    for axis, extent in ((0, width), (1, height)):
        K[axis, axis] *= extent / side
        K[axis, 2] = (K[axis, 2] * extent - (extent - side) // 2) / side
    out = label.copy()
    out[16:25] = K.reshape(-1)
    return out


def fit_square(img: PIL.Image.Image, resolution: int, resample: int) -> PIL.Image.Image:
    """Centre-crop to a square, then resize to resolution x resolution with `resample`."""
    width, height = img.size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    if side != width or side != height:
        img = img.crop((left, top, left + side, top + side))
    return img if side == resolution else img.resize((resolution, resolution), resample)


def _source_image(archive: Archive, name: str) -> PIL.Image.Image:
    """A source photo as an RGB PIL image (alpha dropped, grayscale/palette expanded)."""
    where = archive.describe(name)
    try:
        with archive.open(name) as f, PIL.Image.open(f) as img:
            return img.convert('RGB')
    except Exception as exc:
        raise DatasetError(f'{where}: cannot decode image: {img_io.reason(exc)}') from exc


def _source_mask(archive: Archive, name: str, size: Tuple[int, int]) -> PIL.Image.Image:
    """A source mask as an L PIL image of `size`, 255 = person (0/1 masks are refused)."""
    where = archive.describe(name)
    with archive.open(name) as f:
        mode, mask_size = img_io.probe(f, where, 'mask')
    img_io.check_mask_mode(mode, where)
    if mask_size != size:
        raise DatasetError(f'{where}: mask is {mask_size[0]}x{mask_size[1]} but its image is {size[0]}x{size[1]}')
    mask = img_io.decode(archive.read(name), where, 'mask')
    if mask.max() == 1:
        raise DatasetError(f'{where}: mask values are 0/1; expected 0..255 with 255 = person (multiply by 255)')
    return PIL.Image.fromarray(mask)


def _output_names(names: List[str], archive: Archive) -> List[str]:
    """Member names of the converted images: the source paths with a .png extension."""
    seen: Dict[str, str] = {}
    for name in names:
        out = posixpath.splitext(name)[0] + '.png'
        if out in seen:
            raise DatasetError(f"{archive.describe(name)}: would be written as '{out}' like '{seen[out]}'; rename one")
        seen[out] = name
    return list(seen)


def _fixed_side(img: PIL.Image.Image, where: str, side: Optional[int]) -> int:
    """Without --resolution: the image must be square power-of-two and match earlier images."""
    try:
        this = img_io.check_resolution(img.size, where)
    except DatasetError as exc:
        raise DatasetError(f'{exc} (pass --resolution to crop and resize)') from None
    if side is not None and this != side:
        raise DatasetError(f'{where}: image is {this}x{this} but earlier images are {side}x{side} (pass --resolution)')
    return this


def convert(source: str, labels_json: str, dest: str, masks: Optional[str] = None,
            seg_dest: Optional[str] = None, resolution: Optional[int] = None,
            max_images: Optional[int] = None, force: bool = False, progress: bool = True) -> WriteSummary:
    """Photos in `source` + `labels_json` (+ `masks`) -> `dest` (PNGs + dataset.json) and `seg_dest`.

    With `resolution`, every image (and mask) is centre-cropped to a square and resized
    (images: Lanczos, masks: box filter); otherwise all must already be square, power-of-two
    and of one size. Labels are validated before any image is processed and again at the end.
    """
    if (masks is None) != (seg_dest is None):
        raise DatasetError('--masks and --seg-dest: give both or neither')
    if resolution is not None:
        img_io.check_resolution((resolution, resolution), '--resolution')
    images = Archive(source)
    names = images.image_names()
    if not names:
        raise DatasetError(f'{images.path}: no PNG or JPEG images')
    records = read_records(labels_json)
    matched, ignored = match_records(records, names, labels_json)
    names = names[:max_images] if max_images is not None else names
    labels = np.stack([label_from_record(records[matched[n]], f"{labels_json}: '{matched[n]}'") for n in names])
    check_labels(labels, [matched[n] for n in names], labels_json, RECORD_FIELDS)
    mask_archive = Archive(masks) if masks is not None else None
    mask_names = [_paired_mask(mask_archive, images, n) for n in names] if mask_archive else None
    out_names = _output_names(names, images)
    side = resolution
    with ExitStack() as stack:
        image_writer, mask_writer = enter_writers(stack, dest, seg_dest, force)
        for k in tqdm(range(len(names)), desc='convert', unit='img', disable=not progress):
            img = _source_image(images, names[k])
            mask = _source_mask(mask_archive, mask_names[k], img.size) if mask_archive else None
            if resolution is None:
                side = _fixed_side(img, images.describe(names[k]), side if k else None)
            else:
                labels[k] = crop_intrinsics(labels[k], *img.size)
                img = fit_square(img, resolution, PIL.Image.LANCZOS)
                mask = fit_square(mask, resolution, PIL.Image.BOX) if mask is not None else None
            image_writer.write_image(out_names[k], np.asarray(img))
            if mask is not None:
                mask_writer.write_image(out_names[k], np.asarray(mask))
        check_labels(labels, [matched[n] for n in names], labels_json, RECORD_FIELDS)
        where = f'{image_writer.dest}:{LABELS_FILE}'
        image_writer.write_json(LABELS_FILE, checked_labels_json(dict(zip(out_names, labels)), where))
    return WriteSummary(len(names), side, image_writer.dest, mask_writer.dest if mask_writer else None, ignored)


def _paired_mask(masks: Archive, images: Archive, name: str) -> str:
    """The mask paired with image `name` by relative path (DatasetError if there is none)."""
    mask = img_io.mask_name_for(name, masks)
    if mask is None:
        raise DatasetError(f"{images.describe(name)}: no mask '{name}' (or .png of the same stem) in {masks.path}")
    return mask
