"""Tests for portrait_data/labels.py: the 31-float layout, the strict validator and mirroring."""
import math

import numpy as np
import pytest
import torch

from portrait_data import labels as L
from portrait_data.errors import DatasetError
from training import cameras

WHERE = '/data/images.zip:dataset.json'


def make_labels(yaws, seed=0):
    """float64 [N, 31] labels of preset cameras at `yaws` (level pitch) with random poses."""
    c = cameras.camera_vector(torch.tensor(yaws, dtype=torch.float64), math.pi / 2).double().numpy()
    pose = np.random.default_rng(seed).normal(0, 0.2, (len(yaws), 6))
    return np.concatenate([c, pose], axis=1)


def entries(labels, names=None):
    """[(name, list of 31 floats)] like parse_labels_json returns (as lists, for mutation)."""
    names = names or [f'img{k:02d}.png' for k in range(len(labels))]
    return [(name, [float(v) for v in row]) for name, row in zip(names, labels)]


def validate(items, names=None):
    """Run the validator on (name, list) items against `names` (default: the items' names)."""
    parsed = [(n, L.parse_label_values(v, f"{WHERE}: labels['{n}']")) for n, v in items]
    return L.validate_labels(parsed, names if names is not None else [n for n, _ in items], WHERE)


def test_split_and_join():
    label = np.arange(31, dtype=np.float32)
    camera, pose = L.split_label(label)
    assert camera.shape == (25,) and pose.shape == (6,)
    assert np.array_equal(L.join_label(camera, pose), label)
    batch = np.stack([label, label + 1])
    assert L.split_label(batch)[1].shape == (2, 6)
    with pytest.raises(ValueError, match='31'):
        L.split_label(np.zeros(30))


def test_mirror_label_matches_cameras_and_is_involution():
    labels = make_labels([0.3, 1.2, -2.0]).astype(np.float32)
    mirrored = L.mirror_label(labels)
    expected = cameras.mirror_camera(torch.from_numpy(labels)).numpy()
    assert np.array_equal(mirrored, expected)
    assert np.array_equal(mirrored[:, 25:], labels[:, 25:] * [1, -1, -1, 1, -1, -1])
    assert np.array_equal(mirrored[:, 16:25], labels[:, 16:25])
    assert np.array_equal(L.mirror_label(mirrored), labels)
    assert np.array_equal(L.mirror_label(labels[0]), mirrored[0])


def test_back_view_mask():
    """Back = |yaw - pi/2| >= pi/2 with yaw in [-pi, pi): the camera centre has z <= 0."""
    yaws = [math.pi / 2, 0.3, 1e-3, -1e-3, -math.pi / 2, 3.1, -3.1, math.pi - 1e-3, -math.pi + 1e-3]
    expected = [False, False, False, True, True, False, True, False, True]
    assert L.back_view_mask(make_labels(yaws)).tolist() == expected


def test_valid_labels_pass_in_image_order():
    labels = make_labels(np.linspace(-3, 3, 5))
    items = entries(labels)
    out = validate(items[::-1], names=[n for n, _ in items])
    assert list(out) == [n for n, _ in items]
    assert out['img03.png'].dtype == np.float32
    assert np.allclose(out['img03.png'], labels[3])


def test_json_round_trip():
    labels = make_labels([0.5, -2.5])
    obj = L.labels_to_json({'a/x.png': labels[0], 'b.png': labels[1]})
    parsed = L.parse_labels_json(obj, WHERE)
    assert [n for n, _ in parsed] == ['a/x.png', 'b.png']
    assert np.array_equal(parsed[1][1], labels[1])


