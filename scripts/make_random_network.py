"""Save a randomly initialised G and D of a network preset as a network snapshot.

    python scripts/make_random_network.py --preset=tiny-cpu --out=random/network-snapshot-000000.pkl

The snapshot has the training loop's layout (G, D, G_ema = a copy of G, D_ema = a copy of D, plus
'training_set_kwargs' None and 'pose_predict_kwargs'), so gen_samples.py and other inference
scripts can be tried before any training. The body model is the procedural SMPL stand-in unless
--smpl names an SMPL_NEUTRAL.pkl. Renders show noise, not portraits.
"""
import copy
import os
import sys

import click
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import dnnlib  # noqa: E402
from configs import presets  # noqa: E402
from torch_utils import checkpoint  # noqa: E402


def build_networks(preset_name, seed, smpl_path=None):
    """{'G', 'D', 'G_ema', 'D_ema'} of the preset, initialised from `seed`, in eval mode without gradients."""
    preset = presets.get_preset(preset_name)
    torch.manual_seed(seed)
    G = dnnlib.util.construct_class_by_name(**preset.G_kwargs(smpl_path=smpl_path))
    D = dnnlib.util.construct_class_by_name(**preset.D_kwargs())
    networks = dict(G=G, D=D, G_ema=copy.deepcopy(G), D_ema=copy.deepcopy(D))
    for module in networks.values():
        module.eval().requires_grad_(False)
    return networks


@click.command()
@click.option('--preset', 'preset_name', type=click.Choice(list(presets.PRESETS)), default='tiny-cpu',
              show_default=True, help='Network preset (configs/presets.py)')
@click.option('--out', required=True, type=click.Path(dir_okay=False), help='Snapshot file to write')
@click.option('--seed', type=int, default=0, show_default=True, help='Seed of the random initialisation')
@click.option('--smpl', 'smpl_path', type=click.Path(exists=True, dir_okay=False),
              help='SMPL_NEUTRAL.pkl (default: the procedural stand-in body)')
def main(preset_name, out, seed, smpl_path):
    """Write a randomly initialised network snapshot of a preset to OUT."""
    preset = presets.get_preset(preset_name)
    networks = build_networks(preset_name, seed, smpl_path)
    extras = dict(training_set_kwargs=None,
                  pose_predict_kwargs=dict(blur_sigma=0.0,
                                           neural_rendering_resolution=preset.neural_rendering_resolution))
    try:
        os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
        checkpoint.save_network_snapshot(out, networks, extras)
    except OSError as err:
        raise click.ClickException(f'--out: cannot write {out}: {err.strerror or err}') from None
    click.echo(f'Wrote a random {preset_name} network (seed {seed}) to {out}')


if __name__ == '__main__':
    main()
