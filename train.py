"""Train a 3D-aware portrait GAN (3DPortraitGAN) from a preset, overriding single options by flag.

\b
    # laptop demo: the tiny-cpu preset on the synthetic 360-degree set (dataset_tool.py synthetic)
    python train.py --outdir=runs --cfg=tiny-cpu --data=data/images.zip --seg-data=data/masks.zip
\b
    # the paper's three stages (8 GPUs; --gpus=8 or torchrun --standalone --nproc_per_node=8 train.py ...)
    python train.py --outdir=runs1 --cfg=portrait-stage1 --data=phq.zip --seg-data=phq-masks.zip --gpus=8
    python train.py --outdir=runs2 --cfg=portrait-stage2 --data=phq.zip --seg-data=phq-masks.zip --gpus=8 \\
        --resume=runs1/00000-portrait-stage1-phq-gpus8-batch32-gamma1/network-snapshot-006000.pkl
    python train.py --outdir=runs3 --cfg=portrait-stage3 ... --resume=runs2/.../network-snapshot-010000.pkl

Values come from the preset (--cfg); only flags given on the command line override it. Booleans
take =1/0/True/False (a bare --flag means True); optional numbers take =none. --dry-run prints the
resolved options as JSON and exits. Each run writes to OUTDIR/NNNNN-DESC; --resume=auto continues
from the newest training-state-*.pt under OUTDIR. docs/training.md lists every option.
"""
import dataclasses
import json
import os
import sys
import typing

import click

import cli_utils
from configs.presets import PRESETS
from configs.training_options import CHOICES, TrainingOptions, derive, option_flag, validate, with_network_defaults
from configs.training_presets import TRAINING_PRESETS, get_training_preset
from torch_utils import launch
from training import preflight

