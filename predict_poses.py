"""Predict the body pose of aligned real photos with D, and render fakes with each photo's camera and pose.

\b
    python predict_poses.py --network=snap.pkl --data=photos/ --masks=masks/ --outdir=out --seeds=0-2
    python predict_poses.py --network=snap.pkl --data=data/images.zip --masks=data/masks.zip --outdir=out

\b
The original's gen_samples_with_pose_prediction.py. Input: --data, a folder or zip of aligned
photos (PNG/JPEG, RGB or grayscale, square, at D's resolution) with dataset.json at its root:
{"labels": [[path, [25 camera floats]], ...]}; 31-float labels (a training set made by
dataset_tool.py) also work, their 6 pose floats are ignored. --masks: a folder or zip of
single-channel masks (255 = person) paired by relative path, as for training (docs/dataset.md).
For each photo, D's pose predictor (D_ema if the snapshot has it, else D) estimates the body pose
(neck and head axis-angle) from the photo, its mask and its camera, preparing the input as in
training: the raw image and mask are the photo and mask resized to the neural rendering
resolution, blurred by blur_sigma, both from the snapshot's pose_predict_kwargs (defaults: no
blur, G's resolution). Photos are predicted one at a time, so a pose does not depend on the
other photos. Then, per seed, G_ema renders the posed avatar from the photo's camera with that
pose (the mapping is conditioned on the average frontal camera and the same pose).

\b
Output (into --outdir; every file written atomically):
  <path without extension>.png  the photo, then one fake per seed, side by side;
  poses.json                    {path: [6 floats]} for every photo, written last.
Every photo and mask is read and checked before anything is rendered.
"""
import json
import os
import posixpath
from dataclasses import dataclass
from typing import Dict, List

import click
import numpy as np
import torch
from tqdm import tqdm

from cli_utils import (SeedList, generator_of, load_network_data, make_outdir, parse_device, save_png,
                       side_by_side)
from portrait_data import images as img_io
from portrait_data.archive import Archive
from portrait_data.errors import DatasetError
from portrait_data.labels import CAMERA_DIM, LABEL_DIM, LABELS_FILE, POSE_DIM, parse_labels_json, validate_labels
from portrait_data.portrait import load_labels_json
from torch_utils.checkpoint import atomic_write
from training.cameras import average_camera
from training.loss import real_inputs

POSES_FILE = 'poses.json'


@dataclass(frozen=True)
class RealImages:
    """Aligned photos and their masks, paired by relative path, with cameras {path: float32 [25]}."""
    images: Archive
    masks: Archive
    names: List[str]
    mask_names: List[str]
    cameras: Dict[str, np.ndarray]


def _camera_entry(entry, where):
    """A dataset.json [path, values] entry with its values cut to the camera and padded by a zero pose."""
    if isinstance(entry, (list, tuple)) and len(entry) == 2 and isinstance(entry[1], list):
        if len(entry[1]) not in (CAMERA_DIM, LABEL_DIM):
            raise DatasetError(f"{where}: labels['{entry[0]}']: expected {CAMERA_DIM} camera floats "
                               f'(or {LABEL_DIM}, camera + an ignored pose), got {len(entry[1])}')
        return [entry[0], entry[1][:CAMERA_DIM] + [0.0] * POSE_DIM]
    return entry


def read_cameras(archive, names):
    """{path: camera float32 [25]} from dataset.json at the archive root, validated as training labels are."""
    where = archive.describe(LABELS_FILE)
    obj = load_labels_json(archive, 'the cameras are read from dataset.json at the root of --data')
    if isinstance(obj, dict) and isinstance(obj.get('labels'), list):
        obj = {'labels': [_camera_entry(entry, where) for entry in obj['labels']]}
    labels = validate_labels(parse_labels_json(obj, where), names, where)
    return {name: label[:CAMERA_DIM] for name, label in labels.items()}


def open_real_images(data, masks):
    """Index --data and --masks, read the cameras and pair every photo with its mask (DatasetError otherwise)."""
    images, mask_archive = Archive(data), Archive(masks)
    names = images.image_names()
    if not names:
        raise DatasetError(f'{images.path}: no PNG or JPEG images')
    cameras = read_cameras(images, names)
    mask_names = []
    for name in names:
        mask_name = img_io.mask_name_for(name, mask_archive)
        if mask_name is None:
            raise DatasetError(f"{images.describe(name)}: no mask '{name}' in {mask_archive.path}")
        mask_names.append(mask_name)
    return RealImages(images, mask_archive, names, mask_names, cameras)


def load_pair(real, k, resolution):
    """(image uint8 [R, R, 3], mask uint8 [R, R]) of photo k; DatasetError naming the file on any problem."""
    name, mask_name = real.names[k], real.mask_names[k]
    where, mask_where = real.images.describe(name), real.masks.describe(mask_name)
    with real.images.open(name) as f:
        mode, size = img_io.probe(f, where)
    img_io.image_channels(mode, where)
    with real.masks.open(mask_name) as f:
        mask_mode, mask_size = img_io.probe(f, mask_where, 'mask')
    img_io.check_mask_mode(mask_mode, mask_where)
    if size != (resolution, resolution):
        raise DatasetError(f"{where}: image is {size[0]}x{size[1]}; the network's D takes {resolution}x{resolution}")
    if mask_size != size:
        raise DatasetError(f'{mask_where}: mask is {mask_size[0]}x{mask_size[1]} but its image is {size[0]}x{size[1]}')
    image = img_io.decode(real.images.read(name), where)
    mask = img_io.decode(real.masks.read(mask_name), mask_where, 'mask')
    return (np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image), mask


