"""Evaluate quality and pose metrics of a network snapshot; print one JSON line per metric.

\b
    python calc_metrics.py --network=run/network-snapshot-000400.pkl --metrics=fid50k_full,pose_err_real
    python calc_metrics.py --network=snap.pkl --metrics=kid50k_full --data=images.zip --seg-data=masks.zip \
        --pose-sample-mode=D_predict --identical-c-p=false
    torchrun --nproc_per_node=4 calc_metrics.py --network=snap.pkl --device=cuda

\b
Uses the snapshot's G_ema and D_ema and its pose_predict_kwargs (how reals are prepared for D).
Real images: --data/--seg-data, else the training set recorded in the snapshot; they must have
the generator's resolution. Fakes use cameras drawn from the real set and body poses from G's
pose branch on the rendered z (G_predict) or D's predictor on real images (D_predict); the mapping
is conditioned on the same camera and pose unless --identical-c-p=false. FID/KID need the
Inception detector (docs/metrics.md): --detector PATH, else $PORTRAIT3D_DETECTOR, else a one-time
download into the dnnlib cache. Results are also appended to metric-<name>.jsonl next to a local
snapshot file. Several processes: --gpus N, torchrun or srun (one process per device).
"""
import json
import os
import sys
from dataclasses import replace

import click
import torch
import torch.distributed as dist

from cli_utils import AliasedOption, load_network_data
from metrics import metric_main
from metrics.detector import DetectorError, detector_source, load_detector
from metrics.generation import POSE_SAMPLE_MODES
from metrics.options import DISCRIMINATOR_API, GENERATOR_API
from metrics.real_data import MetricInputError, open_dataset
from portrait_data.errors import DatasetError
from torch_utils import launch
from torch_utils.device import resolve_device

D_METRICS = ('pose_err_real', 'pose_err_fake')       # metrics that always need D_ema
INPUT_ERRORS = (click.ClickException, MetricInputError, DetectorError, DatasetError)


class MetricList(click.ParamType):
    """Comma-separated registered metric names: 'fid50k_full,pose_err_real' -> ['fid50k_full', 'pose_err_real']."""
    name = 'metrics'

    def convert(self, value, param, ctx):
        """Parse and check the names; fails (one line, listing the known names) otherwise."""
        if isinstance(value, list):
            return value
        names = [name.strip() for name in str(value).split(',') if name.strip()]
        for name in names or ['']:
            if not metric_main.is_valid_metric(name):
                self.fail(f'unknown metric {name!r}; known metrics: {", ".join(metric_main.list_valid_metrics())}',
                          param, ctx)
        return names


def networks_of(data: dict, network_pkl: str, need_D: str):
    """(G_ema, D_ema or None) of a loaded snapshot; ClickException (one line) if one has the wrong kind."""
    G, D = data.get('G_ema'), data.get('D_ema')
    missing = [name for name in GENERATOR_API if not hasattr(G, name)]
    if G is None or missing:
        raise click.ClickException(f'--network: {network_pkl}: G_ema is not a portrait generator '
                                   f'({"missing" if G is None else "it lacks " + ", ".join(missing)})')
    missing = [name for name in DISCRIMINATOR_API if not hasattr(D, name)]
    if need_D and (D is None or missing):
        what = 'missing' if D is None else 'not a pose-aware discriminator'
        raise click.ClickException(f'--network: {network_pkl}: D_ema is {what}; {need_D} needs it')
    return G, D


def dataset_kwargs_of(data: dict, path, mask_path):
    """PortraitDataset kwargs: --data/--seg-data, else the snapshot's training_set_kwargs (masks overridable)."""
    if path is not None:
        return dict(path=path, mask_path=mask_path)
    recorded = data.get('training_set_kwargs')
    if not recorded:
        raise click.ClickException('--data: the snapshot records no training set; give --data (and --seg-data)')
    return dict(recorded, mask_path=mask_path) if mask_path is not None else dict(recorded)


def prepare(args: dict, device, verbose: bool):
    """Load and check everything before any metric runs -> (snapshot dict, G, D, dataset kwargs, detector or None).

    Raises ClickException, MetricInputError, DetectorError or DatasetError (one line) on bad input.
    """
    data = load_network_data(args['network_pkl'], device)
    need_D = next((name for name in args['metrics'] if name in D_METRICS), None)
    if need_D is None and args['pose_sample_mode'] == 'D_predict':
        need_D = '--pose-sample-mode=D_predict'
    G, D = networks_of(data, args['network_pkl'], need_D)
    dataset_kwargs = dataset_kwargs_of(data, args['data'], args['seg_data'])
    open_dataset(dataset_kwargs, G.img_resolution, xflip=False)       # resolution and format checks
    detector = None
    if any(name in metric_main.DETECTOR_METRICS for name in args['metrics']):
        source = detector_source(args['detector'])
        if verbose and '://' in source:
            click.echo(f'Loading the feature detector {source}', err=True)
        detector = load_detector(source, device)
    return data, G, D, dataset_kwargs, detector