HELP = {                     # click help of each TrainingOptions field (docs/training.md has the full table)
    'outdir': 'Parent folder of the run dirs NNNNN-desc',
    'desc': 'Run-dir suffix [default: preset-data-gpusN-batchB-gammaG]',
    'preset': f'Training preset: {", ".join(TRAINING_PRESETS)}',
    'network_preset': f'Network capacities: {", ".join(PRESETS)}',
    'seed': 'Random seed',
    'kimg': 'Stop at this many kimg (absolute: counts earlier stages)',
    'tick': 'kimg between status lines',
    'snap': 'Ticks between network snapshots, training states and metrics',
    'image_snap': 'Ticks between image grids',
    'keep': 'Training states kept (older ones are deleted)',
    'metrics': "Comma-separated metrics at each snapshot, or 'none'",
    'metrics_num_gen': "Generated images per snapshot metric [default: the metric's own count]",
    'resume': "'auto' (newest training state under --outdir), a training-state .pt or a network .pkl",
    'resume_kimg': 'Counter start (kimg) when resuming from a network .pkl',
    'device': "'auto', 'cpu', 'cuda' or 'mps' (several processes: cuda:LOCAL_RANK each)",
    'gpus': 'Local processes to spawn (not with torchrun/srun)',
    'batch': 'Global batch size',
    'batch_gpu': 'Per-process micro-batch (gradient accumulation when below batch / processes)',
    'workers': 'DataLoader workers per process',
    'data': 'Image zip or folder with dataset.json',
    'seg_data': 'Mask zip or folder, paired with --data by file name',
    'mirror': 'x-flip augmentation (flips camera and pose)',
    'back_repeat': 'Repeat back views to this share of the data (0 = off)',
    'max_size': 'Use at most this many images',
    'smpl_path': 'Folder or file of SMPL_NEUTRAL.pkl/.npz [default: the procedural stand-in body]',
    'cbase': 'Channel base of G and D',
    'cmax': 'Max channels of G and D',
    'map_depth': 'Mapping-network layers',
    'mbstd_group': 'Minibatch-std group size of D',
    'triplane_depth': 'Depth of each tri-grid plane',
    'decoder_activation': 'Decoder colour activation',
    'use_torgb_raw': 'Raw image by a modulated ToRGB',
    'use_background': '2-D background network',
    'thickness': 'Warp cut-off around the posed body (metres)',
    'c_scale': 'Scale of the mapping conditioning',
    'sr_noise_mode': 'Noise in the super-resolution blocks',
    'g_num_fp16_res': 'fp16 resolutions of the G backbone (CUDA)',
    'sr_num_fp16_res': 'fp16 super-resolution (CUDA)',
    'd_num_fp16_res': 'fp16 resolutions of D (CUDA)',
    'disc_c_noise': 'Noise (x std) on D conditioning',
    'freezed': 'Freeze the first N D blocks',
    'glr': 'G learning rate',
    'dlr': 'D learning rate',
    'decoder_lr_mul': 'Decoder learning-rate multiplier',
    'ema_kimg': 'EMA half-life [default: batch * 10 / 32]',
    'ema_rampup': 'EMA ramp-up ratio (none = off)',
    'd_reg_interval': 'Lazy R1 every N minibatches',
    'train_g_pose_branch': "Train G's pose branch (stage 1)",
    'gamma': 'R1 weight on image + raw image',
    'gamma_seg': 'R1 weight on the mask',
    'pose_loss_weight': "Weight of D's pose loss on fakes",
    'input_pose_params_reg_loss_weight': 'Lpreg weight',
    'input_pose_params_reg_loss_kimg': 'Lpreg at full weight until this kimg',
    'input_pose_params_reg_loss_decay_kimg': 'Lpreg then fades to 0 over this many kimg',
    'style_mixing_prob': 'Style-mixing probability',
    'bcg_reg_prob': 'Background-latent swap probability',
    'density_reg': 'Density regulariser strength (0 = off)',
    'density_reg_every': 'Lazy density regularisation interval',
    'density_reg_p_dist': 'Density regulariser perturbation',
    'reg_type': 'Density regulariser variant',
    'gen_pose_cond': 'Condition the mapping on camera + pose',
    'gpc_reg_prob': 'Final conditioning-swap probability',
    'gpc_reg_fade_kimg': 'Swap probability fades from 1 over this many kimg',
    'blur_init_sigma': 'D-input blur sigma at kimg 0',
    'blur_fade_kimg': 'Blur fade length (at batch 32; scaled by batch / 32)',
    'density_noise_fade_kimg': 'Density-noise fade length (0 = off)',
    'neural_rendering_resolution_initial': 'Neural rendering resolution',
    'neural_rendering_resolution_final': 'NRR fade target (none = no fade)',
    'neural_rendering_resolution_fade_kimg': 'NRR fade length',
    'nrr_fade_start_kimg': 'kimg at which the NRR fade starts',
    'metric_pose_sample_mode': 'Body poses of metric samples',
    'bf16': 'bf16 autocast in G and D forward passes',
    'tf32': 'TF32 matmuls and convolutions (CUDA)',
    'compile': "torch.compile G's parts (D stays eager: R1 needs double backward)",
}

ORIGINAL_UNDERSCORE = (      # fields the original spelt with underscores: hidden aliases --gamma_seg, ...
    'seg_data', 'gamma_seg', 'resume_kimg', 'triplane_depth', 'back_repeat', 'neural_rendering_resolution_initial',
    'neural_rendering_resolution_final', 'neural_rendering_resolution_fade_kimg', 'blur_fade_kimg', 'gen_pose_cond',
    'gpc_reg_prob', 'gpc_reg_fade_kimg', 'disc_c_noise', 'sr_noise_mode', 'sr_num_fp16_res', 'g_num_fp16_res',
    'd_num_fp16_res', 'style_mixing_prob', 'density_reg', 'density_reg_every', 'density_reg_p_dist', 'reg_type',
    'decoder_lr_mul', 'pose_loss_weight', 'input_pose_params_reg_loss_weight', 'input_pose_params_reg_loss_kimg',
    'train_g_pose_branch', 'metric_pose_sample_mode', 'decoder_activation', 'use_torgb_raw', 'use_background',
    'bcg_reg_prob', 'density_noise_fade_kimg')
REQUIRED = ('outdir', 'preset', 'data')


class Maybe(click.ParamType):
    """`inner` or 'none' -> None (for the Optional numeric fields)."""

    def __init__(self, inner):
        self.inner, self.name = inner, f'{inner.name}|none'

    def convert(self, value, param, ctx):
        """None for 'none', else the inner type's value."""
        return None if value is None or str(value).lower() == 'none' else self.inner.convert(value, param, ctx)


