"""Convert an SMPL pickle (with chumpy objects) to a chumpy-free, pickle-free .npz file.

    python scripts/convert_smpl.py SMPL_NEUTRAL.pkl [OUT.npz]

OUT defaults to the input path with the extension .npz. chumpy need not be installed. The .npz
loads anywhere SMPL_<GENDER>.pkl does (see docs/smpl.md); the SMPL licence still applies to it.
"""
import os
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.deformation import smpl_io  # noqa: E402


@click.command()
@click.argument('source', type=click.Path(exists=True, dir_okay=False))
@click.argument('destination', type=click.Path(dir_okay=False), required=False)
def main(source: str, destination: str):
    """Convert SOURCE (.pkl) to DESTINATION (.npz)."""
    if not source.endswith('.pkl'):
        raise click.BadParameter(f'expected an SMPL .pkl file, got {source}', param_hint='SOURCE')
    destination = destination or os.path.splitext(source)[0] + '.npz'
    if not destination.endswith('.npz'):
        raise click.BadParameter(f'the output must end in .npz, got {destination}', param_hint='DESTINATION')
    arrays = smpl_io.load_smpl(source)
    smpl_io.save_smpl_npz(arrays, destination)
    click.echo(f'Wrote {destination} ({len(arrays["v_template"])} vertices, {len(arrays["f"])} faces)')


if __name__ == '__main__':
    main()
