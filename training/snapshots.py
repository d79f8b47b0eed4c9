"""Image snapshots of a run (system.md §1.4): `reals.png` at the start, `fakes{kimg:06d}*.png` at image ticks.

The grid (gw x gh cells) is fixed for the whole run and deterministic: its dataset items and
latent codes come from generators seeded by the run's seed. Consecutive cells (0, 1), (2, 3), ...
share one z, so each pair shows one identity from two dataset cameras. For every cell:
  fakes{kimg}.png            G_ema's image, posed with the pose G's pose branch gives (z, cell camera);
  fakes{kimg}_raw.png        the raw (neural rendering resolution) image;
  fakes{kimg}_depth.png      its depth (near = bright, scaled over the grid);
  fakes{kimg}_mask.png       its opacity (white = foreground);
  fakes{kimg}_canonical.png  the canonical avatar (no body warp);
  poses{kimg}.png            body poses of the first cells (pose_picture.py): dataset pose of the real,
                             D's estimate on the real, D's estimate on the fake, G's pose branch.
The mapping is conditioned on the frontal camera of the preset (training.cameras.average_camera)
and the zero pose, as in the original's snapshots; rendering uses each cell's camera.
"""
import math
import os
from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
import PIL.Image
import torch

from torch_utils.checkpoint import atomic_write
from training import pose_picture
from training.cameras import average_camera
from training.loss import real_inputs
from training.networks.symmetry import POSE_DIM

GRID_PIXELS = (7680, 4320)       # EG3D's grid budget (width, height) in pixels ...
GRID_MAX_CELLS = (16, 8)         # ... and at most this many columns and rows (a CPU-friendly 128 cells)
POSE_COLUMNS = 8                 # cells shown in the pose picture
POSE_PANEL = 128                 # pixels per pose-picture panel
TAG_GRID = 1_000_003             # seed offset of the grid's generator (independent of the data stream)