class NameList(click.ParamType):
    """Comma-separated names -> tuple; 'none' or '' -> ()."""
    name = 'names'

    def convert(self, value, param, ctx):
        """Tuple of the non-empty, stripped names."""
        if isinstance(value, tuple):
            return value
        names = tuple(part.strip() for part in str(value).split(',') if part.strip())
        return () if names == ('none',) else names


class OneLineCommand(click.Command):
    """A click command whose errors (usage errors included) are one line on stderr."""

    def main(self, args=None, prog_name=None, **extra):
        """Run the command; print `Error: <message>` on one line and exit with click's code on failure."""
        extra['standalone_mode'] = False
        try:
            return super().main(args, prog_name, **extra)
        except click.ClickException as err:
            click.echo(f'Error: {" ".join(err.format_message().split())}', err=True)
            sys.exit(err.exit_code)
        except click.Abort:
            click.echo('Error: aborted', err=True)
            sys.exit(1)


def _click_type(field: dataclasses.Field):
    """The click type of a TrainingOptions field, from its annotation (and the choice lists)."""
    if field.name in CHOICES:
        return click.Choice(CHOICES[field.name])
    annotation = field.type
    optional = type(None) in typing.get_args(annotation)
    base = next(arg for arg in typing.get_args(annotation) if arg is not type(None)) if optional else annotation
    if typing.get_origin(base) is tuple:
        return NameList()
    inner = {int: click.INT, float: click.FLOAT, bool: click.BOOL, str: click.STRING}[base]
    return Maybe(inner) if optional and base in (int, float) else inner


def _field_option(field: dataclasses.Field):
    """The click option decorator of one field: dashed name, original underscore alias (hidden)."""
    names = ['--cfg', '--preset'] if field.name == 'preset' else [option_flag(field.name)]
    aliases = ('--' + field.name,) if field.name in ORIGINAL_UNDERSCORE else ()
    kind = _click_type(field)
    flag = dict(is_flag=False, flag_value=True) if kind is click.BOOL else {}
    return click.option(*names, *aliases, field.name, cls=cli_utils.AliasedOption, hidden_aliases=aliases, type=kind,
                        required=field.name in REQUIRED, help=HELP[field.name], **flag)


def training_options_cli(function):
    """Decorate `function` with one option per TrainingOptions field."""
    for field in reversed(dataclasses.fields(TrainingOptions)):
        function = _field_option(field)(function)
    return function


def resolve_options(values: dict) -> TrainingOptions:
    """The preset with the fields the user actually passed replaced and unset network fields taken from the
    network preset; ValueError (one line) if invalid."""
    ctx = click.get_current_context()
    base = get_training_preset(values['preset'])
    overrides = {name: value for name, value in values.items()
                 if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE}
    opts = with_network_defaults(dataclasses.replace(base, **overrides))
    validate(opts)
    return opts


def dry_run_report(opts, derived, spec, checked, run_dir) -> str:
    """The JSON that --dry-run prints: resolved options, derived values, launch, dataset and run dir."""
    return json.dumps(dict(options=dataclasses.asdict(opts), derived=dataclasses.asdict(derived),
                           launch=dataclasses.asdict(spec), device=str(checked.device), dataset=checked.dataset_stats,
                           resume=checked.resume, run_dir=run_dir), indent=2)


@click.command(cls=OneLineCommand, help=__doc__, context_settings=dict(max_content_width=120))
@training_options_cli
@click.option('-n', '--dry-run', is_flag=True, help='Print the resolved options as JSON and exit')
def main(dry_run, **values):
    """Resolve the options, run the pre-flight checks, then launch training (click help: the module docstring)."""
    try:
        opts = resolve_options(values)
        spec = launch.detect_launch(opts.gpus)
        derived = derive(opts, spec.world_size)
        checked = preflight.check_run(opts, spec)
    except (ValueError, preflight.PreflightError) as err:
        raise click.ClickException(str(err)) from None
    opts = dataclasses.replace(opts, resume=checked.resume)
    desc = preflight.run_desc(opts, checked.dataset_name, spec.world_size)
    if dry_run:
        if spec.rank == 0:
            run_dir = os.path.join(opts.outdir, f'{launch.next_run_id(opts.outdir):05d}-{desc}')
            click.echo(dry_run_report(opts, derived, spec, checked, run_dir))
        return
    try:
        launch.launch(opts, spec, desc)
    except launch.RunDirError as err:
        raise click.ClickException(str(err)) from None


if __name__ == '__main__':
    main()