def evaluate(ctx, args: dict) -> None:
    """Compute every metric on all processes; rank 0 prints one JSON line per metric and appends it to the run dir."""
    data, G, D, dataset_kwargs, detector = prepare(args, ctx.device, verbose=ctx.is_main)
    run_dir = os.path.dirname(os.path.abspath(args['network_pkl'])) if os.path.isfile(args['network_pkl']) else None
    for metric in args['metrics']:
        result = metric_main.calc_metric(
            metric, G=G, D=D, dataset_kwargs=dataset_kwargs, ctx=ctx, pose_sample_mode=args['pose_sample_mode'],
            identical_c_p=args['identical_c_p'], detector=detector, num_gen=args['num_gen'],
            pose_predict_kwargs=data.get('pose_predict_kwargs'))
        if ctx.is_main:
            click.echo(json.dumps(result))
            try:
                metric_main.report_metric(result, run_dir, args['network_pkl'])
            except OSError as err:
                raise click.ClickException(f'cannot append to metric-{metric}.jsonl in {run_dir}: '
                                           f'{err.strerror or err}') from None


def one_line(err: Exception) -> click.ClickException:
    """The ClickException to show for an input error."""
    return err if isinstance(err, click.ClickException) else click.ClickException(str(err))


def run_process(spec: launch.LaunchSpec, args: dict) -> None:
    """One process: join the group and evaluate. Input errors end the process with one line, printed by rank 0
    (every rank meets the same error; the others exit silently with a failure code)."""
    ctx = None
    try:
        try:
            ctx = launch.init_context(spec, args['device'])
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="'--device'") from None
        evaluate(ctx, args)
    except INPUT_ERRORS as err:
        if ctx is not None and not ctx.is_main:
            sys.exit(1)
        raise one_line(err) from None
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()


def _spawned(local_rank: int, spec: launch.LaunchSpec, args: dict) -> None:
    """Body of process `local_rank` of a --gpus N run (CPU runs share the cores evenly)."""
    if resolve_device(args['device']).type == 'cpu':
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // spec.world_size))
    run_process(replace(spec, rank=local_rank, local_rank=local_rank), args)


@click.command(help=__doc__)
@click.option('--network', 'network_pkl', required=True, metavar='PATH|URL', help='Network snapshot (.pkl)')
@click.option('--metrics', type=MetricList(), default='fid50k_full', show_default=True,
              help=f'Comma-separated metric names: {", ".join(metric_main.list_valid_metrics())}')
@click.option('--data', type=click.Path(exists=True),
              help="Real images: zip or folder  [default: the snapshot's training set]")
@click.option('--seg-data', '--seg_data', 'seg_data', cls=AliasedOption, hidden_aliases=('--seg_data',),
              type=click.Path(exists=True), help='Masks of --data: zip or folder, paired by file name')
@click.option('--gpus', type=click.IntRange(min=1), default=1, show_default=True,
              help='Local processes to spawn (not with torchrun/srun, which set the world)')
@click.option('--pose-sample-mode', '--metric_pose_sample_mode', 'pose_sample_mode', cls=AliasedOption,
              hidden_aliases=('--metric_pose_sample_mode',), type=click.Choice(POSE_SAMPLE_MODES), default='G_predict',
              show_default=True, help="Fakes' body poses: G's pose branch or D's predictor on real images")
@click.option('--identical-c-p', '--identical_c_p', 'identical_c_p', cls=AliasedOption,
              hidden_aliases=('--identical_c_p',), type=bool, default=True, show_default=True,
              help='Condition the mapping on the rendering camera and pose (false: on an independent draw)')
@click.option('--detector', metavar='PATH|URL', help='TorchScript feature detector  [default: $PORTRAIT3D_DETECTOR, '
              'else the Inception network (download)]')
@click.option('--num-gen', type=click.IntRange(min=2), help="Generated images per metric  [default: the metric's]")
@click.option('--device', default='auto', show_default=True, help="'auto', 'cpu', 'cuda' or 'mps'")
def main(gpus, **args):
    """Evaluate metrics of a network snapshot (click help: the module docstring)."""
    try:
        spec = launch.detect_launch(gpus)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="'--gpus'") from None
    if spec.kind != 'spawn':
        run_process(spec, args)
        return
    try:
        prepare(args, torch.device('cpu'), verbose=True)     # input errors as one line, before any process starts
    except INPUT_ERRORS as err:
        raise one_line(err) from None
    spec = replace(spec, master_port=launch.free_port())
    torch.multiprocessing.spawn(_spawned, args=(spec, args), nprocs=spec.world_size, join=True)


if __name__ == '__main__':
    main()
