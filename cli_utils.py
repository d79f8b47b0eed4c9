"""Shared pieces of the inference command lines (gen_samples.py, gen_videos.py, predict_poses.py).

Click parameter types for seeds, number lists and body poses; an option class for the original's
underscore spellings; network loading with one-line errors; uint8 image tiling and atomic PNGs.
"""
import os
import re

import click
import PIL.Image
import torch

import dnnlib
import legacy
from torch_utils.checkpoint import atomic_write
from torch_utils.device import resolve_device
from training.networks.symmetry import POSE_DIM

MAX_SEED = 2**32 - 1                     # numpy RandomState seeds
GENERATOR_API = ('z_dim', 'rendering', 'mapping', 'synthesis', 'get_pose_params', 'sample_mixed')


class SeedList(click.ParamType):
    """Comma-separated seeds and inclusive ranges: '0-3,7' -> [0, 1, 2, 3, 7]."""
    name = 'seeds'

    def convert(self, value, param, ctx):
        """Parse `value`; fails (one line) on anything but non-negative integers and a-b ranges."""
        if isinstance(value, list):
            return value
        seeds = []
        for part in str(value).split(','):
            match = re.fullmatch(r'\s*(\d+)\s*(?:-\s*(\d+)\s*)?', part)
            first, last = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (0, -1)
            if not 0 <= first <= last <= MAX_SEED:
                self.fail(f"{value!r}: expected seeds in [0, {MAX_SEED}] and ranges like '0-3,7'", param, ctx)
            seeds += range(first, last + 1)
        return seeds


class FloatList(click.ParamType):
    """Comma-separated floats: '90,0,-90'."""
    name = 'floats'

    def convert(self, value, param, ctx):
        """Parse `value` into a list of floats; fails (one line) otherwise."""
        if isinstance(value, list):
            return value
        try:
            return [float(part) for part in str(value).split(',')]
        except ValueError:
            self.fail(f"{value!r}: expected comma-separated numbers like '90,0,-90'", param, ctx)


class BodyPose(click.ParamType):
    """'zero', 'branch' (G's pose branch), or 6 comma-separated floats (neck and head axis-angle, radians)."""
    name = 'pose'

    def convert(self, value, param, ctx):
        """Return 'zero', 'branch' or a tuple of 6 floats; fails (one line) otherwise."""
        if isinstance(value, tuple) or value in ('zero', 'branch'):
            return value
        try:
            pose = tuple(float(part) for part in str(value).split(','))
        except ValueError:
            pose = ()
        if len(pose) != POSE_DIM:
            self.fail(f"{value!r}: expected 'zero', 'branch' or {POSE_DIM} comma-separated floats "
                      '(neck and head axis-angle in radians)', param, ctx)
        return pose


class AliasedOption(click.Option):
    """A click option whose `hidden_aliases` (e.g. the original's '--image_mode') work but stay out of --help."""

    def __init__(self, *args, hidden_aliases=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def _visible(self):
        """The option names shown to users."""
        return [name for name in self.opts if name not in self.hidden_aliases] or self.opts

    def get_help_record(self, ctx):
        """Help line without the hidden aliases."""
        saved, self.opts = self.opts, self._visible()
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved

    def get_error_hint(self, ctx):
        """'--name' in error messages (the first visible spelling only)."""
        return f"'{self._visible()[0]}'"


def parse_device(spec):
    """--device value -> torch.device; BadParameter (one line) if malformed or unavailable."""
    try:
        return resolve_device(spec)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--device'") from None


def load_network_data(network_pkl, device):
    """legacy.load_network_pkl of the snapshot at path/URL `network_pkl`; ClickException (one line) on failure."""
    try:
        with dnnlib.util.open_url(network_pkl) as f:
            return legacy.load_network_pkl(f, device=device)
    except (OSError, ValueError) as err:   # SnapshotFormatError is a ValueError
        raise click.ClickException(f'--network: {err}') from None


def generator_of(data, network_pkl):
    """data['G_ema'] if it has the portrait generator's API; ClickException (one line) otherwise."""
    G = data.get('G_ema')
    missing = [name for name in GENERATOR_API if not hasattr(G, name)]
    if missing:
        raise click.ClickException(f'--network: {network_pkl}: G_ema is not a portrait generator '
                                   f'(it lacks {", ".join(missing)})')
    return G


def load_generator(network_pkl, device):
    """G_ema of the snapshot at path/URL `network_pkl` on `device`; ClickException (one line) on failure."""
    return generator_of(load_network_data(network_pkl, device), network_pkl)


def to_uint8(images, low, high):
    """[..., C, H, W] with values in [low, high] -> uint8 tensor of the same shape (on the CPU)."""
    return ((images - low) / (high - low) * 255).round().clamp(0, 255).to(torch.uint8).cpu()


def side_by_side(images, low, high):
    """[V, C, H, W] with values in [low, high] -> uint8 [H, V*W, C] (or [H, V*W] for C = 1)."""
    array = torch.cat(list(to_uint8(images, low, high)), dim=2).permute(1, 2, 0).numpy()
    return array[..., 0] if array.shape[2] == 1 else array


def save_png(path, array):
    """Atomically write a uint8 [H, W] or [H, W, 3] array as a PNG."""
    with atomic_write(path) as f:
        PIL.Image.fromarray(array).save(f, format='PNG')


def make_outdir(outdir, option='--outdir'):
    """Create the folder `outdir` (and parents); ClickException (one line, naming `option`) if that fails."""
    try:
        os.makedirs(outdir, exist_ok=True)
    except OSError as err:
        raise click.ClickException(f'{option}: cannot create {outdir}: {err.strerror or err}') from None
