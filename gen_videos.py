"""Render videos of a grid of seeds from a network snapshot: a 360-degree yaw orbit or a small-pose wobble.

\b
    python gen_videos.py --network=snap.pkl --seeds=0-3 --grid=2x2 --outdir=out
    python gen_videos.py --network=snap.pkl --seeds=7 --motion=wobble --image-mode=depth --output=out/seven.mp4
    python gen_videos.py --network=snap.pkl --seeds=0 --format=png --frames=24 --outdir=frames

\b
The seeds fill grids of --grid W x H, row by row; each grid is one video, named
seed{seed:04d}_{motion}.mp4 for a 1x1 grid and seeds{s1:04d}-{s2:04d}-..._{motion}.mp4 otherwise
(with --format png, a folder of the same name holding frame0000.png, frame0001.png, ...).
--output names the file (or frame folder) when there is exactly one grid.
Motions (training/cameras.py angles; yaw 90 = front, pitch 90 = level):
  orbit   yaw = 90 + 360 k / F degrees, level: one seamless turn around the head;
  wobble  yaw = 90 + 20 sin(2 pi k / F), pitch = 87 + 14.3 cos(2 pi k / F) degrees
          (the original's small-pose path: 0.35, 0.05 and 0.25 rad).
Image modes: image (final resolution), raw (the volume-rendered RGB at the neural rendering
resolution) and depth (the same resolution, near = bright over the renderer's fixed depth range
ray_start..ray_end, so brightness is comparable across frames). The original's spellings
image_depth / image_raw and its underscore flags are accepted.
As in gen_samples.py, w comes from the mapping network conditioned on the average frontal camera
and the --body-pose, and the same pose is rendered ('branch': G's pose branch at the frontal
camera, held for the whole video). Without --posed the canonical avatar is rendered.
mp4 needs the optional imageio-ffmpeg package (pip install imageio-ffmpeg); it is checked before
anything is rendered. Every video (or frame folder) is written to a hidden temporary sibling and
moved into place when complete, so an interrupted run leaves no partial output.
"""
import importlib
import itertools
import math
import os
import re

import click
import numpy as np
import torch
from tqdm import tqdm

from cli_utils import AliasedOption, BodyPose, SeedList, load_generator, make_outdir, parse_device, to_uint8
from gen_samples import multiply_ray_samples
from portrait_data.writer import DatasetWriter
from torch_utils.checkpoint import atomic_path
from training.cameras import average_camera, camera_vector

MOTIONS = ('orbit', 'wobble')
IMAGE_MODES = ('image', 'depth', 'raw')
WOBBLE_YAW_RAD = 0.35           # small-pose amplitudes of the original (system.md §7)
WOBBLE_PITCH_RAD = 0.25
WOBBLE_PITCH_OFFSET_RAD = 0.05  # mean pitch slightly above level
VIDEO_CODEC = 'libx264'
VIDEO_BITRATE = '10M'
VIDEO_HINT = 'pip install imageio-ffmpeg  (or pip install -e ".[video]"), or use --format png'


class GridShape(click.ParamType):
    """'WxH' with positive integers -> (W, H)."""
    name = 'WxH'

    def convert(self, value, param, ctx):
        """Parse `value`; fails (one line) unless it is like '2x3'."""
        if isinstance(value, tuple):
            return value
        match = re.fullmatch(r'\s*(\d+)\s*[xX]\s*(\d+)\s*', str(value))
        if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
            self.fail(f"{value!r}: expected columns x rows like '2x2'", param, ctx)
        return int(match.group(1)), int(match.group(2))


class ImageMode(click.Choice):
    """image | depth | raw; the original's image_depth / image_raw are accepted."""

    def __init__(self):
        super().__init__(IMAGE_MODES)

    def convert(self, value, param, ctx):
        """Strip the original's 'image_' prefix, then check the choice."""
        return super().convert(re.sub(r'^image_(?=depth$|raw$)', '', str(value)), param, ctx)


def trajectory(motion, frames):
    """(yaw [F], pitch [F]) in radians (float64) of the camera path; the last frame leads back to the first."""
    phase = torch.arange(frames, dtype=torch.float64) * (2 * math.pi / frames)
    if motion == 'orbit':
        return math.pi / 2 + phase, torch.full_like(phase, math.pi / 2)
    yaw = math.pi / 2 + WOBBLE_YAW_RAD * phase.sin()
    return yaw, math.pi / 2 - WOBBLE_PITCH_OFFSET_RAD + WOBBLE_PITCH_RAD * phase.cos()


