"""Explicit left/right symmetry helpers (training/networks/symmetry.py, system.md §2.6)."""
import math

import pytest
import torch

from training.cameras import camera_vector, mirror_camera, mirror_pose
from training.networks.symmetry import fold_camera, fold_images, flip_images, is_left, unfold_pose


def random_cameras(n, seed=0, min_abs_tx=1e-2):
    """n cameras [n, 25] on the portrait sphere, yaw all around, both sides, |t_x| >= min_abs_tx."""
    gen = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(4 * n, generator=gen) * 2 - 1) * math.pi
    pitch = math.pi / 2 + (torch.rand(4 * n, generator=gen) - 0.5)
    c = camera_vector(yaw, pitch)
    c = c[c[:, 3].abs() >= min_abs_tx][:n]
    assert c.shape[0] == n and (c[:, 3] > 0).any() and (c[:, 3] < 0).any()
    return c


def test_left_means_camera_on_plus_x():
    c = camera_vector(torch.tensor([math.pi, 0.0, math.pi / 2 + 0.3, math.pi / 2 - 0.3]), math.pi / 2)
    assert c[0, 3] > 0 and c[1, 3] < 0                     # yaw pi: camera on +x; yaw 0: on -x
    assert is_left(c).tolist() == [True, False, True, False]


def test_boundary_counts_as_left():
    c = random_cameras(3)
    c[0, 3], c[1, 3], c[2, 3] = 0.0, -0.0, -1e-7
    assert is_left(c).tolist() == [True, True, False]


def test_mirroring_swaps_sides_away_from_boundary():
    c = random_cameras(64)
    assert torch.equal(is_left(mirror_camera(c)), ~is_left(c))


def test_mirror_and_flip_are_involutions():
    c = random_cameras(16)
    img = torch.randn(16, 7, 8, 8)
    pose = torch.randn(16, 6)
    assert torch.equal(mirror_camera(mirror_camera(c)), c)
    assert torch.equal(flip_images(flip_images(img)), img)
    assert torch.equal(mirror_pose(mirror_pose(pose)), pose)
    left = is_left(c)
    assert torch.equal(fold_images(fold_images(img, left), left), img)
    assert torch.equal(unfold_pose(unfold_pose(pose, left), left), pose)


def test_fold_maps_every_camera_to_the_right_half():
    c = random_cameras(32)
    left = is_left(c)
    folded = fold_camera(c, left)
    assert (folded[:, 3] < 0).all()
    assert torch.equal(folded[~left], c[~left]) and torch.equal(folded[left], mirror_camera(c[left]))
    assert torch.equal(fold_camera(mirror_camera(c), ~left), folded)


def test_fold_images_and_unfold_pose_touch_left_samples_only():
    left = torch.tensor([True, False, True])
    img = torch.arange(3 * 2 * 2 * 3, dtype=torch.float32).reshape(3, 2, 2, 3)
    folded = fold_images(img, left)
    assert torch.equal(folded[1], img[1])
    assert torch.equal(folded[0], img[0, :, :, [2, 1, 0]]) and torch.equal(folded[2], img[2].flip(-1))
    pose = torch.randn(3, 6)
    unfolded = unfold_pose(pose, left)
    sign = torch.tensor([1.0, -1.0, -1.0, 1.0, -1.0, -1.0])
    assert torch.equal(unfolded[1], pose[1]) and torch.equal(unfolded[[0, 2]], pose[[0, 2]] * sign)


def test_bad_camera_shape_raises():
    with pytest.raises(ValueError, match=r'c: expected shape \[N, 25\]'):
        is_left(torch.zeros(2, 31))
