"""Training phases: which module each phase trains, with which Adam, how often (system.md §1.3, §1.4).

A phase is one (module, optimiser, interval) step of the alternating GAN game: G's main loss, G's
lazy density regulariser, D's main loss, D's lazy R1. With lazy regularisation every k steps
(Karras et al. 2020, StyleGAN2 appendix B) the main and reg phases share one Adam whose learning
rate is scaled by k / (k + 1) and betas raised to the power k / (k + 1); with k = 1 or no
regulariser the phase is "both" with plain hyper-parameters.
"""
import math
from dataclasses import dataclass
from typing import Iterable, List, Tuple

import torch

from configs.training_options import DerivedOptions, TrainingOptions

ADAM_BETAS = (0.0, 0.99)          # §1.3
ADAM_EPS = 1e-8
POSINF_GRAD = 1e5                 # non-finite gradients: nan -> 0, +-inf -> +-1e5 (§1.4)
FUSED_ADAM_DEVICES = {'cpu', 'cuda'}   # devices with torch's fused Adam kernel
POSE_BRANCH_PREFIX = 'pose_branch.'
DECODER_PREFIX = 'decoder.'
PHASE_NAMES = ('Gmain', 'Greg', 'Gboth', 'Dmain', 'Dreg', 'Dboth')


@dataclass
class Phase:
    """One phase: name in PHASE_NAMES, the module it trains (G or D), its optimiser, and its interval
    (run when the step index is a multiple of it; the loop passes gain = interval / accumulation)."""
    name: str
    module: torch.nn.Module
    opt: torch.optim.Optimizer
    interval: int

    @property
    def params(self) -> List[torch.Tensor]:
        """The parameters this phase's optimiser steps (excludes frozen ones)."""
        return [p for group in self.opt.param_groups for p in group['params']]