def grid_shape(resolution: int, num_items: int) -> Tuple[int, int]:
    """(gw, gh): EG3D's pixel budget and GRID_MAX_CELLS; for small datasets about twice as wide as high
    with no more cells than items."""
    gh = max(1, min(GRID_MAX_CELLS[1], GRID_PIXELS[1] // resolution, math.isqrt(num_items // 2)))
    gw = max(1, min(GRID_MAX_CELLS[0], GRID_PIXELS[0] // resolution, num_items // gh))
    return gw, gh


@dataclass
class SnapshotGrid:
    """The fixed snapshot cells: reals (image uint8 [n, 3, R, R], mask uint8 [n, 1, R, R], camera [n, 25],
    pose [n, 6]) of dataset items `items` [n], and z [n, z_dim] with z[2k] == z[2k + 1]."""
    shape: Tuple[int, int]
    items: np.ndarray
    image: torch.Tensor
    mask: torch.Tensor
    camera: torch.Tensor
    pose: torch.Tensor
    z: torch.Tensor


def make_grid(dataset, seed: int, z_dim: int) -> SnapshotGrid:
    """The grid of a run: items drawn without replacement, z in identical pairs, all from `seed`."""
    gw, gh = grid_shape(dataset.resolution, len(dataset))
    rng = np.random.default_rng([TAG_GRID, seed])
    items = rng.choice(len(dataset), size=gw * gh, replace=False)
    image, mask, camera, pose = (torch.from_numpy(np.stack(a)) for a in zip(*[dataset[int(i)] for i in items]))
    z = torch.from_numpy(rng.standard_normal(((gw * gh + 1) // 2, z_dim), dtype=np.float32))
    return SnapshotGrid((gw, gh), items, image, mask, camera, pose, z.repeat_interleave(2, dim=0)[:gw * gh])


def grid_image(images: torch.Tensor, low: float, high: float, shape: Tuple[int, int]) -> np.ndarray:
    """images [gw * gh, C, H, W] with values in [low, high] -> uint8 [gh * H, gw * W, C] (or [.., ..] for C = 1)."""
    gw, gh = shape
    x = ((images.detach().float().cpu() - low) * (255 / (high - low))).round().clamp(0, 255).to(torch.uint8)
    _, channels, height, width = x.shape
    x = x.reshape(gh, gw, channels, height, width).permute(0, 3, 1, 4, 2).reshape(gh * height, gw * width, channels)
    return x[..., 0].numpy() if channels == 1 else x.numpy()


def save_png(path: str, array: np.ndarray) -> None:
    """Atomically write a uint8 [H, W] or [H, W, 3] array as a PNG."""
    with atomic_write(path) as file:
        PIL.Image.fromarray(array).save(file, format='PNG')


def write_reals(path: str, grid: SnapshotGrid) -> None:
    """reals.png: the grid's real images."""
    save_png(path, grid_image(grid.image, 0, 255, grid.shape))


def _real_input(grid: SnapshotGrid, rows: slice, nrr: int, device: torch.device) -> Dict[str, torch.Tensor]:
    """D's input dict for the reals of `rows`, prepared as in training (training.loss.real_inputs)."""
    image = grid.image[rows].to(device, torch.float32) / 127.5 - 1
    return real_inputs(image, grid.mask[rows].to(device, torch.float32) / 255, nrr, requires_grad=False)


@torch.no_grad()
def render_grid(G, D, grid: SnapshotGrid, blur_sigma: float, batch: int,
                device: torch.device) -> Dict[str, torch.Tensor]:
    """Render every cell with G (posed and canonical) and let D estimate poses; returns CPU tensors by name."""
    out = {}
    for start in range(0, len(grid.items), batch):
        rows = slice(start, start + batch)
        z, c = grid.z[rows].to(device), grid.camera[rows].to(device)
        cond = average_camera().to(device).expand(z.shape[0], -1)
        ws = G.mapping(z, cond, torch.zeros(z.shape[0], POSE_DIM, device=device))
        pose = G.get_pose_params(z, c)
        posed = G.synthesis(ws, c, pose, apply_def=True, noise_mode='const')
        canonical = G.synthesis(ws, c, pose, apply_def=False, noise_mode='const')
        nrr = posed['image_raw'].shape[-1]
        parts = dict(image=posed['image'], raw=posed['image_raw'], depth=posed['image_depth'],
                     mask=posed['image_mask'], canonical=canonical['image'], pose_G=pose,
                     pose_D_fake=D.predict_pose(posed, c, blur_sigma=blur_sigma),
                     pose_D_real=D.predict_pose(_real_input(grid, rows, nrr, device), c, blur_sigma=blur_sigma))
        for key, value in parts.items():
            out.setdefault(key, []).append(value.float().cpu())
    return {key: torch.cat(values) for key, values in out.items()}


def write_fakes(run_dir: str, kimg: int, G, D, body, grid: SnapshotGrid, blur_sigma: float, batch: int,
                device: torch.device) -> None:
    """fakes{kimg:06d}.png and its _raw, _depth, _mask, _canonical variants, and poses{kimg:06d}.png.

    G: the generator to show (G_ema), D: the discriminator whose pose predictor is shown, body: G's
    BodyModel; blur_sigma: D's current input blur; batch: cells rendered at once.
    """
    r = render_grid(G, D, grid, blur_sigma, batch, device)
    stem = os.path.join(run_dir, f'fakes{kimg:06d}')
    save_png(f'{stem}.png', grid_image(r['image'], -1, 1, grid.shape))
    save_png(f'{stem}_raw.png', grid_image(r['raw'], -1, 1, grid.shape))
    near, far = float(r['depth'].min()), float(r['depth'].max())
    depth = (far - r['depth']) / (far - near) if far > near else torch.zeros_like(r['depth'])
    save_png(f'{stem}_depth.png', grid_image(depth, 0, 1, grid.shape))
    save_png(f'{stem}_mask.png', grid_image(r['mask'], 0, 1, grid.shape))
    save_png(f'{stem}_canonical.png', grid_image(r['canonical'], -1, 1, grid.shape))
    cells = slice(0, min(POSE_COLUMNS, len(grid.items)))
    rows = [('dataset', grid.pose[cells]), ('D(real)', r['pose_D_real'][cells]),
            ('D(fake)', r['pose_D_fake'][cells]), ('G branch', r['pose_G'][cells])]
    save_png(os.path.join(run_dir, f'poses{kimg:06d}.png'), pose_picture.pose_picture(body, rows, POSE_PANEL))
