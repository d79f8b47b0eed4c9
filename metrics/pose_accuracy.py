"""Body-pose accuracy of D's pose predictor (new; system.md §4.2, §9), in degrees per joint and overall.

The error of a joint is the rotation angle of R_pred^T R_true, the geodesic distance between the
predicted and the true rotation (axis-angle inputs, 0..180 degrees). It is computed through unit
quaternions in float64, accurate for small errors too (arccos of the trace is not).
  pose_err_real: P_D on real images (with their masks, prepared as in training) against the
                 dataset's pose labels (ground truth on the synthetic dataset);
  pose_err_fake: P_D on generated images against the pose they were rendered with.
Results: {name: mean over joints and samples, name_neck: ..., name_head: ...}.
"""
import numpy as np
import torch

from metrics import feature_stats
from metrics.generation import generate_batch, predict_pose_padded
from metrics.options import MetricOptions
from metrics.real_data import d_real_input, load_items, subset_indices

JOINTS = ('neck', 'head')             # the 6 pose numbers: neck axis-angle, then head axis-angle
POSE_REAL_MAX_ITEMS = 10000           # pose_err_real: at most this many real images (seeded subset)
POSE_FAKE_NUM_GEN = 2000              # pose_err_fake: generated images unless num_gen overrides


def axis_angle_to_quaternion(axis_angle: np.ndarray) -> np.ndarray:
    """Axis-angle [..., 3] (radians) -> unit quaternions [..., 4] as (w, x, y, z), float64."""
    v = np.asarray(axis_angle, dtype=np.float64)
    angle = np.linalg.norm(v, axis=-1, keepdims=True)
    half_sinc = 0.5 * np.sinc(angle / (2 * np.pi))          # sin(angle / 2) / angle, 0.5 at angle 0
    return np.concatenate([np.cos(angle / 2), v * half_sinc], axis=-1)


def rotation_angle_deg(pred_axis_angle: np.ndarray, true_axis_angle: np.ndarray) -> np.ndarray:
    """Angle (degrees) of R_pred^T R_true for axis-angles [..., 3] -> [...]."""
    p, t = axis_angle_to_quaternion(pred_axis_angle), axis_angle_to_quaternion(true_axis_angle)
    w = (p * t).sum(axis=-1)                                                    # real part of conj(p) t
    xyz = p[..., :1] * t[..., 1:] - t[..., :1] * p[..., 1:] - np.cross(p[..., 1:], t[..., 1:])
    return np.degrees(2 * np.arctan2(np.linalg.norm(xyz, axis=-1), np.abs(w)))


def pose_errors_deg(pred: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
    """Poses [N, 6] (neck, head axis-angle) -> per-joint angle errors float64 [N, 2] in degrees."""
    pred = pred.detach().cpu().double().numpy().reshape(-1, len(JOINTS), 3)
    true = true.detach().cpu().double().numpy().reshape(-1, len(JOINTS), 3)
    return torch.from_numpy(rotation_angle_deg(pred, true))


def summarize(name: str, errors) -> dict:
    """Per-joint errors [N, 2] -> {name: overall mean, name_neck: mean, name_head: mean} (degrees)."""
    errors = np.asarray(errors, dtype=np.float64)
    results = {name: float(errors.mean())}
    results.update({f'{name}_{joint}': float(errors[:, k].mean()) for k, joint in enumerate(JOINTS)})
    return results


@torch.no_grad()
def pose_err_real(opts: MetricOptions, max_items: int = POSE_REAL_MAX_ITEMS) -> dict:
    """P_D on (a seeded subset of at most `max_items`) real images vs their pose labels."""
    D = opts.require_D('pose_err_real')
    dataset = opts.open_dataset(xflip=False)
    indices = subset_indices(len(dataset), max_items)
    gen = opts.generation

    def batch_errors(batch_index, start, stop):
        """Angle errors [n, 2] of real items indices[start:stop]."""
        images, masks, cameras, poses = load_items(dataset, indices[start:stop])
        real = d_real_input(images.to(opts.device), masks.to(opts.device), gen.neural_rendering_resolution)
        pred = predict_pose_padded(D, real, cameras.to(opts.device), gen.blur_sigma, opts.batch_size)
        return pose_errors_deg(pred, poses)

    return summarize('pose_err_real', feature_stats.distributed_map(len(indices), opts.batch_size, opts.ctx,
                                                                    batch_errors))


@torch.no_grad()
def pose_err_fake(opts: MetricOptions, num_gen: int = POSE_FAKE_NUM_GEN) -> dict:
    """P_D on generated images (cameras from the x-flipped real set) vs the poses they were rendered with."""
    D = opts.require_D('pose_err_fake')
    dataset = opts.open_dataset(xflip=True)
    gen = opts.generation

    def batch_errors(batch_index, start, stop):
        """Angle errors [n, 2] of generated batch `batch_index`."""
        out = generate_batch(opts.G, opts.generation_D(), dataset, batch_index, stop - start, gen, opts.device)
        fake = dict(image=out['image'], image_raw=out['image_raw'], image_mask=out['image_mask'])
        pred = predict_pose_padded(D, fake, out['c'], gen.blur_sigma, opts.batch_size)
        return pose_errors_deg(pred, out['pose'])

    errors = feature_stats.distributed_map(opts.generated_count(num_gen), opts.batch_size, opts.ctx, batch_errors)
    return summarize('pose_err_fake', errors)
