"""Every option of a training run (system.md §1, §4, §5), as one typed, frozen dataclass.

train.py's click options map 1:1 onto these fields (the original's underscore spellings are
hidden aliases); the stage presets in configs/training_presets.py are instances of this class;
`training_options.json` in a run dir is `dataclasses.asdict` of it plus the derived values.

The image counter: every schedule below is a function of ONE counter, `cur_nimg`, the number of
real images shown to D since the start of stage 1 (the absolute counter, "kimg" = cur_nimg / 1000).
A run resumed from a training state continues that counter; a run started from a network snapshot
of an earlier stage starts it at `resume_kimg`. So stage 2 (resumed at 6000 kimg) sees the blur,
density-noise, Lpreg and GPC fades long finished, as in the original, but for a stated reason
rather than because the fades were switched off on resume (§12 item 14). Fades that should start
later than kimg 0 (the stage-3 NRR fade) say where they start (`nrr_fade_start_kimg`).
"""
from dataclasses import dataclass, replace
from typing import Optional, Tuple

from configs.presets import PRESETS


@dataclass(frozen=True)
class TrainingOptions:
    """One training run. Units: kimg = thousands of real images shown to D (the absolute counter above)."""
    # --- run ---
    outdir: str = ''                       # parent of the run dirs NNNNN-desc
    desc: Optional[str] = None             # run-dir suffix (None: derived from preset, data, batch, gamma)
    preset: str = 'tiny-cpu'               # training preset name (configs/training_presets.py)
    network_preset: str = 'tiny-cpu'       # network capacities (configs/presets.py: paper | tiny-cpu | bench)
    seed: int = 0
    kimg: float = 25000                    # stop when cur_nimg >= kimg * 1000 (absolute, includes the resume offset)
    tick: float = 4                        # kimg per tick (one status line)
    snap: int = 50                         # ticks between network snapshots + training states + metrics
    image_snap: int = 50                   # ticks between image grids
    keep: int = 3                          # training states kept (older ones deleted); network snapshots are all kept
    metrics: Tuple[str, ...] = ()          # metric names evaluated at every network snapshot
    metrics_num_gen: Optional[int] = None  # generated images per snapshot metric (None: each metric's own count)
    resume: Optional[str] = None           # None | 'auto' (newest training state in outdir) | a training-state .pt or network .pkl
    resume_kimg: float = 0                 # counter start when resuming from a network snapshot (not from a training state)
    device: str = 'auto'                   # 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps'
    gpus: int = 1                          # local processes to spawn (EG3D habit); torchrun/SLURM set the world instead
    batch: int = 4                         # global batch = batch_gpu * world_size * accumulation
    batch_gpu: Optional[int] = None        # per-process micro-batch (None: batch // world_size)
    workers: int = 2                       # DataLoader workers per process
    # --- data ---
    data: str = ''                         # image zip or folder with dataset.json (31-float labels)
    seg_data: Optional[str] = None         # mask zip or folder, paired by file name (None: masks inside `data`)
    mirror: bool = True                    # x-flip augmentation (flips camera and pose)
    back_repeat: float = 0.0               # share of back-view items after rebalancing (0 = off)
    max_size: Optional[int] = None         # use at most this many images
    smpl_path: Optional[str] = None        # folder with SMPL_NEUTRAL.pkl (None: the procedural stand-in body)
    # --- network overrides (None: from network_preset) ---
    cbase: Optional[int] = None
    cmax: Optional[int] = None
    map_depth: Optional[int] = None
    mbstd_group: int = 4
    triplane_depth: Optional[int] = None
    decoder_activation: Optional[str] = None
    use_torgb_raw: Optional[bool] = None
    use_background: Optional[bool] = None
    thickness: Optional[float] = None
    c_scale: Optional[float] = None
    sr_noise_mode: Optional[str] = None
    g_num_fp16_res: Optional[int] = None
    sr_num_fp16_res: Optional[int] = None
    d_num_fp16_res: Optional[int] = None
    disc_c_noise: Optional[float] = None
    freezed: int = 0                       # freeze the first N D blocks
    # --- optimisation ---
    glr: float = 0.0025
    dlr: float = 0.002
    decoder_lr_mul: float = 1.0
    ema_kimg: Optional[float] = None       # EMA half-life (None: batch * 10 / 32)
    ema_rampup: Optional[float] = 0.05     # EMA ramp-up ratio (None: off)
    d_reg_interval: int = 16               # lazy R1 every N minibatches
    train_g_pose_branch: bool = True       # False freezes G's pose branch (stages 2-3)
    # --- loss (§4, §5) ---
    gamma: float = 1.0                     # R1 weight on image + raw image
    gamma_seg: float = 1.0                 # R1 weight on the mask input
    pose_loss_weight: float = 1.0          # D pose loss on fakes
    input_pose_params_reg_loss_weight: float = 0.5   # Lpreg weight
    input_pose_params_reg_loss_kimg: float = 200     # Lpreg full weight until here, then linear to 0 ...
    input_pose_params_reg_loss_decay_kimg: float = 200   # ... over this many kimg (the original: fixed 200)
    style_mixing_prob: float = 0.0
    bcg_reg_prob: float = 0.2              # probability of swapping the background w with another sample's
    density_reg: float = 0.0               # density (TV) regulariser strength (0 = off)
    density_reg_every: int = 4             # lazy G-reg interval
    density_reg_p_dist: float = 0.004
    reg_type: str = 'l1'                   # 'l1' | 'monotonic-detach' | 'monotonic-fixed'
    gen_pose_cond: bool = True             # mapping conditioned on (camera, pose); False = zero conditioning
    gpc_reg_prob: float = 0.7              # final conditioning-swap probability
    gpc_reg_fade_kimg: float = 1000        # swap probability fades 1 -> gpc_reg_prob over [0, this]
    blur_init_sigma: float = 10.0          # D-input blur sigma at kimg 0 (pixels)
    blur_fade_kimg: float = 200            # blur fades to 0 over this many kimg (at batch 32; scaled by batch / 32)
    density_noise_fade_kimg: float = 200   # raw-density noise sigma fades 1 -> 0 over this many kimg (0 = off)
    neural_rendering_resolution_initial: Optional[int] = None   # None: the network preset's NRR
    neural_rendering_resolution_final: Optional[int] = None   # None: no NRR fade
    neural_rendering_resolution_fade_kimg: float = 1000
    nrr_fade_start_kimg: float = 0         # the NRR fade runs over [start, start + fade_kimg]
    metric_pose_sample_mode: str = 'G_predict'   # 'G_predict' | 'D_predict'
    # --- speed ---
    bf16: bool = False                     # bf16 autocast for G and D forward passes
    tf32: bool = False                     # TF32 matmuls/convolutions on CUDA
    compile: bool = False                  # torch.compile G and D


