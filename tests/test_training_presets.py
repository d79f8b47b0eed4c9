"""Training presets: the three paper stages carry the numbers of system.md §1.5; tiny-cpu derives cleanly."""
import dataclasses

import pytest

from configs.presets import PRESETS
from configs.training_options import TrainingOptions, derive, validate, with_network_defaults
from configs.training_presets import TRAINING_PRESETS, get_training_preset

STAGES = ('portrait-stage1', 'portrait-stage2', 'portrait-stage3')
RECIPE = dict(      # original README flags shared by all stages (§1.5), as TrainingOptions fields
    batch=32, gamma=1.0, gamma_seg=1.0, use_torgb_raw=True, decoder_activation='none', bcg_reg_prob=0.2,
    triplane_depth=3, density_noise_fade_kimg=200, density_reg=0.0, gen_pose_cond=True, gpc_reg_prob=0.7,
    mirror=True, image_snap=25, pose_loss_weight=1.0, input_pose_params_reg_loss_weight=0.5,
    input_pose_params_reg_loss_kimg=200, thickness=0.25, network_preset='paper', gpc_reg_fade_kimg=1000,
    blur_fade_kimg=200, blur_init_sigma=10.0, neural_rendering_resolution_initial=64, tick=4, snap=50)
STAGE_VALUES = {    # (resume_kimg, kimg, train_g_pose_branch, metric mode, NRR final, NRR fade start)
    'portrait-stage1': (0, 6000, True, 'G_predict', None, 0),
    'portrait-stage2': (6000, 10000, False, 'D_predict', None, 0),
    'portrait-stage3': (10000, 14000, False, 'D_predict', 128, 10000),
}


@pytest.mark.parametrize('name', STAGES)
def test_stage_presets_carry_the_paper_recipe(name):
    preset = get_training_preset(name)
    assert preset.preset == name
    for field, value in RECIPE.items():
        assert getattr(preset, field) == value, field
    resume_kimg, kimg, pose_branch, mode, nrr_final, nrr_start = STAGE_VALUES[name]
    assert (preset.resume_kimg, preset.kimg, preset.train_g_pose_branch, preset.metric_pose_sample_mode) == \
        (resume_kimg, kimg, pose_branch, mode)
    assert (preset.neural_rendering_resolution_final, preset.nrr_fade_start_kimg) == (nrr_final, nrr_start)
    assert PRESETS[preset.network_preset].triplane_depth == 3 and PRESETS['paper'].img_resolution == 512


def test_stages_chain_without_gaps():
    stages = [get_training_preset(name) for name in STAGES]
    assert stages[0].resume_kimg == 0
    for earlier, later in zip(stages, stages[1:]):
        assert later.resume_kimg == earlier.kimg          # README's --kimg=16000 for stage 2 is the typo
    stage3 = stages[2]
    assert stage3.neural_rendering_resolution_fade_kimg == 1000 and stage3.nrr_fade_start_kimg == stages[1].kimg


def test_stages_1_and_2_keep_the_nrr_fixed():
    for name in STAGES[:2]:
        assert get_training_preset(name).neural_rendering_resolution_final is None


@pytest.mark.parametrize('name', STAGES)
def test_stage_presets_derive_on_8_processes(name):
    opts = dataclasses.replace(get_training_preset(name), resume='stage.pkl' if name != STAGES[0] else None)
    validate(opts)
    derived = derive(opts, world_size=8)
    assert (derived.batch_gpu, derived.accumulation) == (4, 1)           # 4 per GPU x 8, as the original
    assert derived.ema_kimg == pytest.approx(10.0)                      # batch * 10 / 32
    assert derived.blur_fade_kimg == pytest.approx(200.0)               # 200 * 32 / 32
    one_gpu = derive(dataclasses.replace(opts, batch_gpu=4), world_size=1)
    assert (one_gpu.batch_gpu, one_gpu.accumulation) == (4, 8)          # the same global batch by accumulation


def test_later_stages_need_a_resume_file():
    for name in STAGES[1:]:
        with pytest.raises(ValueError, match='--resume-kimg=.* needs --resume'):
            validate(get_training_preset(name))


def test_tiny_cpu_preset():
    opts = get_training_preset('tiny-cpu')
    validate(opts)
    network = PRESETS[opts.network_preset]
    assert opts.network_preset == 'tiny-cpu' and opts.batch == 4 and opts.metrics == ()
    assert opts.neural_rendering_resolution_initial is None                 # one home: the network preset's
    resolved = with_network_defaults(opts)
    assert resolved.neural_rendering_resolution_initial == network.neural_rendering_resolution == 16
    assert (resolved.sr_num_fp16_res, resolved.d_num_fp16_res) == (network.sr_num_fp16_res, network.d_num_fp16_res)
    assert opts.tick <= 1 and opts.snap * opts.tick <= 2 and opts.image_snap == opts.snap    # grids with snapshots
    derived = derive(opts, world_size=1)
    assert (derived.batch_gpu, derived.accumulation) == (4, 1)
    assert derived.blur_fade_kimg == pytest.approx(16 * 4 / 32)
    two = derive(opts, world_size=2)                                    # a 2-process CPU run works too
    assert (two.batch_gpu, two.accumulation) == (2, 1)
    for fade in (derived.blur_fade_kimg, opts.density_noise_fade_kimg, opts.gpc_reg_fade_kimg):
        assert fade <= opts.kimg                                        # a short run sees its fades end


def test_presets_are_training_options():
    assert set(TRAINING_PRESETS) == {*STAGES, 'tiny-cpu'}
    assert all(isinstance(p, TrainingOptions) for p in TRAINING_PRESETS.values())


def test_unknown_preset_is_one_line_listing_the_names():
    with pytest.raises(ValueError) as info:
        get_training_preset('full-head')
    message = str(info.value)
    assert '\n' not in message and "'full-head'" in message
    assert all(name in message for name in TRAINING_PRESETS)
