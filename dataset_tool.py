"""Build training datasets: `convert` your own preprocessed photos, or write the `synthetic` set.

    python dataset_tool.py convert --source=photos/ --labels=result.json --dest=data/images.zip \
        --masks=masks/ --seg-dest=data/masks.zip --resolution=512
    python dataset_tool.py synthetic --outdir=data/synthetic --count=2000 --resolution=64

Outputs are uncompressed zips of PNGs; the image zip holds dataset.json (see docs/dataset.md).
"""
import click

from portrait_data import sample_writer, tool
from portrait_data.errors import DatasetError
from portrait_data.synthetic import YAW_DISTRIBUTIONS
from portrait_data.writer import WriteSummary


def _report(summary: WriteSummary) -> None:
    """Print what was written."""
    click.echo(f'Wrote {summary.images} images at {summary.resolution}x{summary.resolution} to {summary.dest}')
    if summary.seg_dest is not None:
        click.echo(f'Wrote {summary.images} masks to {summary.seg_dest}')
    if summary.ignored_records:
        click.echo(f'Ignored {summary.ignored_records} label entries whose image is not in the source')


@click.group()
def main():
    """Build image/mask zips with dataset.json (31-float labels: 25 camera + 6 pose)."""


@main.command()
@click.option('--source', required=True, type=click.Path(exists=True), help='Folder or zip of photos (PNG/JPEG)')
@click.option('--labels', 'labels_json', required=True, type=click.Path(exists=True, dir_okay=False),
              help='Preprocessing JSON: {image: {camera_pose, smpl_pose, intrinsics?}}')
@click.option('--dest', required=True, type=click.Path(), help='Output image zip (or folder)')
@click.option('--masks', type=click.Path(exists=True), help='Folder or zip of masks, paired by relative path')
@click.option('--seg-dest', type=click.Path(), help='Output mask zip (or folder); needs --masks')
@click.option('--resolution', type=click.IntRange(min=1), help='Centre-crop and resize to this side (power of two)')
@click.option('--max-images', type=click.IntRange(min=1), help='Convert only the first N images (sorted by path)')
@click.option('--force', is_flag=True, help='Overwrite existing outputs')
def convert(source, labels_json, dest, masks, seg_dest, resolution, max_images, force):
    """Convert preprocessed photos (+ masks) into training zips."""
    try:
        _report(tool.convert(source, labels_json, dest, masks=masks, seg_dest=seg_dest, resolution=resolution,
                             max_images=max_images, force=force))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None


@main.command()
@click.option('--outdir', type=click.Path(file_okay=False), help='Write <outdir>/images.zip and <outdir>/masks.zip')
@click.option('--dest', type=click.Path(), help='Output image zip (instead of --outdir)')
@click.option('--seg-dest', type=click.Path(), help='Output mask zip (instead of --outdir)')
@click.option('--count', type=click.IntRange(min=1), default=1000, show_default=True, help='Number of images')
@click.option('--resolution', type=click.IntRange(min=1), default=64, show_default=True, help='Image side (power of two)')
@click.option('--seed', type=int, default=0, show_default=True, help='Random seed')
@click.option('--yaws', type=click.Choice(YAW_DISTRIBUTIONS), default='uniform', show_default=True,
              help='Camera yaw distribution')
@click.option('--force', is_flag=True, help='Overwrite existing outputs')
def synthetic(outdir, dest, seg_dest, count, resolution, seed, yaws, force):
    """Write the built-in synthetic 360-degree portrait dataset."""
    if outdir is not None and (dest is not None or seg_dest is not None):
        raise click.UsageError('give either --outdir or --dest with --seg-dest, not both')
    if outdir is None and (dest is None or seg_dest is None):
        raise click.UsageError('give --outdir, or both --dest and --seg-dest')
    if outdir is not None:
        dest, seg_dest = sample_writer.synthetic_destinations(outdir)
    try:
        _report(sample_writer.write_synthetic(count, resolution, seed, yaws, dest, seg_dest, force=force))
    except DatasetError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == '__main__':
    main()