def check_video_dependency():
    """ClickException (one line, with the install hint) unless imageio-ffmpeg and its ffmpeg binary are usable."""
    try:
        importlib.import_module('imageio_ffmpeg').get_ffmpeg_exe()
    except (ImportError, RuntimeError) as err:
        reason = 'the imageio-ffmpeg package' if isinstance(err, ImportError) else f'an ffmpeg binary ({err})'
        raise click.ClickException(f'--format mp4 needs {reason}: {VIDEO_HINT}') from None


@torch.no_grad()
def grid_latents(G, seeds, c_cond, opts):
    """(ws [N, num_ws, w_dim], pose [N, 6]) of N seeds: mapping on the frontal camera c_cond [1, 25] and the pose."""
    z = np.stack([np.random.RandomState(seed).randn(G.z_dim) for seed in seeds])
    z = torch.from_numpy(z).float().to(c_cond.device)
    c = c_cond.expand(len(seeds), -1)
    if opts['body_pose'] == 'branch':
        pose = G.get_pose_params(z, c)
    else:
        values = [0.0] * 6 if opts['body_pose'] == 'zero' else list(opts['body_pose'])
        pose = torch.tensor([values], dtype=torch.float32, device=z.device).expand(len(seeds), -1)
    ws = G.mapping(z, c, pose_params=pose, truncation_psi=opts['truncation_psi'],
                   truncation_cutoff=opts['truncation_cutoff'])
    return ws, pose


def tile(images, columns):
    """uint8 [N, C, H, W] -> [rows * H, columns * W, 3], filled row by row (C = 1 is repeated to RGB)."""
    n, channels, height, width = images.shape
    images = images.expand(-1, 3, -1, -1) if channels == 1 else images
    rows = images.reshape(n // columns, columns, 3, height, width).permute(0, 3, 1, 4, 2)
    return rows.reshape(n // columns * height, columns * width, 3).numpy()


@torch.no_grad()
def render_frame(G, ws, pose, camera, opts):
    """uint8 frame [H, W, 3]: the grid's N seeds (ws [N, ...], pose [N, 6]) seen from camera [1, 25]."""
    out = G.synthesis(ws, camera.expand(ws.shape[0], -1), pose_params=pose, apply_def=not opts['canonical'],
                      neural_rendering_resolution=opts['neural_rendering_resolution'], noise_mode='const')
    if opts['image_mode'] == 'depth':
        images = to_uint8(out['image_depth'], G.rendering.ray_end, G.rendering.ray_start)
    else:
        images = to_uint8(out['image' if opts['image_mode'] == 'image' else 'image_raw'], -1, 1)
    return tile(images, opts['grid'][0])


def render_frames(G, ws, pose, cameras, opts, bar):
    """Yield the uint8 [H, W, 3] frame of each camera of cameras [F, 25], advancing the progress `bar`."""
    for k in range(cameras.shape[0]):
        yield render_frame(G, ws, pose, cameras[k:k + 1], opts)
        bar.update()


def write_mp4(path, frames, fps):
    """Encode the uint8 [H, W, 3] frames of iterator `frames` (H.264, yuv420p); `path` appears only when done."""
    imageio_ffmpeg = importlib.import_module('imageio_ffmpeg')
    first = next(frames)
    with atomic_path(path) as tmp_path:
        writer = imageio_ffmpeg.write_frames(tmp_path, (first.shape[1], first.shape[0]), fps=fps, codec=VIDEO_CODEC,
                                             bitrate=VIDEO_BITRATE, macro_block_size=2, ffmpeg_log_level='error',
                                             output_params=['-f', 'mp4'])
        writer.send(None)
        try:
            for frame in itertools.chain([first], frames):
                writer.send(np.ascontiguousarray(frame))
        finally:
            writer.close()


def write_png_folder(path, frames, count):
    """Write the `count` frames of iterator `frames` as frameNNNN.png into a temporary sibling, then move it to `path`."""
    digits = max(4, len(str(count - 1)))
    with DatasetWriter(path, force=True) as writer:
        for k, frame in enumerate(frames):
            writer.write_image(f'frame{k:0{digits}d}.png', frame)


def video_paths(groups, motion, fmt, outdir, output):
    """Output path (mp4 file or frame folder) of each seed group; UsageError (one line) if they cannot be written."""
    if (outdir is None) == (output is None):
        raise click.UsageError('give either --outdir or --output (exactly one)')
    if output is not None and len(groups) != 1:
        raise click.UsageError(f'--output names one video but the seeds fill {len(groups)} grids; use --outdir')
    stems = [f'seed{group[0]:04d}' if len(group) == 1 else 'seeds' + '-'.join(f'{s:04d}' for s in group)
             for group in groups]
    paths = [output] if output is not None else \
        [os.path.join(outdir, f'{stem}_{motion}' + ('.mp4' if fmt == 'mp4' else '')) for stem in stems]
    for path in paths:
        if os.path.exists(path) and os.path.isdir(path) != (fmt == 'png'):
            kind, writes = ('a folder', 'a file') if os.path.isdir(path) else ('a file', 'a frame folder')
            raise click.UsageError(f'{path} is {kind} but --format {fmt} writes {writes} there')
    return paths


def seed_groups(seeds, grid):
    """Consecutive groups of W * H seeds; BadParameter (one line) unless the seeds fill whole grids."""
    size = grid[0] * grid[1]
    if len(seeds) % size:
        raise click.BadParameter(f'{len(seeds)} seed(s) do not fill whole {grid[0]}x{grid[1]} grids; '
                                 f'give a multiple of {size}', param_hint="'--seeds'")
    return [seeds[k:k + size] for k in range(0, len(seeds), size)]


@click.command(help=__doc__)
@click.option('--network', 'network_pkl', required=True, metavar='PATH|URL', help='Network snapshot (.pkl)')
@click.option('--seeds', type=SeedList(), required=True, help="Seeds, e.g. '0-3,7'")
@click.option('--grid', type=GridShape(), default='1x1', show_default=True, help='Seeds per video: columns x rows')
@click.option('--motion', type=click.Choice(MOTIONS), default='orbit', show_default=True,
              help='orbit: 360-degree yaw turn; wobble: small yaw/pitch oscillation')
@click.option('--image-mode', '--image_mode', cls=AliasedOption, hidden_aliases=('--image_mode',), type=ImageMode(),
              default='image', show_default=True, help='What to show')
@click.option('--frames', '--w-frames', cls=AliasedOption, hidden_aliases=('--w-frames',),
              type=click.IntRange(min=1), default=120, show_default=True, help='Frames per video')
@click.option('--fps', type=click.IntRange(min=1), default=30, show_default=True, help='Frames per second (mp4)')
@click.option('--format', 'fmt', type=click.Choice(['mp4', 'png']), default='mp4', show_default=True,
              help='mp4 video (needs imageio-ffmpeg) or a folder of PNG frames')
@click.option('--outdir', type=click.Path(file_okay=False), help='Output folder (created)')
@click.option('--output', type=click.Path(), help='Output video file (or frame folder) when there is one grid')
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), default=14, show_default=True,
              help='Truncate the first N ws (N >= num_ws: all)')
