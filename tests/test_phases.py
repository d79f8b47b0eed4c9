"""Training phases and optimisers (training/phases.py, system.md §1.3, §1.4) on the tiny-cpu networks."""
import dataclasses
import math

import pytest
import torch

import dnnlib
from configs.presets import get_preset
from configs.training_options import TrainingOptions, derive
from training.phases import build_phases, scrub_nonfinite_grads_

OPTS = TrainingOptions(batch=4, glr=0.0025, dlr=0.002, density_reg=0.0, d_reg_interval=16)


@pytest.fixture(scope='module')
def nets():
    torch.manual_seed(0)
    preset = get_preset('tiny-cpu')
    G = dnnlib.util.construct_class_by_name(**preset.G_kwargs())
    D = dnnlib.util.construct_class_by_name(**preset.D_kwargs())
    return G, D


def _phases(nets, **changes):
    opts = dataclasses.replace(OPTS, **changes)
    return build_phases(*nets, opts, derive(opts, 1))


def _ids(params):
    return {id(p) for p in params}


def _adam(phase):
    group = phase.opt.param_groups[0]
    return group['lr'], group['betas'], group['eps']


def test_default_phases_are_gboth_dmain_and_lazy_dreg(nets):
    G, D = nets
    phases = _phases(nets)
    assert [(p.name, p.interval) for p in phases] == [('Gboth', 1), ('Dmain', 1), ('Dreg', 16)]
    assert phases[0].module is G and phases[1].module is D and phases[2].module is D
    assert phases[1].opt is phases[2].opt
    lr, betas, eps = _adam(phases[0])
    assert (lr, betas, eps) == (0.0025, (0.0, 0.99), 1e-8)
    assert isinstance(phases[0].opt, torch.optim.Adam)
    assert all(phase.opt.defaults['fused'] for phase in phases)          # CPU parameters: the fused kernel


def test_fused_adam_step_matches_the_adam_formula(nets):
    phase = _phases(nets)[1]                                              # D main: lazy-scaled lr and betas
    lr, (beta1, beta2), eps = _adam(phase)
    params = [p for group in phase.opt.param_groups for p in group['params']][:3]
    before = [p.detach().double().clone() for p in params]
    grads = [torch.randn_like(p) for p in params]
    for p, g in zip(params, grads):
        p.grad = g.clone()
    phase.opt.step()
    for p, p0, g in zip(params, before, grads):                         # first step, bias-corrected (float64)
        g = g.double()
        m_hat = (1 - beta1) * g / (1 - beta1)
        v_hat = (1 - beta2) * g * g / (1 - beta2)
        torch.testing.assert_close(p.detach().double(), p0 - lr * m_hat / (v_hat.sqrt() + eps), rtol=0, atol=1e-6)


def test_lazy_regularisation_scales_lr_and_betas_by_k_over_k_plus_1(nets):
    phases = _phases(nets)
    lr, betas, _ = _adam(phases[1])
    assert lr == pytest.approx(0.002 * 16 / 17, rel=1e-12)
    assert betas[0] == 0.0 and betas[1] == pytest.approx(math.exp(math.log(0.99) * 16 / 17), rel=1e-12)


def test_density_reg_gives_lazy_g_phases(nets):
    phases = _phases(nets, density_reg=0.25, density_reg_every=4)
    assert [(p.name, p.interval) for p in phases] == [('Gmain', 1), ('Greg', 4), ('Dmain', 1), ('Dreg', 16)]
    assert phases[0].opt is phases[1].opt
    lr, betas, _ = _adam(phases[0])
    assert lr == pytest.approx(0.0025 * 0.8) and betas[1] == pytest.approx(0.99 ** 0.8)


def test_interval_one_or_no_regulariser_gives_both_phases_with_plain_adam(nets):
    for changes in (dict(d_reg_interval=1), dict(gamma=0.0, gamma_seg=0.0)):
        phases = _phases(nets, **changes)
        assert [p.name for p in phases] == ['Gboth', 'Dboth']
        assert _adam(phases[1])[:2] == (0.002, (0.0, 0.99))
    assert [p.name for p in _phases(nets, density_reg=0.25, density_reg_every=1)][0] == 'Gboth'


