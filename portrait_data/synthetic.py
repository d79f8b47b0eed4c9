"""Synthetic 360-degree one-quarter-headshot portraits with ground-truth camera and body-pose labels.

Each image shows a new procedurally generated person (`synthetic_figure`), posed by a neck+head
body pose (`synthetic_pose`), seen by a look-at camera of the preset (`training.cameras`) whose
yaw covers all 360 degrees, and ray-cast analytically (`synthetic_render`). Labels follow the
dataset layout (system.md §2.2): camera = cam2world 4x4 (OpenCV axes) + normalised intrinsics,
pose = neck axis-angle then head axis-angle.

    for sample in generate(num_images=1000, resolution=64, seed=0, yaw_distribution='front-heavy'):
        sample.name, sample.image, sample.mask, sample.camera, sample.pose
"""
import math
from typing import Iterator, NamedTuple, Tuple

import numpy as np
import torch

from configs.schema import CameraConfig
from portrait_data.synthetic_figure import Identity, sample_identity
from portrait_data.synthetic_pose import posed_landmarks
from portrait_data.synthetic_render import render, trace
from training.cameras import camera_vector

__all__ = ['Sample', 'YAW_DISTRIBUTIONS', 'generate', 'batch_generator', 'sample_batch', 'sample_yaws',
           'sample_poses', 'sample_identity', 'render', 'trace', 'posed_landmarks']

YAW_DISTRIBUTIONS = ('uniform', 'front-heavy')
# 'front-heavy' (like 360°PHQ, system.md §6.5): (weight, mean, std) of wrapped normal peaks in
# the camera yaw (pi/2 = frontal, -pi/2 = back); the remaining weight is uniform over 360 degrees.
FRONT_HEAVY_PEAKS = ((0.6, math.pi / 2, 0.6), (0.2, -math.pi / 2, 0.6))
PITCH_STD = 0.12                    # camera polar angle: pi/2 + clipped normal noise (radians)
PITCH_LIMIT = 0.35
# Combined head rotation (axis-angle components about x, y, z = pitch, yaw, roll), degrees:
# clipped normals with std = limit / 2; a share of it goes to the neck, the rest to the head.
HEAD_ROTATION_LIMIT_DEG = (25.0, 40.0, 15.0)
NECK_SHARE = (0.3, 0.7)
GENERATION_BATCH = 64               # images drawn from one seeded generator (fixes the sequence)


class Sample(NamedTuple):
    """One synthetic training image: name (relative path), image uint8 [H, W, 3], mask uint8
    [H, W] (0 or 255), camera float32 [25], pose float32 [6]."""
    name: str
    image: np.ndarray
    mask: np.ndarray
    camera: np.ndarray
    pose: np.ndarray


def sample_yaws(generator: torch.Generator, num: int, distribution: str) -> torch.Tensor:
    """Camera yaws [num] in [-pi, pi) (pi/2 frontal) from 'uniform' or 'front-heavy'."""
    if distribution not in YAW_DISTRIBUTIONS:
        raise ValueError(f'yaw_distribution: expected one of {YAW_DISTRIBUTIONS}, got {distribution!r}')
    uniform = (torch.rand(num, generator=generator, dtype=torch.float64) * 2 - 1) * math.pi
    if distribution == 'uniform':
        return uniform
    weights = torch.tensor([w for w, _, _ in FRONT_HEAVY_PEAKS], dtype=torch.float64)
    weights = torch.cat([weights, 1 - weights.sum(0, keepdim=True)])
    component = torch.multinomial(weights, num, replacement=True, generator=generator)
    noise = torch.randn(num, generator=generator, dtype=torch.float64)
    yaw = uniform.clone()
    for k, (_, mean, std) in enumerate(FRONT_HEAVY_PEAKS):
        yaw = torch.where(component == k, mean + std * noise, yaw)
    return torch.remainder(yaw + math.pi, 2 * math.pi) - math.pi


def sample_poses(generator: torch.Generator, num: int) -> torch.Tensor:
    """Body poses [num, 6] (float64): a combined head rotation split between neck and head joints."""
    limit = torch.tensor(HEAD_ROTATION_LIMIT_DEG, dtype=torch.float64).deg2rad()
    total = (torch.randn(num, 3, generator=generator, dtype=torch.float64) * limit / 2).clamp(-limit, limit)
    low, high = NECK_SHARE
    share = low + (high - low) * torch.rand(num, 1, generator=generator, dtype=torch.float64)
    return torch.cat([share * total, (1 - share) * total], 1)


def sample_batch(generator: torch.Generator, num: int, yaw_distribution: str = 'uniform',
                 camera: CameraConfig = CameraConfig()) -> Tuple[Identity, torch.Tensor, torch.Tensor]:
    """`num` identities, cameras [num, 25] (float32) and poses [num, 6] (float32), drawn in a fixed order."""
    identity = sample_identity(generator, num)
    yaw = sample_yaws(generator, num, yaw_distribution)
    pitch_noise = torch.randn(num, generator=generator, dtype=torch.float64) * PITCH_STD
    pitch = math.pi / 2 + pitch_noise.clamp(-PITCH_LIMIT, PITCH_LIMIT)
    return identity, camera_vector(yaw, pitch, camera), sample_poses(generator, num).float()


def batch_generator(seed: int, batch: int) -> torch.Generator:
    """The generator of batch `batch` of seed `seed` (independent streams via numpy's SeedSequence)."""
    state = np.random.SeedSequence([seed, batch]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float images [..., C, H, W] in [0, 1] to uint8 numpy [..., H, W, C]."""
    return (x * 255).round().clamp(0, 255).to(torch.uint8).movedim(-3, -1).numpy()


def _samples(num_images: int, resolution: int, seed: int, yaw_distribution: str) -> Iterator[Sample]:
    """The sample stream behind `generate` (arguments already checked)."""
    for batch, start in enumerate(range(0, num_images, GENERATION_BATCH)):
        identity, camera, pose = sample_batch(batch_generator(seed, batch), GENERATION_BATCH, yaw_distribution)
        count = min(GENERATION_BATCH, num_images - start)
        images, masks = render(identity.select(slice(0, count)), camera[:count], pose[:count], resolution)
        images, masks = _to_uint8(images), _to_uint8(masks)[..., 0]
        for i in range(count):
            yield Sample(f'img{start + i:08d}.png', images[i], masks[i], camera[i].numpy(), pose[i].numpy())


def generate(num_images: int, resolution: int, seed: int = 0, yaw_distribution: str = 'uniform') -> Iterator[Sample]:
    """`num_images` synthetic portraits at `resolution`^2, deterministic per `seed`.

    Sample i depends only on (seed, i, resolution, yaw_distribution): a longer run extends a
    shorter one. Names are 'img%08d.png'. Raises ValueError at the call for bad arguments.
    """
    if num_images < 0:
        raise ValueError(f'num_images: expected a non-negative count, got {num_images}')
    if resolution < 1:
        raise ValueError(f'resolution: expected a positive image size, got {resolution}')
    if yaw_distribution not in YAW_DISTRIBUTIONS:
        raise ValueError(f'yaw_distribution: expected one of {YAW_DISTRIBUTIONS}, got {yaw_distribution!r}')
    return _samples(num_images, resolution, seed, yaw_distribution)
