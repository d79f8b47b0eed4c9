"""Tests of the synthetic portrait generator: format, silhouettes, posing, mirroring, labels, yaws."""
import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from configs.schema import CameraConfig, SkeletonConfig
from portrait_data import labels, synthetic
from portrait_data.synthetic_figure import LANDMARK_NAMES, PRIMITIVE_NAMES
from portrait_data.synthetic_render import background
from training import cameras

FACE_PARTS = ('nose', 'sclera_l', 'sclera_r', 'iris_l', 'iris_r', 'brow_l', 'brow_r', 'lips')


def _batch(seed: int, num: int, yaws: str = 'uniform'):
    """Identities, cameras [num, 25] and poses [num, 6] from a seeded generator."""
    return synthetic.sample_batch(torch.Generator().manual_seed(seed), num, yaws)


def _frontal_cameras(generator: torch.Generator, num: int, spread: float = 0.4) -> torch.Tensor:
    """Cameras [num, 25] within `spread` radians of frontal in yaw and a little off level in pitch."""
    yaw = math.pi / 2 + spread * (2 * torch.rand(num, generator=generator, dtype=torch.float64) - 1)
    pitch = math.pi / 2 + 0.1 * (2 * torch.rand(num, generator=generator, dtype=torch.float64) - 1)
    return cameras.camera_vector(yaw, pitch)


def test_sample_format():
    samples = list(synthetic.generate(5, 32, seed=3))
    assert [s.name for s in samples] == [f'img{i:08d}.png' for i in range(5)]
    for s in samples:
        assert s.image.dtype == np.uint8 and s.image.shape == (32, 32, 3)
        assert s.mask.dtype == np.uint8 and s.mask.shape == (32, 32)
        assert set(np.unique(s.mask)) <= {0, 255}
        assert s.camera.dtype == np.float32 and s.camera.shape == (25,)
        assert s.pose.dtype == np.float32 and s.pose.shape == (6,)
        assert 0.1 < (s.mask > 0).mean() < 0.95