@pytest.mark.parametrize('index, value, pattern', [
    (None, 30, r"labels\['img01.png'\]: expected 31 numbers .*got 30"),
    (5, float('nan'), r"labels\['img01.png'\]: cam2world \(label\[0:16\]\): value 5 is nan, not finite"),
    (20, float('inf'), r"intrinsics \(label\[16:25\]\): value 20 is inf, not finite"),
    (27, 'x', r"pose \(label\[25:31\]\): value 27 is 'x', not a number"),
    (3, True, r'value 3 is True, not a number'),
])
def test_format_errors(index, value, pattern):
    items = entries(make_labels([0.1, 0.2]))
    if index is None:
        items[1] = (items[1][0], items[1][1][:value])
    else:
        items[1][1][index] = value
    with pytest.raises(DatasetError, match=pattern) as info:
        validate(items)
    assert str(info.value).startswith(WHERE) and '\n' not in str(info.value)


def _rotate_bad(v):
    """Scale the first rotation column by 1.01 (|R^T R - I| = 0.0201)."""
    for k in (0, 4, 8):
        v[k] *= 1.01


def _reflect(v):
    """Negate the first rotation column (det -1)."""
    for k in (0, 4, 8):
        v[k] = -v[k]


@pytest.mark.parametrize('mutate, pattern', [
    (lambda v: v.__setitem__(12, 0.5), r'cam2world \(label\[0:16\]\): bottom row .* is not \[0, 0, 0, 1\]'),
    (_rotate_bad, r'cam2world .*rotation is not orthonormal \(max \|R\^T R - I\| = 0\.0201'),
    (_reflect, r'cam2world .*reflection'),
    (lambda v: v.__setitem__(24, 2.0), r'intrinsics \(label\[16:25\]\): bottom row'),
    (lambda v: v.__setitem__(16, -6.5), r'intrinsics .*focal \(fx, fy\) = \[-6\.5, 6\.51\] must be > 0'),
    (lambda v: v.__setitem__(20, 0.0), r'intrinsics .*focal'),
    (lambda v: v.__setitem__(18, 256.0), r'intrinsics .*principal point \(cx, cy\) = \[256, 0\.5\] is not 0\.5'),
])
def test_geometry_errors_name_file_path_and_field(mutate, pattern):
    items = entries(make_labels([0.1, 0.2, 0.3]))
    mutate(items[2][1])
    with pytest.raises(DatasetError, match=r"^" + WHERE + r": labels\['img02.png'\]: " + pattern):
        validate(items)


def test_small_deviations_are_tolerated():
    items = entries(make_labels([0.1]))
    items[0][1][0] += 2e-4
    items[0][1][18] += 5e-3
    validate(items)


def test_missing_extra_and_duplicate_paths():
    items = entries(make_labels([0.1, 0.2]), names=['a.png', 'b.png'])
    with pytest.raises(DatasetError, match=r"labels\['b.png'\]: no such image"):
        validate(items, names=['a.png'])
    with pytest.raises(DatasetError, match=r"image 'c.png' has no label"):
        validate(items, names=['a.png', 'b.png', 'c.png'])
    with pytest.raises(DatasetError, match=r"labels\['a.png'\]: duplicate path"):
        validate(items + items[:1])


@pytest.mark.parametrize('obj, pattern', [
    ([], r'expected an object \{"labels"'),
    ({'labels': None}, r'labels: expected a list'),
    ({'labels': [['a.png']]}, r'labels\[0\]: expected a \[path, \[31 floats\]\] pair'),
    ({'labels': [[3, [0.0] * 31]]}, r'labels\[0\]: expected a \[path'),
    ({'labels': [['a.png', {'x': 1}]]}, r"labels\['a.png'\]: expected a list of 31 numbers, got dict"),
])
def test_json_structure_errors(obj, pattern):
    with pytest.raises(DatasetError, match=r'^' + WHERE + ': ' + pattern):
        L.parse_labels_json(obj, WHERE)


def test_first_invalid_label_reports_first_row():
    labels = make_labels([0.1, 0.2, 0.3])
    assert L.first_invalid_label(labels) is None
    labels[2, 16] = -1
    labels[1, 18] = 0.9
    assert L.first_invalid_label(labels)[:2] == (1, 'intrinsics')
    labels[0, 27] = np.nan
    assert L.first_invalid_label(labels) == (0, 'pose', 'contains non-finite values')

