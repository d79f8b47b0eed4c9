"""Shared pieces of the metrics tests: a tiny synthetic dataset and recording stand-ins for G and D.

The stand-ins make the metric pipelines checkable against known answers: RecordingG renders
images that carry the body pose they were rendered with (pixels [0, 0, 0, :6] = pose / POSE_SCALE)
and records every call; StandInD reads that pose back from fakes and answers with the dataset
label of the camera for reals, each rotated by a known delta (composed with scipy).
"""
import numpy as np
import torch
from scipy.spatial.transform import Rotation

from metrics.standin_detector import POOL, StandInDetector
from portrait_data.portrait import PortraitDataset
from synthetic_testing import synthetic_zips

POSE_SCALE = 4.0      # pose values / POSE_SCALE stay inside the [-1, 1] image range
FAKE_MARK = 0.123456  # pixel value no real image has (reals are k / 127.5 - 1 for integer k)


def synthetic_dataset(folder, count=8, resolution=32, seed=0) -> dict:
    """Write the built-in synthetic set into `folder`; returns PortraitDataset kwargs (path, mask_path)."""
    dest, seg_dest = synthetic_zips(folder, count, resolution, seed)
    return dict(path=dest, mask_path=seg_dest)


def rotate_poses(poses: np.ndarray, delta: np.ndarray) -> np.ndarray:
    """Poses [N, 6] -> per joint axis-angle of R_pose R_delta (delta [6]: one axis-angle per joint)."""
    out = np.empty_like(poses, dtype=np.float64)
    for j in range(2):
        r = Rotation.from_rotvec(poses[:, 3 * j:3 * j + 3]) * Rotation.from_rotvec(delta[3 * j:3 * j + 3])
        out[:, 3 * j:3 * j + 3] = r.as_rotvec()
    return out


class RecordingG(torch.nn.Module):
    """Generator stand-in: pose branch = 0.3 tanh(z[:, :6] + c[:, 3:9]); images carry the rendering pose."""

    def __init__(self, img_resolution=32, neural_rendering_resolution=16, z_dim=8):
        super().__init__()
        self.img_resolution, self.z_dim = img_resolution, z_dim
        self.neural_rendering_resolution = neural_rendering_resolution
        self.calls = []

    def get_pose_params(self, z, c):
        self.calls.append(('get_pose_params', dict(z=z.clone(), c=c.clone())))
        return 0.3 * torch.tanh(z[:, :6] + c[:, 3:9])

    def mapping(self, z, c, pose_params=None, **kwargs):
        self.calls.append(('mapping', dict(z=z.clone(), c=c.clone(), pose_params=pose_params.clone())))
        return z[:, None, :]

    def synthesis(self, ws, c, pose_params=None, **kwargs):
        self.calls.append(('synthesis', dict(c=c.clone(), pose_params=pose_params.clone())))
        n, r, big = ws.shape[0], self.neural_rendering_resolution, self.img_resolution
        image = torch.tanh(ws[:, :, :3, None].expand(n, 1, 3, big * big).reshape(n, 3, big, big))
        image[:, 0, 0, :6] = pose_params / POSE_SCALE
        image[:, 1, 0, 0] = FAKE_MARK
        return dict(image=image, image_raw=image[:, :, :r, :r], image_mask=torch.ones(n, 1, r, r))

    def calls_of(self, method):
        return [kwargs for name, kwargs in self.calls if name == method]


class StandInD:
    """predict_pose of a known quality: on RecordingG's fakes (recognised by FAKE_MARK) the pose written in the
    image rotated by `fake_delta`; on reals the dataset pose of the camera rotated by `real_delta`. Records calls."""

    img_resolution = 32

    def __init__(self, dataset_kwargs, fake_delta=np.zeros(6), real_delta=np.zeros(6)):
        dataset = PortraitDataset(**dataset_kwargs, xflip=True)
        self.poses = {dataset.get_label(i).tobytes(): dataset.get_pose(i) for i in range(len(dataset))}
        self.fake_delta, self.real_delta = np.asarray(fake_delta, np.float64), np.asarray(real_delta, np.float64)
        self.calls = []

    def predict_pose(self, img, c, blur_sigma=0):
        fake = bool((img['image'][:, 1, 0, 0] == FAKE_MARK).all())
        self.calls.append(dict(kind='fake' if fake else 'real', img=img, c=c, blur_sigma=blur_sigma))
        if fake:
            return torch.from_numpy(rotate_poses((img['image'][:, 0, 0, :6] * POSE_SCALE).double().numpy(),
                                                 self.fake_delta)).float()
        true = np.stack([self.poses[row.numpy().astype(np.float32).tobytes()] for row in c])
        return torch.from_numpy(rotate_poses(true, self.real_delta)).float()

    def calls_of(self, kind):
        return [call for call in self.calls if call['kind'] == kind]


def standin_features_numpy(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """metrics/standin_detector.py's features computed with NumPy (float64): images uint8 [N, 3, H, W], H, W % 8 == 0."""
    projection = StandInDetector(seed).projection.double().numpy()
    n, c, h, w = images.shape
    pooled = images.astype(np.float64).reshape(n, c, POOL, h // POOL, POOL, w // POOL).mean(axis=(3, 5)) / 255
    return np.tanh(pooled.reshape(n, -1) @ projection)
