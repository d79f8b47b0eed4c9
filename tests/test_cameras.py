"""Tests for training/cameras.py: look-at poses, intrinsics, projection and mirroring."""
import math

import pytest
import torch

from configs.schema import CameraConfig
from training import cameras

CFG = CameraConfig()
YAWS = torch.linspace(-math.pi + 0.01, math.pi - 0.01, 13)
PITCHES = torch.linspace(0.2, math.pi - 0.2, 7)


def grid():
    """All (yaw, pitch) pairs of the test grid as two flat tensors."""
    yaw, pitch = torch.meshgrid(YAWS, PITCHES, indexing='ij')
    return yaw.reshape(-1), pitch.reshape(-1)


def random_cameras(n, seed=0):
    """n random preset cameras [n, 25] all around the head."""
    g = torch.Generator().manual_seed(seed)
    yaw = (torch.rand(n, generator=g) * 2 - 1) * math.pi
    pitch = 0.3 + torch.rand(n, generator=g) * (math.pi - 0.6)
    return cameras.camera_vector(yaw, pitch, CFG)


def test_rotations_are_proper_and_orthonormal():
    m = cameras.look_at_pose(*grid(), CFG.lookat, CFG.radius).double()
    R = m[:, :3, :3]
    eye = torch.eye(3, dtype=R.dtype).expand_as(R)
    assert torch.allclose(R.transpose(1, 2) @ R, eye, atol=1e-6)
    assert torch.allclose(torch.linalg.det(R), torch.ones(len(R), dtype=R.dtype), atol=1e-6)
    assert torch.equal(m[:, 3], torch.tensor([0.0, 0, 0, 1], dtype=m.dtype).expand(len(m), 4))


def test_centre_on_preset_sphere_and_looks_at_lookat():
    m = cameras.look_at_pose(*grid(), CFG.lookat, CFG.radius)
    centre = m[:, :3, 3]
    assert torch.allclose(centre.norm(dim=1), torch.full((len(m),), CFG.radius), atol=1e-5)
    to_target = torch.nn.functional.normalize(torch.tensor(CFG.lookat) - centre, dim=1)
    assert torch.allclose(m[:, :3, 2], to_target, atol=1e-6)


def test_lookat_projects_to_principal_point():
    c = cameras.camera_vector(*grid(), CFG)
    target = torch.tensor(CFG.lookat).expand(len(c), 1, 3)
    uv = cameras.project(target, c)
    assert torch.allclose(uv, torch.full_like(uv, CFG.principal), atol=1e-5)


def test_opencv_axes_of_frontal_camera():
    """Seen from the front, world +x is image right and world +y (up) is image up (v smaller)."""
    c = cameras.average_camera(CFG)
    base = torch.tensor(CFG.lookat)
    points = torch.stack([base, base + torch.tensor([0.05, 0, 0]), base + torch.tensor([0, 0.05, 0])])[None]
    uv = cameras.project(points, c)[0]
    assert uv[1, 0] > uv[0, 0] + 0.05 and abs(uv[1, 1] - uv[0, 1]) < 1e-5
    assert uv[2, 1] < uv[0, 1] - 0.05 and abs(uv[2, 0] - uv[0, 0]) < 1e-5
    distance = math.dist(c[0, [3, 7, 11]].tolist(), CFG.lookat)
    assert uv[1, 0] - uv[0, 0] == pytest.approx(CFG.focal * 0.05 / distance, rel=1e-3)


def test_yaw_landmarks():
    """yaw pi/2 puts the camera on +z (front), 0 on -x, -pi/2 on -z (back)."""
    centres = cameras.look_at_pose(torch.tensor([math.pi / 2, 0.0, -math.pi / 2]), math.pi / 2, CFG.lookat, CFG.radius)[:, :3, 3]
    expected = torch.tensor([[0, 0, CFG.radius], [-CFG.radius, 0, 0], [0, 0, -CFG.radius]])
    assert torch.allclose(centres, expected, atol=1e-5)


def test_yaw_pitch_of_inverts_look_at_pose():
    yaw, pitch = grid()
    m = cameras.look_at_pose(yaw, pitch, CFG.lookat, CFG.radius)
    assert torch.allclose(cameras.yaw_pitch_of(m), torch.stack([yaw, pitch], dim=1), atol=1e-5)