def real_d_input(image, mask, nrr, device):
    """D's input for one photo, prepared as for reals in training (training.loss.real_inputs): image [1, 3, R, R]
    in [-1, 1], image_raw and image_mask (mask / 255) resized to nrr."""
    img = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1
    seg = torch.from_numpy(np.array(mask)).to(device)[None, None].float() / 255
    return real_inputs(img, seg, nrr, requires_grad=False)


def pose_predictor(data, network_pkl):
    """D_ema (else D) of the snapshot if it has predict_pose; ClickException (one line) otherwise."""
    for key in ('D_ema', 'D'):
        if hasattr(data.get(key), 'predict_pose'):
            return data[key]
    raise click.ClickException(f'--network: {network_pkl}: no discriminator with a pose predictor '
                               '(D_ema or D with predict_pose)')


def predict_kwargs(data, G):
    """(blur_sigma, neural rendering resolution) from the snapshot's pose_predict_kwargs, else (0, G's)."""
    stored = data.get('pose_predict_kwargs') or {}
    return float(stored.get('blur_sigma', 0.0)), int(stored.get('neural_rendering_resolution',
                                                                G.neural_rendering_resolution))


def output_names(names):
    """Relative PNG path of each photo (extension replaced); DatasetError if two photos would share one."""
    outputs = [posixpath.splitext(name)[0] + '.png' for name in names]
    seen = {}
    for name, out in zip(names, outputs):
        if out in seen or out == POSES_FILE:
            raise DatasetError(f"'{name}' and '{seen.get(out, POSES_FILE)}' would both be written to {out}")
        seen[out] = name
    return outputs


def poses_json(poses):
    """JSON text of {path: [6 floats]}, one photo per line."""
    lines = [f' {json.dumps(name)}: {json.dumps(pose)}' for name, pose in poses.items()]
    return '{\n' + ',\n'.join(lines) + '\n}\n'


@torch.no_grad()
def render_fakes(G, seeds, camera, pose, opts):
    """Images [S, 3, R, R] of S seeds rendered from camera [1, 25] with pose [1, 6] (mapping: frontal camera + pose)."""
    z = np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in seeds])
    z = torch.from_numpy(z).float().to(camera.device)
    poses = pose.expand(len(seeds), -1)
    ws = G.mapping(z, average_camera().to(camera.device).expand(len(seeds), -1), pose_params=poses,
                   truncation_psi=opts['truncation_psi'], truncation_cutoff=opts['truncation_cutoff'])
    return G.synthesis(ws, camera.expand(len(seeds), -1), pose_params=poses, apply_def=True,
                       noise_mode='const')['image']


def predict_all(real, G, D, outdir, outputs, opts):
    """Predict, render and write each photo's side-by-side PNG; returns {path: [6 floats]}.

    opts: seeds, device, blur_sigma, nrr (of D's raw input), truncation_psi, truncation_cutoff.
    """
    poses = {}
    for k in tqdm(range(len(real.names)), desc='photos', unit='photo', disable=None):
        image, mask = load_pair(real, k, D.img_resolution)
        img = real_d_input(image, mask, opts['nrr'], opts['device'])
        camera = torch.from_numpy(real.cameras[real.names[k]])[None].to(opts['device'])
        with torch.no_grad():
            pose = D.predict_pose(img, camera, blur_sigma=opts['blur_sigma'])
        fakes = render_fakes(G, opts['seeds'], camera, pose, opts)
        path = os.path.join(outdir, *outputs[k].split('/'))
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_png(path, side_by_side(torch.cat([img['image'], fakes]), -1, 1))
        poses[real.names[k]] = [float(v) for v in pose[0]]
    return poses


@click.command(help=__doc__)
@click.option('--network', 'network_pkl', required=True, metavar='PATH|URL', help='Network snapshot (.pkl)')
@click.option('--data', required=True, type=click.Path(exists=True),
              help='Folder or zip of aligned photos with dataset.json (cameras)')
@click.option('--masks', required=True, type=click.Path(exists=True), help='Folder or zip of masks, paired by path')
@click.option('--outdir', required=True, type=click.Path(file_okay=False), help='Output folder (created)')
@click.option('--seeds', type=SeedList(), default='0', show_default=True, help="Seeds of the fakes, e.g. '0-2'")
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), default=14, show_default=True,
              help='Truncate the first N ws (N >= num_ws: all)')
@click.option('--device', default='auto', show_default=True, help="'auto', 'cpu', 'cuda[:N]' or 'mps'")
def main(network_pkl, data, masks, outdir, seeds, device, **opts):
    """Predict body poses of real photos (click help: the module docstring)."""
    device = parse_device(device)
    try:
        real = open_real_images(data, masks)
        outputs = output_names(real.names)
        snapshot = load_network_data(network_pkl, device)
        G, D = generator_of(snapshot, network_pkl), pose_predictor(snapshot, network_pkl)
        if G.img_resolution != D.img_resolution:
            raise click.ClickException(f'--network: {network_pkl}: G_ema renders {G.img_resolution}x{G.img_resolution} '
                                       f'but D takes {D.img_resolution}x{D.img_resolution}')
        for k in range(len(real.names)):
            load_pair(real, k, D.img_resolution)
        make_outdir(outdir)
        blur_sigma, nrr = predict_kwargs(snapshot, G)
        opts.update(seeds=seeds, device=device, blur_sigma=blur_sigma, nrr=nrr)
        poses = predict_all(real, G, D, outdir, outputs, opts)
    except DatasetError as err:
        raise click.ClickException(str(err)) from None
    with atomic_write(os.path.join(outdir, POSES_FILE), 'w') as f:
        f.write(poses_json(poses))
    click.echo(f'Predicted {len(poses)} poses; wrote {POSES_FILE} and {len(poses)} images to {outdir}')


if __name__ == '__main__':
    main()
