"""Rendering fakes for the metrics: cameras from the dataset, body poses from G's or D's predictor (system.md §4.4).

Every generated image k of a batch gets a random z, a camera c drawn uniformly from the dataset
items, and a body pose p by `pose_sample_mode`:
  'G_predict': p = P_G(z, c), G's pose branch on the SAME z that is rendered (the original
               predicted p from a fresh z, system.md §12 item 4);
  'D_predict': p = P_D(real item, c), D's pose predictor on the real image (with its mask) of the
               drawn item, prepared with the snapshot's pose_predict_kwargs (blur, NRR).
The fake is rendered from (c, p). The mapping network is conditioned on the same (c, p) when
`identical_c_p` (the training-time default), or on (c', p') of an independently drawn item with
the same pose rule (the original calc_metrics.py behaviour without the flag).

Randomness is a pure function of (seed, batch index): the same batch renders the same images in
any process of any world size.
"""
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from metrics.real_data import MetricInputError, d_real_input, load_items, load_labels

POSE_SAMPLE_MODES = ('G_predict', 'D_predict')


@dataclass(frozen=True)
class GenerationOptions:
    """How fakes are drawn. blur_sigma and neural_rendering_resolution prepare reals for D (pose_predict_kwargs);
    batch_size: the batch D always runs on (predict_pose_padded)."""
    pose_sample_mode: str = 'G_predict'
    identical_c_p: bool = True
    blur_sigma: float = 0.0
    neural_rendering_resolution: int = 64
    batch_size: int = 8
    seed: int = 0

    def __post_init__(self):
        if self.pose_sample_mode not in POSE_SAMPLE_MODES:
            raise MetricInputError(f'pose_sample_mode: expected one of {", ".join(POSE_SAMPLE_MODES)}, '
                                   f'got {self.pose_sample_mode!r}')


def batch_rng(seed: int, batch_index: int) -> np.random.Generator:
    """The random generator of one batch: a pure function of (seed, batch index)."""
    return np.random.default_rng([seed, batch_index])


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] -> uint8 0..255 (x * 127.5 + 128, clamped; the StyleGAN convention)."""
    return (images * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def predict_pose_padded(D, img: dict, c: torch.Tensor, blur_sigma: float, batch_size: int) -> torch.Tensor:
    """D.predict_pose of n <= batch_size samples, run on a batch padded to `batch_size` -> poses [n, 6].

    D's minibatch-std layer needs a batch that its group size divides, and it mixes statistics over
    the batch; so D always sees full batches (the samples repeated cyclically), like in training.
    """
    n = c.shape[0]
    if n < batch_size:
        index = torch.arange(batch_size, device=c.device) % n
        img, c = {key: value[index] for key, value in img.items()}, c[index]
    return D.predict_pose(img, c, blur_sigma=blur_sigma)[:n]


def predict_real_poses(D, dataset, indices, opts: GenerationOptions, device) -> Tuple[torch.Tensor, torch.Tensor]:
    """P_D on the real images and masks of dataset items -> (cameras [n, 25], poses [n, 6]) on `device`."""
    images, masks, cameras, _ = load_items(dataset, indices)
    real = d_real_input(images.to(device), masks.to(device), opts.neural_rendering_resolution)
    cameras = cameras.to(device)
    return cameras, predict_pose_padded(D, real, cameras, opts.blur_sigma, opts.batch_size)


def camera_and_pose(G, D, dataset, indices, z: torch.Tensor, opts: GenerationOptions):
    """(cameras [n, 25], poses [n, 6]) of dataset items for latents z [n, z_dim], by opts.pose_sample_mode."""
    if opts.pose_sample_mode == 'D_predict':
        return predict_real_poses(D, dataset, indices, opts, z.device)
    cameras = load_labels(dataset, indices)[0].to(z.device)
    return cameras, G.get_pose_params(z, cameras)


@torch.no_grad()
def generate_batch(G, D, dataset, batch_index: int, size: int, opts: GenerationOptions, device) -> dict:
    """Render batch `batch_index` of `size` fakes.

    Returns G's output dict (image [n, 3, R, R] in [-1, 1], image_raw, image_mask, ...) plus
    c [n, 25] and pose [n, 6], the camera and body pose the images were rendered with.
    """
    rng = batch_rng(opts.seed, batch_index)
    z = torch.from_numpy(rng.standard_normal((size, G.z_dim), dtype=np.float32)).to(device)
    items = rng.integers(len(dataset), size=size)
    cond_items = rng.integers(len(dataset), size=size)   # drawn in both modes: on/off share z and items
    c, pose = camera_and_pose(G, D, dataset, items, z, opts)
    c_map, pose_map = (c, pose) if opts.identical_c_p else camera_and_pose(G, D, dataset, cond_items, z, opts)
    ws = G.mapping(z, c_map, pose_params=pose_map)
    out = G.synthesis(ws, c, pose_params=pose)
    return dict(out, c=c, pose=pose)
