"""The 3DPortraitGAN training loss (system.md §4, §5): one call per phase and micro-batch.

Fakes (§4.1, §4.3): the rendering pose is p = P_G(z, gen_c) from G's pose branch (gradients flow
into it); the mapping sees (gen_c, p), swapped together with the batch-rolled neighbour's with the
scheduled probability (zeros without gen_pose_cond); optional style mixing and background-latent
swap; density noise and the neural rendering resolution come from the schedule (schedules.py).

Phases: G main = softplus(-D(fake)) + Lpreg; G reg = density regularisers (density_reg > 0);
D main = softplus(D(fake)) + softplus(-D(real)) + pose_loss_weight |P_D(fake) - p|^2; D reg = lazy R1
on the three real inputs. Each phase calls backward on (loss mean) x gain into its own module's
trainable parameters only (phases.g_trainable / d_trainable), so G phases never touch D's
gradients and vice versa, whatever requires_grad says. 'Greg' with density_reg == 0 and 'Dreg' with
gamma == gamma_seg == 0 do nothing (phases.build_phases never makes them). bf16 autocast (opts.bf16)
wraps the G and D forward passes only; G's pose branch and all loss math run in float32.
"""
import contextlib
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from configs.training_options import DerivedOptions, TrainingOptions, check_ranges, check_reg_type
from torch_utils import training_stats
from training.networks.superresolution import resize_antialiased
from training.phases import PHASE_NAMES, d_trainable, g_trainable
from training.regularizers import density_regularizer, pose_error_deg, pose_loss, r1_penalty
from training.schedules import ScheduleValues, schedule_at

D_INPUTS = ('image', 'image_raw', 'image_mask')
TRAIN_NOISE_MODE = 'random'      # per-pixel noise of the StyleGAN2 layers during training (EG3D)


def mapping_conditioning(c: torch.Tensor, pose: torch.Tensor, swap_prob: float, gen_pose_cond: bool) -> torch.Tensor:
    """c [N, 25], pose [N, 6] -> mapping conditioning [N, 31] (§4.3): per sample, with probability swap_prob the
    batch-rolled neighbour's (camera and pose together), else its own; all zeros when gen_pose_cond is False."""
    cond = torch.cat([c.float(), pose.float()], dim=1)
    if not gen_pose_cond:
        return torch.zeros_like(cond)
    swap = torch.rand([c.shape[0], 1], device=c.device) < swap_prob
    return torch.where(swap, cond.roll(1, dims=0), cond)


def mix_styles(mapping, ws: torch.Tensor, z: torch.Tensor, cond: torch.Tensor, prob: float) -> torch.Tensor:
    """Style mixing (StyleGAN2, EG3D): with probability prob, ws[:, cutoff:] come from a second, random z
    (same conditioning), cutoff uniform in [1, num_ws); one draw per batch. Out of place."""
    num_ws = ws.shape[1]
    if prob <= 0 or num_ws < 2:
        return ws
    cutoff = int(torch.randint(1, num_ws, [], device=ws.device))
    if not bool(torch.rand([], device=ws.device) < prob):
        return ws
    other = mapping(torch.randn_like(z), cond, update_emas=False)
    return torch.cat([ws[:, :cutoff], other[:, cutoff:]], dim=1)


def background_ws(ws: torch.Tensor, prob: float) -> Optional[torch.Tensor]:
    """Background latents (§2.8): per sample, with probability prob the rolled neighbour's ws (None if prob is 0)."""
    if prob <= 0:
        return None
    swap = torch.rand([ws.shape[0], 1, 1], device=ws.device) < prob
    return torch.where(swap, ws.roll(1, dims=0), ws)


def real_inputs(real_img: torch.Tensor, real_mask: torch.Tensor, nrr: int, requires_grad: bool) -> dict:
    """D's real inputs: image [N,3,R,R], image_raw = image resized to nrr, image_mask = mask resized to nrr
    (bilinear, antialiased, as D resizes raw fakes, §2.11); detached leaves, requiring grad for R1."""
    img = dict(image=real_img, image_raw=resize_antialiased(real_img, nrr),
               image_mask=resize_antialiased(real_mask, nrr))
    return {key: value.detach().float().requires_grad_(requires_grad) for key, value in img.items()}


