"""Write the portrait3d procedural body, a licence-clean STAND-IN for SMPL, in SMPL's layout.

    python scripts/make_procedural_smpl.py DIR

writes DIR/smpl/SMPL_NEUTRAL.pkl (a plain pickle with SMPL's keys and counts, V=6890, F=13776;
no chumpy) and DIR/smpl/STAND_IN.txt. Point the SMPL option of training or the demo at DIR. It is
not SMPL: a smooth synthetic upper body for tests and demos (see docs/smpl.md).
"""
import os
import sys

import click

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from training.deformation import procedural_body, smpl_io  # noqa: E402

NOTE = f"""This folder holds the {procedural_body.STAND_IN_NAME!r}, a stand-in for SMPL made by
scripts/make_procedural_smpl.py. It is NOT SMPL and contains no SMPL data: a smooth synthetic
upper body in SMPL's file layout (6890 vertices, 13776 faces, SMPL's 24-joint tree), for tests
and demos. For real results get SMPL from {smpl_io.SMPL_URL} (licence required) and put
SMPL_NEUTRAL.pkl here instead. See docs/smpl.md.
"""


@click.command()
@click.argument('directory', type=click.Path(file_okay=False))
def main(directory: str):
    """Write the SMPL stand-in to DIRECTORY/smpl/SMPL_NEUTRAL.pkl."""
    folder = os.path.join(directory, 'smpl')
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, 'SMPL_NEUTRAL.pkl')
    smpl_io.save_smpl_pickle(procedural_body.procedural_smpl_arrays(), path)
    with open(os.path.join(folder, 'STAND_IN.txt'), 'w') as file:
        file.write(NOTE)
    click.echo(f'Wrote {path}: the {procedural_body.STAND_IN_NAME!r}, a stand-in for SMPL (not SMPL)')


if __name__ == '__main__':
    main()
