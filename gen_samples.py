"""Render portraits from a network snapshot: views side by side, depth and mask images, and meshes.

\b
    python gen_samples.py --network=network-snapshot-000000.pkl --seeds=0-3 --outdir=out
    python gen_samples.py --network=snap.pkl --seeds=0,7 --shapes --shape-format=.glb --outdir=out

\b
Per seed (all files written atomically, into --outdir):
  seed{seed:04d}.png        the --yaws views side by side, at the final image resolution;
  seed{seed:04d}_depth.png  the same views' depth at the neural rendering resolution
                            (near = bright, scaled over the seed's views);
  seed{seed:04d}_mask.png   the same views' opacity (white = foreground);
  seed{seed:04d}.ply        with --shapes (or .obj/.glb/.mrc per --shape-format).

As in the original, w comes from the mapping network conditioned on the average frontal camera
and the --body-pose, and the views are rendered from cameras at --yaws and --pitch
(training/cameras.py: yaw 90 = front, camera on +z; 0 = camera on -x, the subject's right;
-90 = back; pitch 90 = level). The default field of view is the training focal's, so renders
match the training framing (the original's --fov-deg was an int, 12, a 3% zoom).
Meshes: density from G.sample_mixed (tri-grid computed once per seed, constant noise) on a
--shape-res^3 grid over a cube centred at the canonical origin, of side min(box_warp, 2 * crop)
(the crop bounds |x| and |z|); the outer --shape-border voxels are set to the empty density so
the surface is closed; marching cubes at --shape-level on raw sigma; vertices in canonical world
units (metres). `.mrc` stores the density grid.
Progress bars are shown on a terminal only.
"""
import math
import os

import click
import numpy as np
import torch
from tqdm import tqdm

from cli_utils import BodyPose, FloatList, SeedList, load_generator, make_outdir, save_png, side_by_side
from configs.schema import CameraConfig
from torch_utils.device import resolve_device
from training.cameras import average_camera, camera_vector, focal_to_fov_deg, fov_deg_to_focal
from training.geometry import mesh_export
from training.geometry.density_grid import Grid, clear_border, density_grid, generator_density
from training.networks.symmetry import POSE_DIM

SAMPLE_COUNT_KEYS = ('depth_resolution', 'depth_resolution_importance')


def multiply_ray_samples(G, multiplier):
    """Scale the per-ray sample counts of G.rendering (coarse and importance; 0 stays 0) by `multiplier`."""
    counts = {key: getattr(G.rendering, key) for key in SAMPLE_COUNT_KEYS}
    G.set_rendering(**{key: max(2 if key == 'depth_resolution' else 1, round(count * multiplier)) if count else 0
                       for key, count in counts.items()})


def body_poses(G, z, c_cond, c_views, body_pose):
    """(pose for the mapping [1, 6], poses of the views [V, 6]) for --body-pose."""
    if body_pose == 'branch':
        return G.get_pose_params(z, c_cond), G.get_pose_params(z.expand(c_views.shape[0], -1), c_views)
    values = [0.0] * POSE_DIM if body_pose == 'zero' else body_pose
    pose = torch.tensor([values], dtype=torch.float32, device=z.device)
    return pose, pose.expand(c_views.shape[0], -1)


@torch.no_grad()
def render_seed(G, seed, c_cond, c_views, opts):
    """(ws [1, num_ws, w_dim], images dict of [V, ...] tensors) of one seed's views."""
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float().to(c_cond.device)
    pose_cond, pose_views = body_poses(G, z, c_cond, c_views, opts['body_pose'])
    ws = G.mapping(z, c_cond, pose_params=pose_cond, truncation_psi=opts['truncation_psi'],
                   truncation_cutoff=opts['truncation_cutoff'])
    torch.manual_seed(seed)
    views = [G.synthesis(ws, c_views[i:i + 1], pose_params=pose_views[i:i + 1], apply_def=not opts['canonical'],
                         noise_mode='const') for i in range(c_views.shape[0])]
    return ws, {key: torch.cat([view[key] for view in views]) for key in ('image', 'image_depth', 'image_mask')}


def write_images(outdir, seed, images):
    """Write seed####.png, _depth.png (near = bright) and _mask.png; returns the paths."""
    depth = images['image_depth']
    paths = [os.path.join(outdir, f'seed{seed:04d}{suffix}.png') for suffix in ('', '_depth', '_mask')]
    save_png(paths[0], side_by_side(images['image'], -1, 1))
    near, far = float(depth.min()), float(depth.max())
    save_png(paths[1], side_by_side(depth, far, near) if far > near else side_by_side(depth * 0, 0, 1))
    save_png(paths[2], side_by_side(images['image_mask'], 0, 1))
    return paths