# TrainingOptions fields that default to the network preset's value (None in the options), with the
# NetworkPreset attribute they come from. cbase, cmax, map_depth, triplane_depth and decoder_activation
# are None-means-preset too, but are applied as overrides of the built kwargs (training/run_setup.py).
NETWORK_DEFAULTS = {
    'use_torgb_raw': 'use_torgb_raw', 'use_background': 'use_background', 'thickness': 'thickness',
    'c_scale': 'c_scale', 'sr_noise_mode': 'sr_noise_mode', 'g_num_fp16_res': 'g_num_fp16_res',
    'sr_num_fp16_res': 'sr_num_fp16_res', 'd_num_fp16_res': 'd_num_fp16_res', 'disc_c_noise': 'disc_c_noise',
    'neural_rendering_resolution_initial': 'neural_rendering_resolution'}


def network_defaults(options: dict) -> dict:
    """{field: the network preset's value} for the NETWORK_DEFAULTS fields that are None (or missing) in
    `options` (a TrainingOptions as a dict, e.g. one saved in a training state)."""
    name = options.get('network_preset')
    if name not in PRESETS:
        raise ValueError(f'--network-preset: expected one of {", ".join(PRESETS)}, got {name!r}')
    return {field: getattr(PRESETS[name], attribute) for field, attribute in NETWORK_DEFAULTS.items()
            if options.get(field) is None}


def with_network_defaults(opts: TrainingOptions) -> TrainingOptions:
    """opts with every unset (None) NETWORK_DEFAULTS field taken from its network preset (idempotent)."""
    return replace(opts, **network_defaults(vars(opts)))


@dataclass(frozen=True)
class DerivedOptions:
    """Values that follow from TrainingOptions and the world size (validated once, before training)."""
    world_size: int
    batch_gpu: int                         # per-process micro-batch
    accumulation: int                      # micro-batches per process per optimiser step
    ema_kimg: float                        # EMA half-life
    blur_fade_kimg: float                  # blur fade length after the batch / 32 scaling (§1.3)


def derive(opts: TrainingOptions, world_size: int) -> DerivedOptions:
    """Check the batch arithmetic (global batch = batch_gpu * world_size * accumulation) and derive the rest.

    Raises ValueError naming the offending option.
    """
    if world_size < 1:
        raise ValueError(f'world size: expected >= 1, got {world_size}')
    if opts.batch < 1:
        raise ValueError(f'--batch: expected >= 1, got {opts.batch}')
    batch_gpu = opts.batch // world_size if opts.batch_gpu is None else opts.batch_gpu
    if batch_gpu < 1 or opts.batch % (batch_gpu * world_size):
        raise ValueError(f'--batch={opts.batch} is not a multiple of --batch-gpu={batch_gpu} x {world_size} processes')
    if opts.mbstd_group > batch_gpu or batch_gpu % opts.mbstd_group:
        raise ValueError(f'--mbstd-group={opts.mbstd_group} does not divide the per-process batch {batch_gpu}')
    ema_kimg = opts.batch * 10 / 32 if opts.ema_kimg is None else opts.ema_kimg
    return DerivedOptions(world_size=world_size, batch_gpu=batch_gpu,
                          accumulation=opts.batch // (batch_gpu * world_size), ema_kimg=ema_kimg,
                          blur_fade_kimg=opts.blur_fade_kimg * opts.batch / 32)