def g_trainable(G: torch.nn.Module, opts: TrainingOptions) -> List[Tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of G that the G optimiser steps: all but the pose branch when
    train_g_pose_branch is False (stages 2-3, §4.1)."""
    return [(name, p) for name, p in G.named_parameters()
            if opts.train_g_pose_branch or not name.startswith(POSE_BRANCH_PREFIX)]


def frozen_d_blocks(D: torch.nn.Module, freezed: int) -> List[str]:
    """Name prefixes of D's first `freezed` blocks, from the input side (b{R}, b{R/2}, ..., b4 = epilogue).

    Whole resolution blocks, as configs/training_options.py states (StyleGAN2-ADA's freeze_layers counted
    layers); D is built unfrozen and the optimiser leaves these parameters out.
    """
    if freezed == 0:
        return []
    blocks = [f'backbone.b{res}.' for res in D.backbone.block_resolutions] + ['backbone.b4.']
    if not 0 <= freezed <= len(blocks):
        raise ValueError(f'--freezed={freezed}: D has {len(blocks)} blocks (expected 0..{len(blocks)})')
    return blocks[:freezed]


def d_trainable(D: torch.nn.Module, opts: TrainingOptions) -> List[Tuple[str, torch.nn.Parameter]]:
    """(name, parameter) of D that the D optimiser steps: all but the first `freezed` blocks."""
    frozen = tuple(frozen_d_blocks(D, opts.freezed))
    return [(name, p) for name, p in D.named_parameters() if not name.startswith(frozen)]


def _lazy_adam(groups: List[dict], lr: float, interval: int) -> torch.optim.Adam:
    """Adam over param groups (each with an 'lr_mul'), with lr and betas scaled for lazy regularisation.

    The fused implementation (one kernel over all parameters) where torch has it for the parameters'
    device: on the tiny CPU networks the per-parameter loop cost 2-4x more (docs/performance.md).
    """
    ratio = interval / (interval + 1) if interval > 1 else 1.0
    betas = tuple(beta ** ratio for beta in ADAM_BETAS)
    params = [dict(params=g['params'], lr=lr * ratio * g['lr_mul']) for g in groups if g['params']]
    devices = {p.device.type for group in params for p in group['params']}
    return torch.optim.Adam(params, lr=lr * ratio, betas=betas, eps=ADAM_EPS,
                            fused=True if devices and devices <= FUSED_ADAM_DEVICES else None)


def _phases_for(prefix: str, module: torch.nn.Module, groups: List[dict], lr: float, interval: int,
                regularised: bool) -> List[Phase]:
    """[main, reg] sharing one lazily-scaled Adam when regularised every interval > 1 steps, else [both]."""
    if regularised and interval > 1:
        opt = _lazy_adam(groups, lr, interval)
        return [Phase(prefix + 'main', module, opt, 1), Phase(prefix + 'reg', module, opt, interval)]
    return [Phase(prefix + 'both', module, _lazy_adam(groups, lr, 1), 1)]


def _check_intervals(opts: TrainingOptions) -> None:
    """ValueError naming the option unless the regularisation intervals are >= 1."""
    for flag, value in (('--density-reg-every', opts.density_reg_every), ('--d-reg-interval', opts.d_reg_interval)):
        if int(value) != value or value < 1:
            raise ValueError(f'{flag}={value}: expected an integer >= 1')


def build_phases(G: torch.nn.Module, D: torch.nn.Module, opts: TrainingOptions,
                 derived: DerivedOptions) -> List[Phase]:
    """The phases of one training step, in order: [Gboth] or [Gmain, Greg], then [Dmain, Dreg] or [Dboth].

    G: Adam(lr=glr), the decoder's parameters at glr * decoder_lr_mul; lazy every density_reg_every
    steps only when density_reg > 0 (§1.3). D: Adam(lr=dlr), lazy R1 every d_reg_interval steps
    when gamma or gamma_seg is > 0. `derived` is accepted for the contract (the phases do not
    depend on the batch arithmetic).
    """
    del derived
    _check_intervals(opts)
    decoder_mul = getattr(getattr(G, 'rendering', None), 'decoder_lr_mul', 1.0)
    if decoder_mul != 1.0 and opts.decoder_lr_mul != 1.0:
        raise ValueError(f'--decoder-lr-mul={opts.decoder_lr_mul}: G was built with rendering decoder_lr_mul='
                         f'{decoder_mul} already (equalized lr); use one or the other')
    g_params = g_trainable(G, opts)
    g_groups = [dict(params=[p for n, p in g_params if not n.startswith(DECODER_PREFIX)], lr_mul=1.0),
                dict(params=[p for n, p in g_params if n.startswith(DECODER_PREFIX)], lr_mul=opts.decoder_lr_mul)]
    d_groups = [dict(params=[p for _, p in d_trainable(D, opts)], lr_mul=1.0)]
    return (_phases_for('G', G, g_groups, opts.glr, int(opts.density_reg_every), opts.density_reg > 0)
            + _phases_for('D', D, d_groups, opts.dlr, int(opts.d_reg_interval),
                          opts.gamma > 0 or opts.gamma_seg > 0))


def scrub_nonfinite_grads_(params: Iterable[torch.Tensor]) -> int:
    """Replace non-finite gradient elements in place: nan -> 0, +inf -> 1e5, -inf -> -1e5 (§1.4).

    Parameters without a gradient are skipped. Returns how many elements were replaced. The common
    all-finite case costs one fused max-abs over every gradient (nan and inf propagate through it)
    and one sync; only then are the elements counted and replaced tensor by tensor.
    """
    grads = [p.grad for p in params if p.grad is not None]
    if not grads or torch.isfinite(torch.nn.utils.get_total_norm(grads, norm_type=math.inf)):
        return 0
    count = 0
    for grad in grads:
        count += int(torch.count_nonzero(~torch.isfinite(grad)))
        torch.nan_to_num(grad, nan=0.0, posinf=POSINF_GRAD, neginf=-POSINF_GRAD, out=grad)
    return count