def test_average_camera_is_frontal_with_preset_tilt():
    """The frontal camera at (0, 0, radius) is pitched up by atan(lookat_y / radius) to the head joint."""
    assert math.degrees(math.atan2(CFG.lookat[1], CFG.radius)) == pytest.approx(1.377, abs=1e-3)
    for cfg in (CFG, CameraConfig(radius=3.0, lookat=(0.0, 0.12, 0.0))):
        c = cameras.average_camera(cfg)[0].double()
        R = c[:16].reshape(4, 4)[:3, :3]
        tilt = math.atan2(cfg.lookat[1], cfg.radius)
        expected = torch.tensor([[1.0, 0, 0],
                                 [0, -math.cos(tilt), math.sin(tilt)],
                                 [0, -math.sin(tilt), -math.cos(tilt)]], dtype=R.dtype)
        assert torch.allclose(R, expected, atol=1e-6)
        assert torch.allclose(c[[3, 7, 11]], torch.tensor([0, 0, cfg.radius], dtype=c.dtype), atol=1e-6)
        assert torch.allclose(c[16:], torch.tensor([cfg.focal, 0, 0.5, 0, cfg.focal, 0.5, 0, 0, 1], dtype=c.dtype))


def test_fov_focal_round_trip():
    assert cameras.focal_to_fov_deg(CFG.focal) == pytest.approx(8.78, abs=0.01)
    assert cameras.fov_deg_to_focal(cameras.focal_to_fov_deg(CFG.focal)) == pytest.approx(CFG.focal, rel=1e-12)
    assert cameras.fov_deg_to_focal(90.0) == pytest.approx(0.5)
    with pytest.raises(ValueError, match='fov_deg'):
        cameras.fov_deg_to_focal(0.0)


def test_pack_unpack_round_trip():
    c = random_cameras(5)
    cam2world, K = cameras.unpack_camera(c)
    assert torch.equal(cameras.pack_camera(cam2world, K), c)
    with pytest.raises(ValueError, match='camera vectors'):
        cameras.unpack_camera(c[:, :20])


def test_mirror_is_an_involution():
    c = random_cameras(16)
    pose = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    full = torch.cat([c, pose], dim=1)
    assert torch.equal(cameras.mirror_camera(cameras.mirror_camera(c)), c)
    assert torch.equal(cameras.mirror_pose(cameras.mirror_pose(pose)), pose)
    assert torch.equal(cameras.mirror_camera(cameras.mirror_camera(full)), full)
    assert torch.equal(cameras.mirror_camera(full)[:, 25:], cameras.mirror_pose(pose))
    assert not torch.allclose(cameras.mirror_camera(c), c)


def test_mirrored_camera_is_proper_and_mirrors_yaw():
    yaw, pitch = grid()
    m = cameras.mirror_cam2world(cameras.look_at_pose(yaw, pitch, CFG.lookat, CFG.radius)).double()
    assert torch.allclose(torch.linalg.det(m[:, :3, :3]), torch.ones(len(m), dtype=m.dtype), atol=1e-6)
    mirrored_yaw = torch.remainder(math.pi - yaw + math.pi, 2 * math.pi) - math.pi
    assert torch.allclose(cameras.yaw_pitch_of(m)[:, 0].float(), mirrored_yaw, atol=1e-5)


def test_mirror_matches_horizontal_image_flip():
    """Project X with c, flip the image (u -> 1 - u) == project (-x, y, z) with the mirrored c."""
    c = random_cameras(8, seed=3)
    points = (torch.randn(8, 50, 3, generator=torch.Generator().manual_seed(4)) * 0.15) + torch.tensor(CFG.lookat)
    uv = cameras.project(points, c)
    uv_mirror = cameras.project(points * torch.tensor([-1.0, 1, 1]), cameras.mirror_camera(c))
    assert torch.allclose(uv_mirror[..., 0], 1 - uv[..., 0], atol=1e-5)
    assert torch.allclose(uv_mirror[..., 1], uv[..., 1], atol=1e-5)


def test_mirror_pose_negates_y_and_z():
    pose = torch.arange(1.0, 7.0)[None]
    assert torch.equal(cameras.mirror_pose(pose), torch.tensor([[1.0, -2, -3, 4, -5, -6]]))
    with pytest.raises(ValueError, match='pose'):
        cameras.mirror_pose(torch.zeros(1, 5))