REG_TYPES = ('l1', 'monotonic-detach', 'monotonic-fixed')           # density regulariser variants (§1.1)
REJECTED_REG_TYPES = ('l1-alt', 'total-variation')   # accepted by the original, never implemented (§12 item 11)
DECODER_ACTIVATIONS = ('none', 'sigmoid', 'lrelu')                   # None: the network preset's choice
SR_NOISE_MODES = ('random', 'none')
METRIC_POSE_SAMPLE_MODES = ('G_predict', 'D_predict')               # §4.4
CHOICES = {'reg_type': REG_TYPES, 'decoder_activation': DECODER_ACTIVATIONS, 'sr_noise_mode': SR_NOISE_MODES,
            'metric_pose_sample_mode': METRIC_POSE_SAMPLE_MODES}
_PROBABILITIES = ('bcg_reg_prob', 'gpc_reg_prob', 'style_mixing_prob')
_POSITIVE = ('kimg', 'tick', 'glr', 'dlr', 'thickness', 'decoder_lr_mul', 'input_pose_params_reg_loss_decay_kimg')
_AT_LEAST_ONE = ('batch', 'batch_gpu', 'snap', 'image_snap', 'keep', 'gpus', 'd_reg_interval', 'density_reg_every',
                 'mbstd_group', 'max_size', 'cbase', 'cmax', 'map_depth', 'triplane_depth',
                 'neural_rendering_resolution_initial', 'neural_rendering_resolution_final')
_NON_NEGATIVE = ('resume_kimg', 'workers', 'g_num_fp16_res', 'sr_num_fp16_res', 'd_num_fp16_res', 'disc_c_noise',
                 'freezed', 'ema_kimg', 'ema_rampup', 'gamma', 'gamma_seg', 'pose_loss_weight',
                 'input_pose_params_reg_loss_weight', 'input_pose_params_reg_loss_kimg', 'density_reg',
                 'density_reg_p_dist', 'gpc_reg_fade_kimg', 'blur_init_sigma', 'blur_fade_kimg',
                 'density_noise_fade_kimg', 'neural_rendering_resolution_fade_kimg', 'nrr_fade_start_kimg', 'c_scale')


def option_flag(field_name: str) -> str:
    """The train.py flag of a TrainingOptions field: 'gamma_seg' -> '--gamma-seg'."""
    return '--' + field_name.replace('_', '-')


def check_reg_type(reg_type: str) -> None:
    """ValueError naming --reg-type unless it is one of REG_TYPES (the original's unimplemented ones say so)."""
    if reg_type in REJECTED_REG_TYPES:
        raise ValueError(f'--reg-type={reg_type}: the original accepted it but never implemented it '
                         f'(system.md §12 item 11); use one of {", ".join(REG_TYPES)}')
    if reg_type not in REG_TYPES:
        raise ValueError(f'--reg-type={reg_type}: expected one of {", ".join(REG_TYPES)}')


def check_ranges(opts: TrainingOptions) -> None:
    """ValueError naming the first out-of-range numeric field (None values are allowed)."""
    rules = [(_PROBABILITIES, lambda v: 0 <= v <= 1, 'a probability in [0, 1]'),
             (_POSITIVE, lambda v: v > 0, 'a number > 0'),
             (_AT_LEAST_ONE, lambda v: v >= 1, 'an integer >= 1'),
             (_NON_NEGATIVE, lambda v: v >= 0, 'a number >= 0'),
             (('back_repeat',), lambda v: 0 <= v < 1, 'a share in [0, 1)'),
             (('metrics_num_gen',), lambda v: v >= 2, 'an integer >= 2')]
    for names, ok, expected in rules:
        for name in names:
            value = getattr(opts, name)
            if value is not None and not ok(value):
                raise ValueError(f'{option_flag(name)}={value}: expected {expected}')


def validate(opts: TrainingOptions) -> None:
    """Check choices, ranges and combinations of the fields (not files or the world size; see derive()).

    Raises ValueError with a one-line message naming the offending option.
    """
    if opts.network_preset not in PRESETS:
        raise ValueError(f'--network-preset: expected one of {", ".join(PRESETS)}, got {opts.network_preset!r}')
    for name, choices in CHOICES.items():
        value = getattr(opts, name)
        if value is not None and value not in choices:
            raise ValueError(f'{option_flag(name)}: expected one of {", ".join(choices)}, got {value!r}')
    check_ranges(opts)
    if opts.resume_kimg > 0 and opts.resume is None:
        raise ValueError(f'--resume-kimg={opts.resume_kimg:g} needs --resume (the previous stage\'s network snapshot)')
    if opts.kimg <= opts.resume_kimg:
        raise ValueError(f'--kimg={opts.kimg:g} must exceed --resume-kimg={opts.resume_kimg:g} (kimg is absolute)')
    resolution = PRESETS[opts.network_preset].img_resolution
    for name in ('neural_rendering_resolution_initial', 'neural_rendering_resolution_final'):
        value = getattr(opts, name)
        if value is not None and value > resolution:
            raise ValueError(f'{option_flag(name)}={value} exceeds the image resolution {resolution} of '
                             f'--network-preset={opts.network_preset}')