def test_generate_matches_render_of_its_labels():
    identity, camera, pose = synthetic.sample_batch(synthetic.batch_generator(7, 0), synthetic.GENERATION_BATCH)
    image, mask = synthetic.render(identity.select(slice(0, 3)), camera[:3], pose[:3], 32)
    for i, s in enumerate(synthetic.generate(3, 32, seed=7)):
        np.testing.assert_array_equal(s.camera, camera[i].numpy())
        np.testing.assert_array_equal(s.pose, pose[i].numpy())
        np.testing.assert_array_equal(s.mask, (mask[i, 0] * 255).to(torch.uint8).numpy())
        np.testing.assert_array_equal(s.image, (image[i] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy())


def test_mask_is_the_silhouette():
    identity, camera, pose = _batch(0, 6)
    image, mask = synthetic.render(identity, camera, pose, 48)
    hits = synthetic.trace(identity, camera, pose, 48)
    assert image.shape == (6, 3, 48, 48) and mask.shape == (6, 1, 48, 48)
    assert image.min() >= 0 and image.max() <= 1
    assert torch.equal(mask[:, 0] > 0, hits.index >= 0)
    assert torch.equal(mask.unique(), torch.tensor([0.0, 1.0]))
    assert torch.isfinite(hits.depth[hits.index >= 0]).all() and torch.isinf(hits.depth[hits.index < 0]).all()
    backdrop = background(identity, 48)
    outside = (mask == 0).expand_as(image)
    assert torch.equal(image[outside], backdrop[outside])
    # The figure is shaded, not pasted background: most foreground pixels differ from it.
    inside = (mask > 0).expand_as(image)
    assert ((image - backdrop).abs()[inside] > 1 / 255).float().mean() > 0.9


def _chain_scipy(points: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Independent kinematic chain: R_neck (R_head (x - j_head) + j_head - j_neck) + j_neck."""
    skeleton = SkeletonConfig()
    j_neck, j_head = np.array(skeleton.neck_joint), np.array(skeleton.head_joint)
    r_neck = Rotation.from_rotvec(pose[:3]).as_matrix()
    r_head = Rotation.from_rotvec(pose[3:]).as_matrix()
    return ((points - j_head) @ r_head.T + j_head - j_neck) @ r_neck.T + j_neck


def test_landmarks_follow_the_kinematic_chain():
    identity, _, pose = _batch(1, 8)
    pose[0] = torch.tensor([0.2, -0.3, 0.1, 0.15, 0.35, -0.05])      # a large, asymmetric pose
    posed = synthetic.posed_landmarks(identity, pose)
    assert set(posed) == set(LANDMARK_NAMES)
    for k, name in enumerate(LANDMARK_NAMES):
        for i in range(8):
            expected = _chain_scipy(identity.landmarks[i, k].numpy(), pose[i].double().numpy())
            np.testing.assert_allclose(posed[name][i].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize('head_yaw', [-0.5, 0.0, 0.5])
def test_rendered_nose_is_where_the_projection_says(head_yaw):
    generator = torch.Generator().manual_seed(2)
    identity, _, pose = synthetic.sample_batch(generator, 6)
    pose[:, :3] *= 0.5
    pose[:, 4] = head_yaw
    camera = _frontal_cameras(generator, 6)
    resolution = 128
    hits = synthetic.trace(identity, camera, pose, resolution)
    nose_index = PRIMITIVE_NAMES.index('nose')
    tip = synthetic.posed_landmarks(identity, pose)['nose_tip']
    tip_scipy = np.stack([_chain_scipy(identity.landmarks[i, LANDMARK_NAMES.index('nose_tip')].numpy(),
                                       pose[i].double().numpy()) for i in range(6)])
    np.testing.assert_allclose(tip.numpy(), tip_scipy, atol=1e-12)
    uv = cameras.project(torch.from_numpy(tip_scipy)[:, None].float(), camera)[:, 0]
    column, row = (uv * resolution).floor().long().unbind(-1)
    world2cam = torch.linalg.inv(cameras.unpack_camera(camera)[0].double())
    tip_depth = (world2cam[:, 2, :3] * torch.from_numpy(tip_scipy)).sum(-1) + world2cam[:, 2, 3]
    for i in range(6):
        assert hits.index[i, row[i], column[i]] == nose_index
        assert abs(hits.depth[i, row[i], column[i]] - tip_depth[i]) < 0.01   # metres; < 3 pixels


def test_head_yaw_moves_the_nose_across_the_image():
    identity = synthetic.sample_identity(torch.Generator().manual_seed(4), 1)
    camera = cameras.average_camera().repeat(2, 1)
    pose = torch.zeros(2, 6)
    pose[:, 1] = torch.tensor([-0.3, 0.3])   # neck yaw
    pose[:, 4] = torch.tensor([-0.3, 0.3])   # head yaw
    tip = synthetic.posed_landmarks(identity, pose)['nose_tip']
    u = cameras.project(tip[:, None].float(), camera)[:, 0, 0]
    # Turning the head toward +x (the figure's left, the viewer's right in a frontal view) moves the nose right.
    assert u[1] - u[0] > 0.15


def test_mirrored_sample_equals_render_with_mirrored_labels():
    identity, camera, pose = _batch(5, 8)
    pose[0] = torch.tensor([0.2, -0.3, 0.1, 0.15, 0.35, -0.05])
    for resolution in (32, 45):
        image, mask = synthetic.render(identity, camera, pose, resolution)
        mirrored, mirrored_mask = synthetic.render(identity, cameras.mirror_camera(camera),
                                                   cameras.mirror_pose(pose), resolution)
        assert torch.equal(mirrored_mask, mask.flip(-1))
        assert torch.equal(mirrored, image.flip(-1))


def test_canonical_figure_is_symmetric():
    identity = synthetic.sample_identity(torch.Generator().manual_seed(6), 3)
    mirror = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    for i, name in enumerate(PRIMITIVE_NAMES):
        partner = PRIMITIVE_NAMES.index(name.replace('_l', '_r') if '_l' in name else name.replace('_r', '_l'))
        torch.testing.assert_close(identity.centre[:, partner], identity.centre[:, i] @ mirror, rtol=0, atol=0)
        quad = identity.inv_axes[:, i].transpose(1, 2) @ identity.inv_axes[:, i]
        quad_partner = identity.inv_axes[:, partner].transpose(1, 2) @ identity.inv_axes[:, partner]
        torch.testing.assert_close(quad_partner, mirror @ quad @ mirror, rtol=0, atol=1e-12)
        assert torch.equal(identity.colour[:, partner], identity.colour[:, i])


def test_front_and_back_views_differ():
    identity = synthetic.sample_identity(torch.Generator().manual_seed(8), 4)
    camera = cameras.camera_vector(torch.tensor([math.pi / 2, -math.pi / 2]), math.pi / 2)
    face_indices = torch.tensor([PRIMITIVE_NAMES.index(name) for name in FACE_PARTS])
    for i in range(4):
        hits = synthetic.trace(identity.select([i]), camera, torch.zeros(2, 6), 64)
        front = {PRIMITIVE_NAMES[k] for k in hits.index[0].unique().tolist() if k >= 0}
        back = {PRIMITIVE_NAMES[k] for k in hits.index[1].unique().tolist() if k >= 0}
        assert {'nose', 'iris_l', 'iris_r', 'lips'} <= front
        assert not back & set(FACE_PARTS)
        assert 'hair' in back and 'hair' in front
        image, _ = synthetic.render(identity.select([i]), camera, torch.zeros(2, 6), 64)
        face = torch.isin(hits.index[0], face_indices)
        assert (image[0] - image[1]).abs().amax(0)[face].mean() > 0.1


def test_deterministic_per_seed_and_identities_differ():
    first = list(synthetic.generate(3, 24, seed=11))
    again = list(synthetic.generate(3, 24, seed=11))
    longer = list(synthetic.generate(70, 24, seed=11))
    other = list(synthetic.generate(3, 24, seed=12))
    for a, b, c, d in zip(first, again, longer, other):
        for field in ('image', 'mask', 'camera', 'pose'):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
            np.testing.assert_array_equal(getattr(a, field), getattr(c, field))
        assert not np.array_equal(a.image, d.image) and not np.array_equal(a.camera, d.camera)
    ids = [synthetic.sample_identity(torch.Generator().manual_seed(s), 1) for s in (0, 1)]
    assert not torch.equal(ids[0].colour, ids[1].colour)
    assert not torch.equal(ids[0].centre, ids[1].centre)


def test_labels_validate():
    samples = list(synthetic.generate(6, 16, seed=13, yaw_distribution='front-heavy'))
    stacked = np.stack([labels.join_label(s.camera, s.pose) for s in samples])
    assert labels.first_invalid_label(stacked) is None
    names = [s.name for s in samples]
    obj = labels.checked_labels_json(dict(zip(names, stacked)), 'synthetic')
    assert len(obj['labels']) == 6
    yaw_pitch = cameras.yaw_pitch_of(torch.from_numpy(stacked[:, :16]).reshape(-1, 4, 4).double())
    assert (yaw_pitch[:, 1] - math.pi / 2).abs().max() <= synthetic.PITCH_LIMIT + 1e-4
    intrinsics = cameras.intrinsics(CameraConfig().focal, CameraConfig().principal).reshape(1, 9).numpy()
    np.testing.assert_array_equal(stacked[:, 16:25], intrinsics.repeat(6, 0))


def test_dataset_tool_writes_what_generate_yields(tmp_path):
    from click.testing import CliRunner

    import dataset_tool
    from portrait_data.portrait import PortraitDataset
    dest, seg_dest = str(tmp_path / 'images.zip'), str(tmp_path / 'masks.zip')
    result = CliRunner().invoke(dataset_tool.main, ['synthetic', f'--dest={dest}', f'--seg-dest={seg_dest}',
                                                    '--count=4', '--resolution=16', '--seed=21'])
    assert result.exit_code == 0, result.output
    dataset = PortraitDataset(dest, seg_dest)
    samples = list(synthetic.generate(4, 16, seed=21))
    for k, s in enumerate(samples):
        image, mask, camera, pose = dataset[k]
        np.testing.assert_array_equal(image.transpose(1, 2, 0), s.image)
        np.testing.assert_array_equal(mask[0], s.mask)
        np.testing.assert_allclose(camera, s.camera, rtol=0, atol=1e-7)
        np.testing.assert_allclose(pose, s.pose, rtol=0, atol=1e-7)


def test_yaw_coverage():
    generator = torch.Generator().manual_seed(9)
    uniform = synthetic.sample_yaws(generator, 200, 'uniform')
    assert uniform.min() >= -math.pi and uniform.max() < math.pi
    octants = ((uniform + math.pi) // (math.pi / 4)).long()
    assert set(octants.tolist()) == set(range(8))
    heavy = synthetic.sample_yaws(generator, 2000, 'front-heavy')
    assert heavy.min() >= -math.pi and heavy.max() < math.pi
    front = ((heavy - math.pi / 2).abs() < math.pi / 4).sum()
    back = ((heavy + math.pi / 2).abs() < math.pi / 4).sum()
    assert front > 2 * back > 0
    with pytest.raises(ValueError, match='yaw_distribution'):
        synthetic.generate(1, 16, yaw_distribution='gaussian')


def test_pose_ranges():
    pose = synthetic.sample_poses(torch.Generator().manual_seed(10), 2000)
    total = pose[:, :3] + pose[:, 3:]
    limit = torch.tensor(synthetic.HEAD_ROTATION_LIMIT_DEG, dtype=torch.float64).deg2rad()
    assert (total.abs() <= limit + 1e-12).all()
    assert (total.abs().amax(0) > 0.9 * limit).all()
    share = (pose[:, :3].norm(dim=1) / total.norm(dim=1))
    assert share.min() >= synthetic.NECK_SHARE[0] - 1e-9 and share.max() <= synthetic.NECK_SHARE[1] + 1e-9
    assert abs(pose[:, 1].mean()) < 0.02 and abs(pose[:, 2].mean()) < 0.02   # symmetric under mirroring


def _reference_hit(identity, image: int, camera: np.ndarray, pose: np.ndarray, u: float, v: float):
    """Brute-force float64 numpy ray cast of one pixel (normalised coords u, v), posing with scipy:
    (primitive index or -1, camera depth)."""
    from portrait_data.synthetic_figure import CLIPPED, PRIMITIVE_GROUPS
    skeleton = SkeletonConfig()
    j_head, j_neck = np.array(skeleton.head_joint), np.array(skeleton.neck_joint)
    r_neck, r_head = Rotation.from_rotvec(pose[:3]).as_matrix(), Rotation.from_rotvec(pose[3:]).as_matrix()
    rigid = [(np.eye(3), np.zeros(3)), (r_neck, j_neck - r_neck @ j_neck),
             (r_neck @ r_head, r_neck @ (j_head - j_neck) + j_neck - r_neck @ r_head @ j_head)]
    cam2world, K = camera[:16].reshape(4, 4), camera[16:25].reshape(3, 3)
    origin = cam2world[:3, 3]
    direction = cam2world[:3, :3] @ np.array([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], 1.0])
    best = (-1, math.inf)
    for p in range(len(PRIMITIVE_NAMES)):
        if not identity.enabled[image, p]:
            continue
        rot, shift = rigid[PRIMITIVE_GROUPS[p]]
        inv_axes = identity.inv_axes[image, p].numpy() @ rot.T
        local_o = inv_axes @ (origin - (rot @ identity.centre[image, p].numpy() + shift))
        local_d = inv_axes @ direction
        a, b, e = local_d @ local_d, local_o @ local_d, local_o @ local_o - 1
        if a == 0 or b * b - a * e < 0:
            continue
        for t in sorted([(-b - math.sqrt(b * b - a * e)) / a, (-b + math.sqrt(b * b - a * e)) / a]):
            point = origin + t * direction
            keep = t > 0
            if CLIPPED.start <= p:
                c = p - CLIPPED.start
                normals = identity.clip_normal[image, c].numpy() @ rot.T
                offsets = identity.clip_offset[image, c].numpy() + normals @ shift
                keep = keep and bool((normals @ point >= offsets).all())
            if keep:
                if t < best[1]:
                    best = (p, t)
                break
    return best


def test_trace_matches_a_brute_force_float64_reference():
    identity, camera, pose = _batch(17, 4)
    resolution = 64
    hits = synthetic.trace(identity, camera, pose, resolution)
    rng = np.random.default_rng(0)
    agree = 0
    for _ in range(400):
        i, row, col = rng.integers(4), rng.integers(resolution), rng.integers(resolution)
        index, depth = _reference_hit(identity, i, camera[i].double().numpy(), pose[i].double().numpy(),
                                      (col + 0.5) / resolution, (row + 0.5) / resolution)
        if index == hits.index[i, row, col]:
            agree += 1
            if index >= 0:
                assert abs(depth - hits.depth[i, row, col].item()) < 1e-4   # metres (a pixel spans 6 mm)
    assert agree >= 398   # float32 per-ray arithmetic may flip a ray that grazes a silhouette