def test_every_parameter_is_trained_once_by_default(nets):
    G, D = nets
    phases = _phases(nets)
    assert _ids(phases[0].params) == _ids(G.parameters()) and len(phases[0].params) == len(list(G.parameters()))
    assert _ids(phases[1].params) == _ids(D.parameters())


def test_decoder_learning_rate_multiplier(nets):
    G, _ = nets
    phases = _phases(nets, decoder_lr_mul=3.0, density_reg=0.25, density_reg_every=4)
    groups = phases[0].opt.param_groups
    decoder = [g for g in groups if _ids(g['params']) == _ids(G.decoder.parameters())]
    others = [g for g in groups if g not in decoder]
    assert len(decoder) == 1 and decoder[0]['lr'] == pytest.approx(0.0025 * 0.8 * 3.0)
    assert all(g['lr'] == pytest.approx(0.0025 * 0.8) for g in others)


def test_decoder_lr_mul_in_both_g_and_the_options_is_rejected(nets, monkeypatch):
    G, _ = nets
    monkeypatch.setattr(G, 'rendering', dataclasses.replace(G.rendering, decoder_lr_mul=2.0))
    assert len(_phases(nets)) == 3              # G's own multiplier alone is fine
    with pytest.raises(ValueError, match='--decoder-lr-mul'):
        _phases(nets, decoder_lr_mul=3.0)


def test_frozen_pose_branch_is_excluded(nets):
    G, _ = nets
    params = _ids(_phases(nets, train_g_pose_branch=False)[0].params)
    pose = _ids(G.pose_branch.parameters())
    assert pose and not params & pose
    assert params == _ids(G.parameters()) - pose


def test_freezed_excludes_the_first_d_blocks(nets):
    _, D = nets
    params = _ids(_phases(nets, freezed=2)[1].params)
    first, second = (f'backbone.b{r}.' for r in D.backbone.block_resolutions[:2])
    frozen = {id(p) for n, p in D.named_parameters() if n.startswith((first, second))}
    assert frozen and params == _ids(D.parameters()) - frozen
    with pytest.raises(ValueError, match='--freezed'):
        _phases(nets, freezed=99)


@pytest.mark.parametrize('changes, flag', [(dict(d_reg_interval=0), '--d-reg-interval'),
                                           (dict(density_reg_every=0), '--density-reg-every')])
def test_bad_intervals_are_rejected(nets, changes, flag):
    with pytest.raises(ValueError, match=flag):
        _phases(nets, **changes)


def test_scrub_counts_and_replaces_nonfinite_gradients():
    a = torch.nn.Parameter(torch.zeros(5))
    a.grad = torch.tensor([1.0, float('nan'), float('inf'), -float('inf'), -2.0])
    b = torch.nn.Parameter(torch.zeros(2, 2))
    b.grad = torch.tensor([[float('nan'), 3.0], [4.0, 5.0]])
    c = torch.nn.Parameter(torch.zeros(3))          # no gradient: skipped
    assert scrub_nonfinite_grads_([a, b, c]) == 4
    assert torch.equal(a.grad, torch.tensor([1.0, 0.0, 1e5, -1e5, -2.0]))
    assert torch.equal(b.grad, torch.tensor([[0.0, 3.0], [4.0, 5.0]]))
    assert c.grad is None
    assert scrub_nonfinite_grads_([a, b, c]) == 0
    assert scrub_nonfinite_grads_([]) == 0


@pytest.mark.parametrize('bad', [float('nan'), float('inf'), -float('inf')])
def test_scrub_finds_a_single_nonfinite_element_behind_finite_extremes(bad):
    finite = torch.nn.Parameter(torch.zeros(4))
    finite.grad = torch.tensor([3e38, -3e38, 0.0, 1.0])                 # finite, however large: kept
    late = torch.nn.Parameter(torch.zeros(6))
    late.grad = torch.tensor([0.5, 0.25, 0.0, bad, -1.0, 2.0])
    assert scrub_nonfinite_grads_([finite, late]) == 1
    assert torch.equal(finite.grad, torch.tensor([3e38, -3e38, 0.0, 1.0]))
    replaced = 0.0 if math.isnan(bad) else math.copysign(1e5, bad)
    assert torch.equal(late.grad, torch.tensor([0.5, 0.25, 0.0, replaced, -1.0, 2.0]))
