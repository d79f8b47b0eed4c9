"""Pre-flight checks of a training run: everything that can be wrong before the first step.

Each check raises PreflightError with one line naming the culprit (option and file), so that a
bad dataset, mask zip, SMPL path, resume file, metric name, device or output folder stops the run
before any run dir is created. train.py runs them (also for --dry-run) on every process.
"""
import contextlib
import io
import os
import pickle
import re
from dataclasses import dataclass
from typing import Optional

import torch

from configs.presets import PRESETS
from configs.training_options import TrainingOptions, network_defaults, option_flag
from portrait_data.errors import DatasetError
from portrait_data.portrait import PortraitDataset
from torch_utils import checkpoint, launch
from training import training_state
from training.deformation import smpl_io
from training.deformation.body_model import BodyModel

RGB_CHANNELS = 3
DESC_PATTERN = re.compile(r'[A-Za-z0-9._+=-]+')
RESUME_KINDS = ('.pt', '.pkl')           # training state | network snapshot
STRUCTURAL_FIELDS = ('network_preset', 'cbase', 'cmax', 'map_depth', 'triplane_depth', 'use_torgb_raw',
                     'use_background', 'train_g_pose_branch', 'freezed')   # fix module shapes and optimised parameters


class PreflightError(ValueError):
    """A run cannot start; the message is one line naming the option and file at fault."""


@dataclass(frozen=True)
class CheckedRun:
    """What the checks found: this process's device type, the dataset's name and statistics, and the
    resume file ('auto' resolved to a path, or None for a fresh start)."""
    device: torch.device
    dataset_name: str
    dataset_stats: dict
    resume: Optional[str]


def check_device(opts: TrainingOptions, spec: launch.LaunchSpec) -> torch.device:
    """--device resolves here, for every local rank; bf16 and compile are usable on it."""
    try:
        device = launch.process_device(opts.device, spec)
        if spec.kind == 'spawn':
            last = launch.LaunchSpec('spawn', spec.world_size, spec.world_size - 1, spec.world_size - 1)
            launch.process_device(opts.device, last)
    except ValueError as err:
        raise PreflightError(f'--device: {err}') from None
    if opts.bf16 and device.type == 'cuda' and not torch.cuda.is_bf16_supported():
        raise PreflightError(f'--bf16: {torch.cuda.get_device_name(device)} does not support bfloat16')
    if opts.compile and not torch._dynamo.is_dynamo_supported():
        raise PreflightError('--compile: torch.compile is not supported by this Python/PyTorch')
    return device


def check_outdir(outdir: str) -> None:
    """--outdir is (or can become) a writable folder."""
    if not outdir:
        raise PreflightError('--outdir: empty path')
    path = os.path.abspath(outdir)
    while not os.path.exists(path):
        path = os.path.dirname(path)
    if not os.path.isdir(path):
        raise PreflightError(f'--outdir: {path} is a file, not a folder')
    if not os.access(path, os.W_OK | os.X_OK):
        raise PreflightError(f'--outdir: {path} is not writable')


def check_dataset(opts: TrainingOptions) -> PortraitDataset:
    """--data and --seg-data open as a labelled portrait set at the network preset's resolution."""
    if not opts.seg_data:
        raise PreflightError('--seg-data: required: the mask zip or folder paired with --data '
                             '(dataset_tool.py writes masks.zip next to images.zip)')
    for flag, path in (('--data', opts.data), ('--seg-data', opts.seg_data)):
        if not os.path.exists(path):
            raise PreflightError(f'{flag}: {path}: no such zip file or folder')
    try:
        dataset = PortraitDataset(opts.data, opts.seg_data, xflip=opts.mirror, back_share=opts.back_repeat,
                                  max_size=opts.max_size, seed=opts.seed)
    except DatasetError as err:
        raise PreflightError(f'--data: {err}') from None
    except OSError as err:
        raise PreflightError(f'--data: {opts.data}: {err.strerror or err}') from None
    resolution = PRESETS[opts.network_preset].img_resolution
    if dataset.resolution != resolution:
        raise PreflightError(f'--data: {opts.data}: images are {dataset.resolution}x{dataset.resolution} but '
                             f'--network-preset={opts.network_preset} trains at {resolution}x{resolution}')
    if dataset.num_channels != RGB_CHANNELS:
        raise PreflightError(f'--data: {opts.data}: images have {dataset.num_channels} channel(s); training needs RGB')
    return dataset


def check_smpl(smpl_path: Optional[str]) -> None:
    """--smpl-path (if given) loads as an SMPL body model (its 'Body model: ...' line is kept quiet)."""
    if smpl_path is None:
        return
    try:
        file = smpl_io.find_smpl_file(smpl_path)
    except (OSError, ValueError) as err:
        raise PreflightError(f'--smpl-path: {err}') from None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            BodyModel.from_path(file)
    except (OSError, ValueError, ImportError, pickle.UnpicklingError) as err:
        message = ' '.join(str(err).split())
        raise PreflightError(f'--smpl-path: {message if file in message else f"{file}: {message}"}') from None