@click.option('--body-pose', type=BodyPose(), default='zero', show_default=True,
              help="'zero', 'branch' (G's pose branch at the frontal camera), or 6 floats (neck, head axis-angle)")
@click.option('--canonical/--posed', default=True, show_default=True,
              help='Render the canonical avatar (no deformation) or the body pose applied')
@click.option('--ray-sample-mult', '--sample_mult', cls=AliasedOption, hidden_aliases=('--sample_mult',),
              type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help='Multiply the samples per ray (coarse and importance)')
@click.option('--neural-rendering-resolution', '--nrr', cls=AliasedOption, hidden_aliases=('--nrr',),
              type=click.IntRange(min=1), default=None, help="Render at this resolution  [default: the network's]")
@click.option('--device', default='auto', show_default=True, help="'auto', 'cpu', 'cuda[:N]' or 'mps'")
def main(network_pkl, seeds, motion, frames, fps, fmt, outdir, output, device, ray_sample_mult, **opts):
    """Render orbit / wobble videos from a network snapshot (click help: the module docstring)."""
    device = parse_device(device)
    groups = seed_groups(seeds, opts['grid'])
    paths = video_paths(groups, motion, fmt, outdir, output)
    if fmt == 'mp4':
        check_video_dependency()
    G = load_generator(network_pkl, device)
    multiply_ray_samples(G, ray_sample_mult)
    if outdir is not None:
        make_outdir(outdir)
    else:
        make_outdir(os.path.dirname(os.path.abspath(output)), '--output')
    yaw, pitch = trajectory(motion, frames)
    cameras = camera_vector(yaw, pitch).to(device)
    c_cond = average_camera().to(device)
    with tqdm(total=len(groups) * frames, desc='frames', unit='frame', disable=None) as bar:
        for group, path in zip(groups, paths):
            ws, pose = grid_latents(G, group, c_cond, opts)
            rendered = render_frames(G, ws, pose, cameras, opts, bar)
            if fmt == 'mp4':
                write_mp4(path, rendered, fps)
            else:
                write_png_folder(path, rendered, frames)
    kind = 'video(s)' if fmt == 'mp4' else 'frame folder(s)'
    click.echo(f'Wrote {len(paths)} {kind} of {frames} frames to {outdir if outdir is not None else output}')


if __name__ == '__main__':
    main()