def _report_pose_errors(prefix: str, pose: torch.Tensor, target: torch.Tensor) -> None:
    """Report mean |error| in degrees per joint as Loss/pose/{prefix}_neck and _head."""
    for joint, err in pose_error_deg(pose, target).items():
        training_stats.report(f'Loss/pose/{prefix}_{joint}', err)


def _check_options(opts: TrainingOptions) -> None:
    """ValueError naming the option for a bad reg_type or an out-of-range value (probabilities, weights, ...)."""
    check_reg_type(opts.reg_type)
    check_ranges(opts)


class PortraitLoss:
    """accumulate_gradients(phase, ...) for G (PortraitGenerator API) and D (DualDiscriminator API)."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, opts: TrainingOptions, derived: DerivedOptions):
        _check_options(opts)
        self.G, self.D, self.opts, self.derived = G, D, opts, derived
        self.g_params = [p for _, p in g_trainable(G, opts)]
        self.d_params = [p for _, p in d_trainable(D, opts)]

    def _autocast(self, device: torch.device):
        """bf16 autocast for network forward passes when opts.bf16, else a no-op context."""
        if not self.opts.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    @staticmethod
    def _backward(loss: torch.Tensor, params: List[torch.Tensor]) -> None:
        """loss.backward() into `params` (those requiring grad) only."""
        params = [p for p in params if p.requires_grad]
        if params and loss.requires_grad:
            loss.backward(inputs=params)

    def run_G(self, z: torch.Tensor, c: torch.Tensor, sched: ScheduleValues, update_emas: bool = False):
        """Render fakes for z [N, z_dim], cameras c [N, 25] -> (dict of D_INPUTS in float32, pose p [N, 6])."""
        pose = self.G.get_pose_params(z, c)
        cond = mapping_conditioning(c, pose, sched.swap_prob, self.opts.gen_pose_cond)
        with self._autocast(z.device):
            ws = self.G.mapping(z, cond, update_emas=update_emas)
            ws = mix_styles(self.G.mapping, ws, z, cond, self.opts.style_mixing_prob)
            out = self.G.synthesis(ws, c, pose, neural_rendering_resolution=sched.nrr,
                                   ws_bcg=background_ws(ws, self.opts.bcg_reg_prob), density_noise=sched.density_noise,
                                   noise_mode=TRAIN_NOISE_MODE, update_emas=update_emas)
        return {key: out[key].float() for key in D_INPUTS}, pose

    def run_D(self, img: Dict[str, torch.Tensor], c: torch.Tensor, blur_sigma: float) -> Dict[str, torch.Tensor]:
        """D(img, c, blur_sigma) -> dict(logits [N], pose [N, 6]) in float32."""
        with self._autocast(c.device):
            out = self.D(img, c, blur_sigma=blur_sigma)
        return dict(logits=out['logits'].float().squeeze(1), pose=out['pose'].float())

    def accumulate_gradients(self, phase: str, real_img: torch.Tensor, real_mask: torch.Tensor, real_c: torch.Tensor,
                             real_pose: torch.Tensor, gen_z: torch.Tensor, gen_c: torch.Tensor, gen_pose: torch.Tensor,
                             gain: float, cur_nimg: int) -> None:
        """Backward of phase's loss (mean over the micro-batch) x gain into the phase's module; no optimiser step.

        real_img [N, 3, R, R] in [-1, 1]; real_mask [N, 1, R, R] in [0, 1]; real_c [N, 25]; real_pose [N, 6]
        (dataset labels, only logged against D's estimate); gen_z [N, z_dim]; gen_c [N, 25] and gen_pose [N, 6]:
        camera and dataset pose of one dataset item per fake (gen_pose is only Lpreg's target); cur_nimg: the
        absolute image counter of the schedules.
        """
        if phase not in PHASE_NAMES:
            raise ValueError(f'phase: expected one of {", ".join(PHASE_NAMES)}, got {phase!r}')
        sched = schedule_at(self.opts, self.derived, cur_nimg)
        do_r1 = phase in ('Dreg', 'Dboth') and (self.opts.gamma > 0 or self.opts.gamma_seg > 0)
        if phase in ('Gmain', 'Gboth'):
            self._g_main(gen_z, gen_c, gen_pose, gain, sched)
        if phase in ('Greg', 'Gboth') and self.opts.density_reg > 0:
            self._g_reg(gen_z, gen_c, gain, sched)
        loss_fake = None
        if phase in ('Dmain', 'Dboth'):
            loss_fake = self._d_fake(gen_z, gen_c, gain, sched)
        if loss_fake is not None or do_r1:
            self._d_real(real_img, real_mask, real_c, real_pose, gain, sched, loss_fake, do_r1)

    def _g_main(self, z, c, gen_pose, gain, sched) -> None:
        """G main (§5, §4.1): softplus(-D(fake)) + Lpreg, Lpreg = w(t) |p - gen_pose|^2 with w from the schedule."""
        fake, pose = self.run_G(z, c, sched)
        logits = self.run_D(fake, c, sched.blur_sigma)['logits']
        loss_adv = F.softplus(-logits)
        loss_preg = pose_loss(pose, gen_pose, sched.pose_reg_weight)
        training_stats.report('Loss/scores/fake', logits)
        training_stats.report('Loss/signs/fake', logits.sign())
        training_stats.report('Loss/G/loss', loss_adv)
        training_stats.report('Loss/G/pose_reg', loss_preg)
        self._backward((loss_adv + loss_preg).mean() * gain, self.g_params)

    def _g_reg(self, z, c, gain, sched) -> None:
        """G reg (§5): density regularisers on the canonical field of ws mapped as for the fakes (pose detached)."""
        pose = self.G.get_pose_params(z, c).detach()
        cond = mapping_conditioning(c, pose, sched.swap_prob, self.opts.gen_pose_cond)
        with self._autocast(z.device):
            ws = mix_styles(self.G.mapping, self.G.mapping(z, cond), z, cond, self.opts.style_mixing_prob)

        def sigma_fn(coords: torch.Tensor) -> torch.Tensor:
            with self._autocast(coords.device):
                return self.G.sample_mixed(coords, None, ws, noise_mode=TRAIN_NOISE_MODE)['sigma']

        terms = density_regularizer(sigma_fn, z.shape[0], self.opts.reg_type, self.opts.density_reg,
                                    self.opts.density_reg_p_dist, self.G.rendering.box_warp, z.device)
        for name, value in terms.items():
            training_stats.report(f'Loss/G/density_{name}', value)
        self._backward(sum(terms.values()) * gain, self.g_params)

    def _d_fake(self, z, c, gain, sched) -> torch.Tensor:
        """D main on fakes (§5, §4.2): softplus(D(fake)) + pose_loss_weight |P_D(fake) - p|^2 -> softplus [N]."""
        with torch.no_grad():
            fake, pose = self.run_G(z, c, sched, update_emas=True)
        out = self.run_D(fake, c, sched.blur_sigma)
        loss_fake = F.softplus(out['logits'])
        loss_pose = pose_loss(out['pose'], pose, self.opts.pose_loss_weight)
        training_stats.report('Loss/scores/fake', out['logits'])
        training_stats.report('Loss/signs/fake', out['logits'].sign())
        training_stats.report('Loss/D/pose', loss_pose)
        _report_pose_errors('fake', out['pose'], pose)
        self._backward((loss_fake + loss_pose).mean() * gain, self.d_params)
        return loss_fake.detach()

    def _d_real(self, real_img, real_mask, real_c, real_pose, gain, sched, loss_fake, do_r1) -> None:
        """D main on reals (softplus(-D(real)), when loss_fake is given) and/or R1 (§5):
        (gamma / 2)(|grad image|^2 + |grad raw|^2) + (gamma_seg / 2)|grad mask|^2."""
        real = real_inputs(real_img, real_mask, sched.nrr, requires_grad=do_r1)
        out = self.run_D(real, real_c, sched.blur_sigma)
        training_stats.report('Loss/scores/real', out['logits'])
        training_stats.report('Loss/signs/real', out['logits'].sign())
        loss = torch.zeros_like(out['logits'])
        if loss_fake is not None:
            loss_real = F.softplus(-out['logits'])
            training_stats.report('Loss/D/loss', loss_fake + loss_real)
            _report_pose_errors('real', out['pose'], real_pose)
            loss = loss + loss_real
        if do_r1:
            gammas = (self.opts.gamma, self.opts.gamma, self.opts.gamma_seg)
            penalty = r1_penalty(out['logits'], [real[key] for key in D_INPUTS], gammas)
            training_stats.report('Loss/D/reg', penalty)
            loss = loss + penalty
        self._backward(loss.mean() * gain, self.d_params)
