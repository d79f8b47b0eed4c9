"""The 31-float label of a portrait (camera + body pose): layout, strict validation, mirroring.

Layout of one label (system.md §2.2, §6.1):
    label[0:16]   cam2world 4x4, row-major; OpenCV camera axes (x right, y down, z forward),
                  world y up, body facing +z, origin at the SMPL neck joint
    label[16:25]  intrinsics 3x3, row-major, normalised by the image size (cx = cy = 0.5)
    label[25:31]  body pose: axis-angle of the SMPL neck (joint 12), then of the head (joint 15)
`dataset.json` at the root of an image zip or folder holds `{"labels": [[path, [31 floats]], ...]}`.
"""
import math
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch

from portrait_data.errors import DatasetError
from training import cameras

CAMERA_DIM = 25
POSE_DIM = 6
LABEL_DIM = CAMERA_DIM + POSE_DIM
ROTATION_TOL = 1e-3    # max |R^T R - I| of the cam2world rotation
BOTTOM_ROW_TOL = 1e-4  # max deviation of the cam2world row [0, 0, 0, 1] and intrinsics row [0, 0, 1]
PRINCIPAL_TOL = 1e-2   # max |c - 0.5| of the normalised principal point (mirroring needs 0.5)
LABELS_FILE = 'dataset.json'

# Fields of the label, in the order their checks run: (name, slice).
FIELDS = {'cam2world': slice(0, 16), 'intrinsics': slice(16, 25), 'pose': slice(25, 31)}


def split_label(label: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Split labels [..., 31] into (camera [..., 25], pose [..., 6]) views."""
    label = np.asarray(label)
    if label.shape[-1] != LABEL_DIM:
        raise ValueError(f'label: expected {LABEL_DIM} floats in the last axis, got shape {list(label.shape)}')
    return label[..., :CAMERA_DIM], label[..., CAMERA_DIM:]


def join_label(camera: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Concatenate camera [..., 25] and pose [..., 6] into labels [..., 31] (float32)."""
    camera, pose = np.asarray(camera, np.float32), np.asarray(pose, np.float32)
    if camera.shape[-1] != CAMERA_DIM or pose.shape[-1] != POSE_DIM:
        raise ValueError(f'camera/pose: expected 25 and 6 floats, got shapes {list(camera.shape)} and {list(pose.shape)}')
    return np.concatenate([camera, pose], axis=-1)


def mirror_label(label: np.ndarray) -> np.ndarray:
    """Labels [..., 31] of the horizontally flipped images (world mirrored across x = 0).

    cam2world -> S M S with S = diag(-1, 1, 1, 1); intrinsics unchanged; each axis-angle keeps x
    and negates y, z (see training/cameras.py). Returns float32 of the input's shape.
    """
    label = np.asarray(label, np.float32)
    flat = torch.from_numpy(np.ascontiguousarray(label.reshape(-1, LABEL_DIM)))
    return cameras.mirror_camera(flat).numpy().reshape(label.shape)


def back_view_mask(labels: np.ndarray) -> np.ndarray:
    """bool [N]: cameras behind the head, |yaw - pi/2| >= pi/2 (yaw from cameras.yaw_pitch_of)."""
    cam2world = torch.from_numpy(np.ascontiguousarray(labels[:, :16], np.float64)).reshape(-1, 4, 4)
    yaw = cameras.yaw_pitch_of(cam2world)[:, 0].numpy()
    return np.abs(yaw - math.pi / 2) >= math.pi / 2


def first_invalid_label(labels: np.ndarray) -> Optional[Tuple[int, str, str]]:
    """Check labels [N, 31]; return (row, field, problem) of the first bad row, else None.

    `field` is 'cam2world', 'intrinsics' or 'pose'. Checks, in order: all values finite;
    cam2world bottom row [0, 0, 0, 1]; rotation orthonormal (ROTATION_TOL) and proper (det +1);
    intrinsics bottom row [0, 0, 1]; focal lengths > 0; principal point within PRINCIPAL_TOL of 0.5.
    """
    labels = np.asarray(labels, np.float64).reshape(-1, LABEL_DIM)
    M = labels[:, 0:16].reshape(-1, 4, 4)
    K = labels[:, 16:25].reshape(-1, 3, 3)
    R = M[:, :3, :3]
    ortho = np.abs(R.transpose(0, 2, 1) @ R - np.eye(3)).max(axis=(1, 2))
    checks = [(field, ~np.isfinite(labels[:, sl]).all(1), lambda i: 'contains non-finite values')
              for field, sl in FIELDS.items()]
    checks += [
        ('cam2world', np.abs(M[:, 3] - [0, 0, 0, 1]).max(1) > BOTTOM_ROW_TOL,
         lambda i: f'bottom row {_fmt(M[i, 3])} is not [0, 0, 0, 1]'),
        ('cam2world', ortho > ROTATION_TOL,
         lambda i: f'rotation is not orthonormal (max |R^T R - I| = {ortho[i]:.3g} > {ROTATION_TOL})'),
        ('cam2world', np.linalg.det(R) < 0,
         lambda i: 'rotation is a reflection (det = -1); expected a proper rotation'),
        ('intrinsics', np.abs(K[:, 2] - [0, 0, 1]).max(1) > BOTTOM_ROW_TOL,
         lambda i: f'bottom row {_fmt(K[i, 2])} is not [0, 0, 1]'),
        ('intrinsics', (K[:, 0, 0] <= 0) | (K[:, 1, 1] <= 0),
         lambda i: f'focal (fx, fy) = {_fmt(K[i, [0, 1], [0, 1]])} must be > 0'),
        ('intrinsics', np.abs(K[:, :2, 2] - 0.5).max(1) > PRINCIPAL_TOL,
         lambda i: f'principal point (cx, cy) = {_fmt(K[i, :2, 2])} is not 0.5 (normalised; tolerance {PRINCIPAL_TOL})'),
    ]
    bad = np.stack([mask for _, mask, _ in checks])
    rows = np.flatnonzero(bad.any(0))
    if rows.size == 0:
        return None
    row = int(rows[0])
    field, _, message = checks[int(np.argmax(bad[:, row]))]
    return row, field, message(row)


def check_labels(labels: np.ndarray, names: Sequence[str], where: str, field_names: Dict[str, str]) -> None:
    """Raise DatasetError "<where>: '<name>': <field>: <problem>" for the first invalid row of labels [N, 31].

    `field_names` renames the fields ('cam2world', 'intrinsics', 'pose') for the message, e.g. to
    the names of a source file's fields.
    """
    bad = first_invalid_label(labels)
    if bad is not None:
        row, field, problem = bad
        raise DatasetError(f"{where}: '{names[row]}': {field_names[field]}: {problem}")


def _fmt(values: Sequence[float]) -> str:
    """Compact list formatting for error messages."""
    return '[' + ', '.join(f'{v:.4g}' for v in values) + ']'


def _field_of_index(index: int) -> str:
    """Name and slice text of the label field that holds flat index `index`."""
    for name, sl in FIELDS.items():
        if sl.start <= index < sl.stop:
            return f'{name} (label[{sl.start}:{sl.stop}])'
    raise IndexError(index)


def parse_label_values(values, where: str) -> np.ndarray:
    """One JSON label value -> float64 [31]; `where` prefixes the error (file and entry)."""
    if not isinstance(values, (list, tuple)):
        raise DatasetError(f'{where}: expected a list of {LABEL_DIM} numbers, got {type(values).__name__}')
    if len(values) != LABEL_DIM:
        raise DatasetError(f'{where}: expected {LABEL_DIM} numbers (25 camera + 6 pose), got {len(values)}')
    for k, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise DatasetError(f'{where}: {_field_of_index(k)}: value {k} is {v!r}, not a number')
        if not math.isfinite(v):
            raise DatasetError(f'{where}: {_field_of_index(k)}: value {k} is {v}, not finite')
    return np.asarray(values, np.float64)


def parse_labels_json(obj, where: str) -> List[Tuple[str, np.ndarray]]:
    """Parsed `dataset.json` content -> [(relative path, float64 [31])] in file order."""
    if not isinstance(obj, dict) or 'labels' not in obj:
        raise DatasetError(f'{where}: expected an object {{"labels": [[path, [31 floats]], ...]}}')
    entries = obj['labels']
    if not isinstance(entries, list):
        raise DatasetError(f'{where}: labels: expected a list of [path, [31 floats]] pairs, got {type(entries).__name__}')
    parsed = []
    for k, entry in enumerate(entries):
        if not (isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[0], str)):
            raise DatasetError(f'{where}: labels[{k}]: expected a [path, [31 floats]] pair, got {str(entry)[:60]}')
        name = entry[0]
        parsed.append((name, parse_label_values(entry[1], f"{where}: labels['{name}']")))
    return parsed


