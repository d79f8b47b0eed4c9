"""Training presets (system.md §1.5): the original's three-stage recipe and a small CPU run.

Each preset is a TrainingOptions instance: the defaults of configs/training_options.py with the
overrides below. train.py's `--cfg`/`--preset` picks one; flags given on the command line then
override single fields.

The paper recipe (original README, 8 GPUs, batch 32; `--resume` is the previous stage's final
network snapshot):

| preset | kimg span | G pose branch | NRR | metric poses |
|---|---|---|---|---|
| portrait-stage1 | 0 -> 6000 | trained | 64 | G_predict |
| portrait-stage2 | 6000 -> 10000 | frozen | 64 | D_predict |
| portrait-stage3 | 10000 -> 14000 | frozen | 64 -> 128 over [10000, 11000] kimg | D_predict |

The original README launches stage 2 with `--kimg=16000` and stage 3 from `stage3.pkl` at 10000
kimg; both are typos (§12 item 6): stage 2 ends where stage 3 starts, at 10000 kimg, and stage 3
resumes from stage 2's output. Every schedule runs on the one absolute image counter (see
training_options.py), so the stage-1 fades (blur, density noise, Lpreg, conditioning swap) are
long over in stages 2 and 3 without being switched off by hand.

`tiny-cpu` trains the tiny-cpu network on the synthetic 64x64 set (dataset_tool.py synthetic)
on a laptop CPU: batch 4, a status line every kimg, snapshots and image grids every 2 kimg, and the blur,
density-noise and conditioning-swap fades and Lpreg's full-weight span shortened about 100x, so
that a run of a few kimg sees them at work and ending. Lpreg's decay keeps the original's 200 kimg:
compressed to 2 kimg, G's poses drifted away from the real ones and D's pose error on reals grew
(docs/results.md).
Its neural rendering resolution and fp16 settings are the tiny-cpu network preset's (unset network
fields come from the network preset: training_options.with_network_defaults).
"""
from typing import Dict

from configs.training_options import TrainingOptions

PAPER_RECIPE = dict(                 # every stage of the original README (§1.5)
    network_preset='paper', batch=32, gamma=1.0, gamma_seg=1.0, use_torgb_raw=True, decoder_activation='none',
    bcg_reg_prob=0.2, triplane_depth=3, density_noise_fade_kimg=200, density_reg=0.0, gen_pose_cond=True,
    gpc_reg_prob=0.7, gpc_reg_fade_kimg=1000, mirror=True, back_repeat=0.0, tick=4, snap=50, image_snap=25,
    pose_loss_weight=1.0, input_pose_params_reg_loss_weight=0.5, input_pose_params_reg_loss_kimg=200,
    thickness=0.25, blur_init_sigma=10.0, blur_fade_kimg=200, neural_rendering_resolution_initial=64,
    metrics=('fid50k_full',))

STAGE1_END_KIMG = 6000
STAGE2_END_KIMG = 10000
STAGE3_END_KIMG = 14000
STAGE3_NRR_FINAL = 128
STAGE3_NRR_FADE_KIMG = 1000

_OVERRIDES: Dict[str, dict] = {
    'portrait-stage1': dict(
        PAPER_RECIPE, kimg=STAGE1_END_KIMG, train_g_pose_branch=True, metric_pose_sample_mode='G_predict'),
    'portrait-stage2': dict(
        PAPER_RECIPE, resume_kimg=STAGE1_END_KIMG, kimg=STAGE2_END_KIMG, train_g_pose_branch=False,
        metric_pose_sample_mode='D_predict', ema_rampup=None),
    'portrait-stage3': dict(
        PAPER_RECIPE, resume_kimg=STAGE2_END_KIMG, kimg=STAGE3_END_KIMG, train_g_pose_branch=False,
        metric_pose_sample_mode='D_predict', ema_rampup=None, neural_rendering_resolution_final=STAGE3_NRR_FINAL,
        neural_rendering_resolution_fade_kimg=STAGE3_NRR_FADE_KIMG, nrr_fade_start_kimg=STAGE2_END_KIMG),
    'tiny-cpu': dict(
        network_preset='tiny-cpu', batch=4, mbstd_group=2, workers=0, kimg=10, tick=1, snap=2, image_snap=2,
        metrics=(), gamma=1.0, gamma_seg=1.0, mirror=True, blur_fade_kimg=16, density_noise_fade_kimg=2, gpc_reg_fade_kimg=10,
        input_pose_params_reg_loss_kimg=2),
}

TRAINING_PRESETS: Dict[str, TrainingOptions] = {
    name: TrainingOptions(preset=name, **overrides) for name, overrides in _OVERRIDES.items()}


def get_training_preset(name: str) -> TrainingOptions:
    """The training preset called `name`; ValueError (one line) listing the known names otherwise."""
    if name not in TRAINING_PRESETS:
        raise ValueError(f'preset: expected one of {", ".join(TRAINING_PRESETS)}, got {name!r}')
    return TRAINING_PRESETS[name]

