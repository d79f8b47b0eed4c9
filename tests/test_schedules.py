"""Training schedules (training/schedules.py, system.md §2.11, §4.1, §4.3, §5) against hand-computed values."""
import dataclasses

import pytest

from configs.training_options import TrainingOptions, derive
from training.schedules import ScheduleValues, schedule_at

# The paper recipe's fades (§1.5) at batch 32, so that the blur fade is 200 kimg after the batch / 32 scaling.
PAPER = TrainingOptions(batch=32, batch_gpu=4, blur_init_sigma=10, blur_fade_kimg=200, gen_pose_cond=True,
                        gpc_reg_prob=0.7, gpc_reg_fade_kimg=1000, density_noise_fade_kimg=200,
                        neural_rendering_resolution_initial=64, neural_rendering_resolution_final=None,
                        input_pose_params_reg_loss_weight=0.5, input_pose_params_reg_loss_kimg=200)


def _at(kimg, **changes):
    opts = dataclasses.replace(PAPER, **changes)
    return schedule_at(opts, derive(opts, 1), int(round(kimg * 1000)))


@pytest.mark.parametrize('kimg, sigma', [(0, 10.0), (50, 7.5), (100, 5.0), (199, 0.05), (200, 0.0), (5000, 0.0)])
def test_blur_fades_linearly_to_zero(kimg, sigma):
    assert _at(kimg).blur_sigma == pytest.approx(sigma, abs=1e-12)


def test_blur_fade_scales_with_batch_and_zero_fade_means_no_blur():
    assert _at(12.5, batch=4, batch_gpu=4).blur_sigma == pytest.approx(5.0)   # fade 200 * 4 / 32 = 25 kimg
    assert _at(0, blur_fade_kimg=0).blur_sigma == 0.0


@pytest.mark.parametrize('kimg, prob', [(0, 1.0), (250, 0.925), (500, 0.85), (1000, 0.7), (9000, 0.7)])
def test_swap_probability_fades_from_one_to_gpc_reg_prob(kimg, prob):
    assert _at(kimg).swap_prob == pytest.approx(prob, abs=1e-12)


def test_swap_probability_without_fade_or_without_pose_conditioning():
    assert _at(0, gpc_reg_fade_kimg=0).swap_prob == pytest.approx(0.7)
    assert _at(0, gen_pose_cond=False).swap_prob == 0.0
    assert _at(500, gen_pose_cond=False).swap_prob == 0.0


@pytest.mark.parametrize('kimg, sigma', [(0, 1.0), (50, 0.75), (150, 0.25), (200, 0.0), (6000, 0.0)])
def test_density_noise_fades_from_one_to_zero(kimg, sigma):
    assert _at(kimg).density_noise == pytest.approx(sigma, abs=1e-12)


def test_density_noise_is_off_without_fade():
    assert _at(0, density_noise_fade_kimg=0).density_noise == 0.0


STAGE3 = dict(neural_rendering_resolution_initial=64, neural_rendering_resolution_final=128,
              neural_rendering_resolution_fade_kimg=1000, nrr_fade_start_kimg=10000)


@pytest.mark.parametrize('kimg, nrr', [(0, 64), (10000, 64), (10250, 80), (10500, 96), (10999, 128),
                                       (11000, 128), (14000, 128)])
def test_nrr_fades_linearly_from_the_stated_start(kimg, nrr):
    value = _at(kimg, **STAGE3).nrr
    assert value == nrr and isinstance(value, int)


def test_nrr_without_final_is_constant_and_zero_fade_jumps_at_start():
    assert _at(8000).nrr == 64
    assert _at(9999, **{**STAGE3, 'neural_rendering_resolution_fade_kimg': 0}).nrr == 64
    assert _at(10000, **{**STAGE3, 'neural_rendering_resolution_fade_kimg': 0}).nrr == 128


@pytest.mark.parametrize('initial, final, nrr', [(64, 65, 64), (63, 64, 64), (65, 66, 66), (66, 67, 66)])
def test_nrr_rounds_halves_to_even_like_np_rint(initial, final, nrr):
    # Halfway through the fade the value is initial + 0.5: np.rint gives the even neighbour.
    assert _at(500, neural_rendering_resolution_initial=initial, neural_rendering_resolution_final=final,
               neural_rendering_resolution_fade_kimg=1000, nrr_fade_start_kimg=0).nrr == nrr


@pytest.mark.parametrize('kimg, weight', [(0, 0.5), (199.999, 0.5), (200, 0.5), (250, 0.375), (300, 0.25),
                                          (400, 0.0), (6000, 0.0)])
def test_pose_reg_weight_holds_then_decays_over_200_kimg(kimg, weight):
    assert _at(kimg).pose_reg_weight == pytest.approx(weight, abs=1e-12)


@pytest.mark.parametrize('kimg, weight', [(1.999, 0.5), (2.5, 0.375), (3, 0.25), (4, 0.0), (60, 0.0)])
def test_pose_reg_decay_length_is_an_option(kimg, weight):
    compressed = dict(input_pose_params_reg_loss_kimg=2, input_pose_params_reg_loss_decay_kimg=2)
    assert _at(kimg, **compressed).pose_reg_weight == pytest.approx(weight, abs=1e-12)


def test_stage2_after_resume_sees_the_finished_fades():
    # Stage 2 resumes at 6000 kimg of the absolute counter (§1.5): blur, density noise and Lpreg off,
    # swap probability at gpc_reg_prob.
    assert _at(6000) == ScheduleValues(blur_sigma=0.0, swap_prob=0.7, density_noise=0.0, nrr=64,
                                       pose_reg_weight=0.0)


def test_same_counter_gives_same_values_after_a_simulated_resume():
    # A resumed run rebuilds the options from training_options.json (a dict) and continues the counter.
    opts = dataclasses.replace(PAPER, **STAGE3)
    rebuilt = TrainingOptions(**dataclasses.asdict(opts))
    for nimg in (0, 37_000, 150_000, 10_400_000):
        assert schedule_at(opts, derive(opts, 1), nimg) == schedule_at(rebuilt, derive(rebuilt, 2), nimg)


def test_negative_counter_is_rejected():
    with pytest.raises(ValueError, match='cur_nimg'):
        schedule_at(PAPER, derive(PAPER, 1), -1)