def check_metrics(metrics) -> None:
    """Every --metrics name is registered in metrics.metric_main (imported only when metrics are asked for)."""
    if not metrics:
        return
    from metrics import metric_main
    for name in metrics:
        if not metric_main.is_valid_metric(name):
            known = ', '.join(metric_main.list_valid_metrics())
            raise PreflightError(f'--metrics: unknown metric {name!r}; known: {known}')


def check_resume(opts: TrainingOptions) -> Optional[str]:
    """Resolve --resume ('auto' -> the newest training state under --outdir, or None) and check that it loads."""
    if opts.resume is None:
        return None
    path = opts.resume
    if path == 'auto':
        path = training_state.find_latest_state(opts.outdir)
        if path is None:
            if opts.resume_kimg > 0:
                raise PreflightError(f'--resume=auto: no training state under {opts.outdir}; the first run of a later '
                                     "stage needs the previous stage's network snapshot: --resume=PATH")
            return None
    if not os.path.isfile(path):
        raise PreflightError(f'--resume: {path}: no such file')
    if not os.access(path, os.R_OK):
        raise PreflightError(f'--resume: {path}: not readable')
    kind = os.path.splitext(path)[1]
    if kind not in RESUME_KINDS:
        raise PreflightError(f'--resume: {path}: expected a training-state .pt or a network-snapshot .pkl')
    (_check_training_state if kind == '.pt' else _check_network_snapshot)(path, opts)
    return path


def _check_training_state(path: str, opts: TrainingOptions) -> None:
    """The training state loads and was saved by a run with the same networks and trained parameters."""
    try:
        state = training_state.load_training_state(path)
        saved, cur_nimg = state['options'], int(state['counters']['cur_nimg'])
    except (training_state.TrainingStateError, KeyError, TypeError, ValueError) as err:
        raise PreflightError(f'--resume: {err}') from None
    if cur_nimg >= opts.kimg * 1000:
        raise PreflightError(f'--kimg={opts.kimg:g}: {path} is already at kimg {cur_nimg / 1000:g}; '
                             'raise --kimg to train further')
    if saved.get('network_preset') in PRESETS:      # unset network fields as this run's are resolved
        saved = dict(saved, **network_defaults(saved))
    for name in STRUCTURAL_FIELDS:
        if name in saved and saved[name] != getattr(opts, name):
            raise PreflightError(f'--resume: {path}: saved with {option_flag(name)}={saved[name]}, this run has '
                                 f"{getattr(opts, name)}; start a new stage from the previous stage's network "
                                 'snapshot (.pkl) instead')


def _check_network_snapshot(path: str, opts: TrainingOptions) -> None:
    """The network snapshot reads safely, holds G and D, and matches the network preset's resolution."""
    try:
        data = checkpoint.read_snapshot_dict(path)
    except (checkpoint.SnapshotFormatError, OSError) as err:
        raise PreflightError(f'--resume: {err}') from None
    missing = [name for name in ('G', 'D') if not checkpoint.is_module_entry(data.get(name))]
    if missing:
        raise PreflightError(f'--resume: {path}: no {" or ".join(missing)} network in this snapshot')
    resolution = data['G']['init_kwargs'].get('img_resolution')
    expected = PRESETS[opts.network_preset].img_resolution
    if resolution != expected:
        raise PreflightError(f'--resume: {path}: G makes {resolution}x{resolution} images but '
                             f'--network-preset={opts.network_preset} makes {expected}x{expected}')


def run_desc(opts: TrainingOptions, dataset_name: str, world_size: int) -> str:
    """The run-dir suffix: --desc, or '{preset}-{dataset}-gpus{N}-batch{B}-gamma{G}' (EG3D's form)."""
    desc = opts.desc or f'{opts.preset}-{dataset_name}-gpus{world_size}-batch{opts.batch}-gamma{opts.gamma:g}'
    return '-'.join(part for part in re.split(r'[^A-Za-z0-9._+=-]+', desc) if part)


def check_run(opts: TrainingOptions, spec: launch.LaunchSpec) -> CheckedRun:
    """All checks, cheapest first; the CheckedRun for train.py."""
    if opts.desc is not None and not DESC_PATTERN.fullmatch(opts.desc):
        raise PreflightError(f'--desc={opts.desc!r}: use letters, digits and . _ + = - only')
    device = check_device(opts, spec)
    check_outdir(opts.outdir)
    check_metrics(opts.metrics)
    resume = check_resume(opts)
    check_smpl(opts.smpl_path)
    dataset = check_dataset(opts)
    return CheckedRun(device=device, dataset_name=dataset.name, dataset_stats=dict(dataset.stats), resume=resume)