def validate_labels(entries: Sequence[Tuple[str, np.ndarray]], image_names: Iterable[str],
                    where: str) -> Dict[str, np.ndarray]:
    """Check parsed labels against the image list; return {path: float32 [31]} in image order.

    Errors (DatasetError, naming `where` and the path): duplicate paths, labels for missing
    images, images without labels, and every problem of `first_invalid_label`.
    """
    by_name: Dict[str, np.ndarray] = {}
    for name, values in entries:
        if name in by_name:
            raise DatasetError(f"{where}: labels['{name}']: duplicate path (listed more than once)")
        by_name[name] = values
    image_names = list(image_names)
    known = set(image_names)
    for name in by_name:
        if name not in known:
            raise DatasetError(f"{where}: labels['{name}']: no such image in the dataset")
    for name in image_names:
        if name not in by_name:
            raise DatasetError(f"{where}: image '{name}' has no label")
    if not image_names:
        return {}
    stacked = np.stack([by_name[name] for name in image_names])
    bad = first_invalid_label(stacked)
    if bad is not None:
        row, field, problem = bad
        sl = FIELDS[field]
        raise DatasetError(f"{where}: labels['{image_names[row]}']: {field} (label[{sl.start}:{sl.stop}]): {problem}")
    return {name: stacked[k].astype(np.float32) for k, name in enumerate(image_names)}


def labels_to_json(labels: Dict[str, np.ndarray]) -> dict:
    """{path: [31]} -> the `dataset.json` object {"labels": [[path, [31 floats]], ...]}."""
    return {'labels': [[name, [float(v) for v in np.asarray(values).reshape(-1)]] for name, values in labels.items()]}


def checked_labels_json(labels: Dict[str, np.ndarray], where: str) -> dict:
    """`labels_to_json(labels)`, re-read through the same validator as the reader (before writing it)."""
    obj = labels_to_json(labels)
    validate_labels(parse_labels_json(obj, where), list(labels), where)
    return obj