@torch.no_grad()
def write_shape(G, ws, seed, outdir, opts, progress):
    """Sample G's canonical density for `ws` on the grid and write the mesh (or .mrc); returns the path."""
    rendering = G.rendering
    grid = Grid(opts['shape_res'], min(rendering.box_warp, 2 * rendering.crop))
    progress.reset(total=grid.resolution ** 3)
    volume = density_grid(generator_density(G, ws, noise_mode='const'), grid, max_batch=opts['max_batch'],
                          device=ws.device, on_chunk=progress.update)
    volume = clear_border(volume, opts['shape_border'], rendering.empty_density)
    path = os.path.join(outdir, f'seed{seed:04d}{opts["shape_format"]}')
    try:
        mesh_export.export_shape(path, volume, grid.origin, grid.spacing, opts['shape_level'])
    except ValueError as err:
        raise click.ClickException(f'seed {seed}: {err} (choose --shape-level in that range)') from None
    return path


def check_shape_dependencies(shape_format):
    """ClickException (one line, with the install hint) if the --shape-format's packages are missing."""
    needed = [('mrcfile', mesh_export.MRC_HINT)] if shape_format == '.mrc' else \
        [('skimage.measure', mesh_export.MESH_HINT), ('trimesh', mesh_export.MESH_HINT)]
    for module, hint in needed:
        try:
            mesh_export.import_optional(module, f'--shape-format {shape_format}', hint)
        except ImportError as err:
            raise click.ClickException(str(err)) from None


DEFAULT_FOV_DEG = focal_to_fov_deg(CameraConfig().focal)


@click.command(help=__doc__)
@click.option('--network', 'network_pkl', required=True, metavar='PATH|URL', help='Network snapshot (.pkl)')
@click.option('--seeds', type=SeedList(), required=True, help="Seeds, e.g. '0-3,7'")
@click.option('--trunc', 'truncation_psi', type=float, default=1.0, show_default=True, help='Truncation psi')
@click.option('--trunc-cutoff', 'truncation_cutoff', type=click.IntRange(min=0), default=14, show_default=True,
              help='Truncate the first N ws (N >= num_ws: all)')
@click.option('--outdir', required=True, type=click.Path(file_okay=False), help='Output folder (created)')
@click.option('--yaws', type=FloatList(), default='90,0,-90', show_default=True,
              help='View yaws in degrees: 90 front, 0 side, -90 back')
@click.option('--pitch', type=click.FloatRange(0, 180), default=90.0, show_default=True,
              help='Polar angle from +y in degrees, 90 = level')
@click.option('--fov-deg', type=click.FloatRange(0, 180, min_open=True, max_open=True), default=None,
              help=f'Field of view in degrees  [default: the training focal, {DEFAULT_FOV_DEG:.4f}]')
@click.option('--body-pose', type=BodyPose(), default='zero', show_default=True,
              help="'zero', 'branch' (G's pose branch from z and each view's camera; the mapping gets the "
                   "frontal camera's), or 6 floats (neck, head axis-angle)")
@click.option('--canonical/--posed', default=True, show_default=True,
              help='Render the canonical avatar (no deformation) or the body pose applied')
@click.option('--ray-sample-mult', type=click.FloatRange(min=0, min_open=True), default=2.0, show_default=True,
              help='Multiply the samples per ray (coarse and importance)')
@click.option('--shapes', is_flag=True, help='Also export a mesh per seed')
@click.option('--shape-res', type=click.IntRange(min=2), default=256, show_default=True, help='Grid points per axis')
@click.option('--shape-level', type=float, default=10.0, show_default=True, help='Iso-level on raw sigma')
@click.option('--shape-format', type=click.Choice(mesh_export.SHAPE_FORMATS), default='.ply', show_default=True)
@click.option('--shape-border', type=click.IntRange(min=0), default=1, show_default=True,
              help='Voxels cleared at each grid face (closes the surface)')
@click.option('--max-batch', type=click.IntRange(min=1), default=1 << 18, show_default=True,
              help='Density queries per chunk')
@click.option('--device', default='auto', show_default=True, help="'auto', 'cpu', 'cuda[:N]' or 'mps'")
def main(network_pkl, seeds, outdir, yaws, pitch, fov_deg, shapes, device, ray_sample_mult, **opts):
    """Render portraits from a network snapshot (click help: the module docstring)."""
    try:
        device = resolve_device(device)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--device'") from None
    if shapes:
        check_shape_dependencies(opts['shape_format'])
    G = load_generator(network_pkl, device)
    multiply_ray_samples(G, ray_sample_mult)
    make_outdir(outdir)
    focal = CameraConfig().focal if fov_deg is None else fov_deg_to_focal(fov_deg)
    c_cond = average_camera().to(device)
    c_views = camera_vector(torch.tensor(yaws).deg2rad(), math.radians(pitch), focal=focal).to(device)
    written = []
    with tqdm(seeds, desc='seeds', unit='seed', disable=None) as bar, \
            tqdm(desc='shape', unit='pt', leave=False, disable=None if shapes else True) as shape_bar:
        for seed in bar:
            ws, images = render_seed(G, seed, c_cond, c_views, opts)
            if shapes:
                written.append(write_shape(G, ws, seed, outdir, opts, shape_bar))
            written += write_images(outdir, seed, images)
    click.echo(f'Wrote {len(written)} files to {outdir}')


if __name__ == '__main__':
    main()
