"""Training schedules (system.md §1.5, §2.11, §4.1, §4.3, §5) as pure functions of the image counter.

Every value below depends only on (opts, derived, cur_nimg), where cur_nimg is the ONE absolute
image counter of configs/training_options.py (kimg = cur_nimg / 1000). A resumed run that
continues the counter therefore sees exactly the values the uninterrupted run would have seen;
nothing is switched off on resume (unlike the original, §12 item 14).
"""
from dataclasses import dataclass

from configs.training_options import DerivedOptions, TrainingOptions


@dataclass(frozen=True)
class ScheduleValues:
    """The scheduled quantities at one image count.

    blur_sigma: std (pixels of the final resolution) of the Gaussian blur of D's inputs (§5);
    swap_prob: probability that a fake's mapping conditioning is its batch neighbour's (§4.3);
    density_noise: std of the Gaussian noise on raw density (§1.1 --density_noise_fade_kimg);
    nrr: neural rendering resolution (§2.11); pose_reg_weight: weight of Lpreg (§4.1).
    """
    blur_sigma: float
    swap_prob: float
    density_noise: float
    nrr: int
    pose_reg_weight: float


def _fade_out(kimg: float, fade_kimg: float) -> float:
    """1 - kimg / fade_kimg clamped at 0 (a linear fade 1 -> 0 over [0, fade_kimg]); 0 when fade_kimg is 0."""
    return max(1.0 - kimg / fade_kimg, 0.0) if fade_kimg > 0 else 0.0


def blur_sigma_at(opts: TrainingOptions, derived: DerivedOptions, kimg: float) -> float:
    """sigma = blur_init_sigma * max(1 - kimg / blur_fade_kimg, 0), the fade length already scaled by
    batch / 32 in `derived` (§5 "Blur", §1.3); 0 when the fade length is 0 (EG3D loss)."""
    return opts.blur_init_sigma * _fade_out(kimg, derived.blur_fade_kimg)


def swap_prob_at(opts: TrainingOptions, kimg: float) -> float:
    """(1 - a) * 1 + a * gpc_reg_prob with a = min(kimg / gpc_reg_fade_kimg, 1) (§4.3): every conditioning
    is swapped at kimg 0, gpc_reg_prob from the end of the fade on (at once if the fade is 0). 0 when
    gen_pose_cond is False (the mapping conditioning is then all zeros and nothing is swapped)."""
    if not opts.gen_pose_cond:
        return 0.0
    a = min(kimg / opts.gpc_reg_fade_kimg, 1.0) if opts.gpc_reg_fade_kimg > 0 else 1.0
    return (1.0 - a) + a * opts.gpc_reg_prob


def density_noise_at(opts: TrainingOptions, kimg: float) -> float:
    """max(1 - kimg / density_noise_fade_kimg, 0); 0 when the fade is 0 (§1.1, PanoHead)."""
    return _fade_out(kimg, opts.density_noise_fade_kimg)


def nrr_at(opts: TrainingOptions, kimg: float) -> int:
    """Neural rendering resolution (§2.11): `initial`, or with a final value the linear fade
    a = clamp((kimg - nrr_fade_start_kimg) / fade_kimg, 0, 1), r = rint((1 - a) initial + a final).

    Rounding as the original (np.rint): to the nearest integer, halves to the even neighbour
    (Python's round() does the same). A fade of length 0 jumps to `final` at the start kimg. The
    start is explicit where the original counted from the resume point (§12 item 14).
    """
    initial, final = opts.neural_rendering_resolution_initial, opts.neural_rendering_resolution_final
    if final is None:
        return int(initial)
    since = kimg - opts.nrr_fade_start_kimg
    fade = opts.neural_rendering_resolution_fade_kimg
    a = min(max(since / fade, 0.0), 1.0) if fade > 0 else float(since >= 0)
    return int(round((1.0 - a) * initial + a * final))


def pose_reg_weight_at(opts: TrainingOptions, kimg: float) -> float:
    """Lpreg weight (§4.1): w for kimg < K, then w * (1 - (kimg - K) / L) down to 0 at K + L, 0 after;
    w = input_pose_params_reg_loss_weight, K = input_pose_params_reg_loss_kimg,
    L = input_pose_params_reg_loss_decay_kimg (the original's fixed 200)."""
    w, k = opts.input_pose_params_reg_loss_weight, opts.input_pose_params_reg_loss_kimg
    return w * min(max(1.0 - (kimg - k) / opts.input_pose_params_reg_loss_decay_kimg, 0.0), 1.0)


def schedule_at(opts: TrainingOptions, derived: DerivedOptions, cur_nimg: int) -> ScheduleValues:
    """All scheduled values after cur_nimg real images (the absolute counter); a pure function."""
    if cur_nimg < 0:
        raise ValueError(f'cur_nimg: expected >= 0, got {cur_nimg}')
    kimg = cur_nimg / 1000
    return ScheduleValues(blur_sigma=blur_sigma_at(opts, derived, kimg), swap_prob=swap_prob_at(opts, kimg),
                          density_noise=density_noise_at(opts, kimg), nrr=nrr_at(opts, kimg),
                          pose_reg_weight=pose_reg_weight_at(opts, kimg))
