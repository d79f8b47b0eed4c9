"""The training loss (training/loss.py, system.md §4, §5) on the tiny-cpu networks, and its regularisers."""
import contextlib
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dnnlib
from configs.presets import get_preset
from configs.training_options import TrainingOptions, derive
from torch_utils import training_stats
from training import cameras
from training.loss import PortraitLoss
from training.schedules import schedule_at

N = 4                 # batch (the tiny-cpu minibatch-std group)
NRR = 16              # neural rendering resolution of these tests
OPTS = TrainingOptions(batch=N, neural_rendering_resolution_initial=NRR, density_noise_fade_kimg=200,
                       blur_fade_kimg=200, gamma=1.0, gamma_seg=1.0, bcg_reg_prob=0.0, style_mixing_prob=0.0)
PHASE_SEED = 123

pytestmark = pytest.mark.usefixtures('one_thread')


@pytest.fixture(scope='module')
def nets():
    torch.manual_seed(0)
    preset = get_preset('tiny-cpu')
    return (dnnlib.util.construct_class_by_name(**preset.G_kwargs()),
            dnnlib.util.construct_class_by_name(**preset.D_kwargs()))


@pytest.fixture(scope='module')
def data(nets):
    G, _ = nets
    gen = torch.Generator().manual_seed(1)
    res = get_preset('tiny-cpu').img_resolution
    yaw = torch.tensor([0.4, 1.3, 2.2, -2.5])          # both sides of the portrait sphere
    c = cameras.camera_vector(yaw, torch.full([N], math.pi / 2))
    return dict(real_img=torch.rand(N, 3, res, res, generator=gen) * 2 - 1,
                real_mask=torch.rand(N, 1, res, res, generator=gen), real_c=c,
                real_pose=torch.randn(N, 6, generator=gen) * 0.2, gen_z=torch.randn(N, G.z_dim, generator=gen),
                gen_c=c.roll(1, 0), gen_pose=torch.randn(N, 6, generator=gen) * 0.2)


def _loss(G, D, **changes):
    opts = dataclasses.replace(OPTS, **changes)
    return PortraitLoss(G, D, opts, derive(opts, 1))


def _run(loss, phase, data, gain=1.0, cur_nimg=0):
    """Zero all gradients, then one accumulate_gradients call under a fixed seed."""
    for p in list(loss.G.parameters()) + list(loss.D.parameters()):
        p.grad = None
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(PHASE_SEED)
        loss.accumulate_gradients(phase, **data, gain=gain, cur_nimg=cur_nimg)


def _grads(module, prefix=''):
    return {n: p.grad for n, p in module.named_parameters() if n.startswith(prefix)}


def _nonzero(grads):
    return [n for n, g in grads.items() if g is not None and bool(g.abs().sum() > 0)]


def _resized(x):
    return F.interpolate(x, size=(NRR, NRR), mode='bilinear', align_corners=False, antialias=True)


@contextlib.contextmanager
def _recording_synthesis(G):
    """Record (ws, c, pose_params, kwargs) of every G.synthesis call."""
    calls, original = [], G.synthesis

    def synthesis(ws, c, pose_params=None, **kwargs):
        calls.append((ws.detach(), c, pose_params.detach(), kwargs))
        return original(ws, c, pose_params, **kwargs)
    G.synthesis = synthesis
    try:
        yield calls
    finally:
        del G.synthesis


@contextlib.contextmanager
def _recording_mapping(G):
    """Record (inputs, output) of every G.mapping call."""
    calls = []
    handle = G.mapping.register_forward_hook(lambda module, args, out: calls.append((args, out.detach())))
    try:
        yield calls
    finally:
        handle.remove()


@pytest.mark.parametrize('phase', ['Gmain', 'Gboth', 'Greg'])
def test_g_phases_train_g_only(nets, data, phase):
    G, D = nets
    _run(_loss(G, D, density_reg=0.25), phase, data)
    assert all(g is None for g in _grads(D).values())
    touched = _nonzero(_grads(G))
    if phase == 'Greg':    # the canonical density depends on mapping, backbone and decoder only
        assert touched and all(n.startswith(('mapping.', 'backbone.', 'decoder.')) for n in touched)
        assert _nonzero(_grads(G, 'decoder.')) and _nonzero(_grads(G, 'backbone.'))
    else:
        for prefix in ('mapping.', 'backbone.', 'decoder.', 'superresolution.', 'background.', 'torgb.',
                       'pose_branch.'):
            assert _nonzero(_grads(G, prefix)), prefix


@pytest.mark.parametrize('phase', ['Dmain', 'Dreg', 'Dboth'])
def test_d_phases_train_d_only(nets, data, phase):
    G, D = nets
    _run(_loss(G, D), phase, data, cur_nimg=10_000)
    assert all(g is None for g in _grads(G).values())
    assert _nonzero(_grads(D, 'backbone.b64.')) and _nonzero(_grads(D, 'backbone.mapping.'))
    # The pose estimate enters D's conditioning detached: only the pose loss on fakes trains P_D.
    assert bool(_nonzero(_grads(D, 'pose_predictor.'))) == (phase != 'Dreg')


def test_frozen_pose_branch_gets_no_gradient(nets, data):
    G, D = nets
    _run(_loss(G, D, train_g_pose_branch=False), 'Gmain', data)
    assert all(g is None for g in _grads(G, 'pose_branch.').values())
    assert _nonzero(_grads(G, 'mapping.'))


def test_lpreg_reaches_the_pose_branch_and_equals_its_formula(nets, data):
    G, D = nets
    collector = training_stats.Collector(regex='Loss/G/pose_reg')
    _run(_loss(G, D, input_pose_params_reg_loss_weight=0.0), 'Gmain', data)
    without = _grads(G, 'pose_branch.')
    collector.update()
    _run(_loss(G, D, input_pose_params_reg_loss_weight=0.5, input_pose_params_reg_loss_kimg=200), 'Gmain', data)
    collector.update()
    with_lpreg = _grads(G, 'pose_branch.')
    pose = G.get_pose_params(data['gen_z'], data['gen_c'])
    lpreg = 0.5 * (pose - data['gen_pose']).square().sum(1).mean()
    names = list(without)
    expected = torch.autograd.grad(lpreg, [dict(G.named_parameters())[n] for n in names])
    for name, grad in zip(names, expected):
        torch.testing.assert_close(with_lpreg[name] - without[name], grad, rtol=1e-4, atol=1e-6)
    p, target = pose.detach().numpy().astype(np.float64), data['gen_pose'].numpy().astype(np.float64)
    assert collector.mean('Loss/G/pose_reg') == pytest.approx(0.5 * ((p - target) ** 2).sum(1).mean(), rel=1e-5)


def test_d_pose_loss_on_fakes_trains_predictor_and_backbone(nets, data):
    G, D = nets
    _run(_loss(G, D, pose_loss_weight=0.0), 'Dmain', data)
    without = _grads(D)
    assert not _nonzero(_grads(D, 'pose_predictor.'))
    loss = _loss(G, D, pose_loss_weight=2.0)
    _run(loss, 'Dmain', data)
    with_pose = _grads(D)
    with torch.random.fork_rng(devices=[]):   # the same fakes again: run_G draws first under the phase seed
        torch.manual_seed(PHASE_SEED)
        with torch.no_grad():
            fake, pose = loss.run_G(data['gen_z'], data['gen_c'], schedule_at(loss.opts, loss.derived, 0))
    out = D(fake, data['gen_c'], blur_sigma=schedule_at(loss.opts, loss.derived, 0).blur_sigma)
    expected = dict(zip(without, torch.autograd.grad(2.0 * (out['pose'] - pose).square().sum(1).mean(),
                                                     list(D.parameters()), allow_unused=True)))
    for prefix in ('pose_predictor.', 'backbone.b64.', 'backbone.b4.'):
        for name in [n for n in without if n.startswith(prefix)]:
            diff = with_pose[name] - (0 if without[name] is None else without[name])
            target = torch.zeros_like(diff) if expected[name] is None else expected[name]   # e.g. the logit head
            torch.testing.assert_close(diff, target, rtol=1e-4, atol=1e-6, msg=name)
        assert _nonzero({n: expected[n] for n in expected if n.startswith(prefix)}), prefix


class LinearD(torch.nn.Module):
    """logit = <w_image, image> + <w_raw, image_raw> + <w_mask, image_mask>; its R1 is analytic."""

    def __init__(self, res, nrr):
        super().__init__()
        self.w_image = torch.nn.Parameter(torch.randn(3, res, res))
        self.w_raw = torch.nn.Parameter(torch.randn(3, nrr, nrr))
        self.w_mask = torch.nn.Parameter(torch.randn(1, nrr, nrr))

    def forward(self, img, c, blur_sigma=0):
        logits = sum((img[k] * w).flatten(1).sum(1) for k, w in
                     (('image', self.w_image), ('image_raw', self.w_raw), ('image_mask', self.w_mask)))
        return dict(logits=logits[:, None], pose=torch.zeros(c.shape[0], 6))


def test_r1_of_a_linear_discriminator_is_gamma_half_w_squared(nets, data):
    G, _ = nets
    torch.manual_seed(2)
    D = LinearD(data['real_img'].shape[-1], NRR)
    collector = training_stats.Collector(regex='Loss/D/reg')
    _run(_loss(G, D, gamma=3.0, gamma_seg=5.0), 'Dreg', data, gain=16.0)
    collector.update()
    sq = {name: float(p.detach().double().square().sum()) for name, p in D.named_parameters()}
    assert collector.mean('Loss/D/reg') == pytest.approx(1.5 * (sq['w_image'] + sq['w_raw']) + 2.5 * sq['w_mask'],
                                                         rel=1e-5)
    torch.testing.assert_close(D.w_image.grad, 16 * 3.0 * D.w_image.detach())
    torch.testing.assert_close(D.w_raw.grad, 16 * 3.0 * D.w_raw.detach())
    torch.testing.assert_close(D.w_mask.grad, 16 * 5.0 * D.w_mask.detach())


def test_r1_equals_a_direct_double_backward_on_the_dual_discriminator(nets, data):
    G, D = nets
    cur_nimg = 5_000                                   # blur sigma 10 * (1 - 5 / 25) = 8 at batch 4
    _run(_loss(G, D, gamma=2.0, gamma_seg=0.5), 'Dreg', data, gain=16.0, cur_nimg=cur_nimg)
    got = _grads(D)
    x = dict(image=data['real_img'].clone().requires_grad_(), image_raw=_resized(data['real_img']).requires_grad_(),
             image_mask=_resized(data['real_mask']).requires_grad_())
    logits = D(x, data['real_c'], blur_sigma=8.0)['logits']
    g_img, g_raw, g_mask = torch.autograd.grad(logits.sum(), list(x.values()), create_graph=True)
    penalty = (2.0 / 2) * (g_img.square().sum([1, 2, 3]) + g_raw.square().sum([1, 2, 3])) \
        + (0.5 / 2) * g_mask.square().sum([1, 2, 3])
    names = [n for n, p in D.named_parameters()]
    expected = torch.autograd.grad(penalty.mean() * 16.0, list(D.parameters()), allow_unused=True)
    assert sum(e is not None for e in expected) > 10
    for name, grad in zip(names, expected):
        if grad is None:
            assert got[name] is None, name
        else:
            torch.testing.assert_close(got[name], grad, rtol=1e-4, atol=1e-7, msg=name)


@pytest.mark.parametrize('gpc_reg_prob, gen_pose_cond', [(0.0, True), (1.0, True), (0.7, False)])
def test_mapping_conditioning_swap_and_rendering_inputs(nets, data, gpc_reg_prob, gen_pose_cond):
    G, D = nets
    loss = _loss(G, D, gpc_reg_prob=gpc_reg_prob, gpc_reg_fade_kimg=0, gen_pose_cond=gen_pose_cond)
    with _recording_mapping(G) as maps, _recording_synthesis(G) as syn:
        _run(loss, 'Gmain', data, cur_nimg=50_000)
    pose = G.get_pose_params(data['gen_z'], data['gen_c']).detach()
    own = torch.cat([data['gen_c'], pose], dim=1)
    expected = {0.0: own, 1.0: own.roll(1, 0)}[gpc_reg_prob] if gen_pose_cond else torch.zeros_like(own)
    (z, cond), _ = maps[0]
    assert len(maps) == 1 and torch.equal(z, data['gen_z'])
    torch.testing.assert_close(cond, expected, rtol=0, atol=0)
    ws, c, pose_params, kwargs = syn[0]          # rendering: the sample's own camera and G-branch pose
    assert torch.equal(c, data['gen_c']) and torch.equal(pose_params, pose)
    assert kwargs['neural_rendering_resolution'] == NRR and kwargs['density_noise'] == pytest.approx(0.75)
    assert kwargs['ws_bcg'] is None and torch.equal(ws, maps[0][1])


def test_style_mixing_and_background_swap(nets, data):
    G, D = nets
    with _recording_mapping(G) as maps, _recording_synthesis(G) as syn:
        _run(_loss(G, D, style_mixing_prob=1.0, bcg_reg_prob=1.0), 'Gmain', data)
    assert len(maps) == 2
    first, second = maps[0][1], maps[1][1]
    assert torch.equal(maps[1][0][1], maps[0][0][1]) and not torch.equal(maps[1][0][0], maps[0][0][0])
    ws, _, _, kwargs = syn[0]
    from_first = [torch.equal(ws[:, i], first[:, i]) for i in range(ws.shape[1])]
    from_second = [torch.equal(ws[:, i], second[:, i]) for i in range(ws.shape[1])]
    cutoff = from_first.index(False)
    assert 1 <= cutoff < ws.shape[1] and all(from_first[:cutoff]) and all(from_second[cutoff:])
    assert torch.equal(kwargs['ws_bcg'], ws.roll(1, 0))


def test_d_sees_blurred_fakes_and_reals_resized_to_nrr(nets, data):
    G, D = nets
    calls = []
    handle = D.register_forward_pre_hook(lambda m, args, kwargs: calls.append((args, kwargs)), with_kwargs=True)
    try:
        _run(_loss(G, D), 'Dmain', data, cur_nimg=5_000)
    finally:
        handle.remove()
    assert [kwargs['blur_sigma'] for _, kwargs in calls] == pytest.approx([8.0, 8.0])
    (fake, fake_c), (real, real_c) = calls[0][0], calls[1][0]
    assert torch.equal(fake_c, data['gen_c']) and torch.equal(real_c, data['real_c'])
    assert fake['image_raw'].shape[-1] == NRR
    torch.testing.assert_close(real['image_raw'], _resized(data['real_img']))
    torch.testing.assert_close(real['image_mask'], _resized(data['real_mask']))
    assert torch.equal(real['image'], data['real_img'])


def test_real_pose_errors_are_reported_in_degrees(nets, data):
    G, D = nets
    collector = training_stats.Collector(regex='Loss/pose/.*')
    _run(_loss(G, D), 'Dmain', data, cur_nimg=5_000)
    collector.update()
    real = dict(image=data['real_img'], image_raw=_resized(data['real_img']), image_mask=_resized(data['real_mask']))
    with torch.no_grad():
        err = (D(real, data['real_c'], blur_sigma=8.0)['pose'] - data['real_pose']).abs().double().numpy()
    assert collector.mean('Loss/pose/real_neck') == pytest.approx(np.degrees(err[:, :3]).mean(), rel=1e-4)
    assert collector.mean('Loss/pose/real_head') == pytest.approx(np.degrees(err[:, 3:]).mean(), rel=1e-4)
    assert collector.num('Loss/pose/fake_neck') == N


def test_gradients_scale_with_gain(nets, data):
    G, D = nets
    loss = _loss(G, D)
    _run(loss, 'Gmain', data, gain=1.0)
    once = {n: g.clone() for n, g in _grads(G).items() if g is not None}
    _run(loss, 'Gmain', data, gain=2.5)
    for name, grad in _grads(G).items():
        if grad is not None:
            torch.testing.assert_close(grad, 2.5 * once[name], msg=name)


@pytest.mark.parametrize('changes, flag', [
    (dict(reg_type='l1-alt'), '--reg-type=l1-alt.*never implemented'),
    (dict(reg_type='total-variation'), '--reg-type=total-variation'), (dict(reg_type='tv'), '--reg-type'),
    (dict(gpc_reg_prob=1.5), '--gpc-reg-prob'), (dict(bcg_reg_prob=-0.1), '--bcg-reg-prob'),
    (dict(gamma=-1.0), '--gamma=')])
def test_bad_options_are_rejected_at_construction(nets, changes, flag):
    with pytest.raises(ValueError, match=flag):
        _loss(*nets, **changes)


def test_bad_phase_is_rejected(nets, data):
    with pytest.raises(ValueError, match='phase'):
        _run(_loss(*nets), 'Gall', data)


@pytest.mark.parametrize('phase', ['Gboth', 'Dmain', 'Dreg'])
def test_bf16_autocast_phases_give_finite_gradients_close_to_float32(nets, data, phase):
    """--bf16: every phase runs under CPU bfloat16 autocast; gradients are float32, finite and near the fp32 ones."""
    G, D = nets
    module = G if phase.startswith('G') else D
    reference = _loss(G, D)
    _run(reference, phase, data)
    fp32 = {n: g.clone() for n, g in _grads(module).items() if g is not None}
    _run(_loss(G, D, bf16=True), phase, data)
    bf16 = {n: g for n, g in _grads(module).items() if g is not None}
    assert bf16.keys() == fp32.keys() and fp32
    flat32 = torch.cat([fp32[n].flatten() for n in fp32])
    flat16 = torch.cat([bf16[n].flatten() for n in fp32])
    assert flat16.dtype == torch.float32 and torch.isfinite(flat16).all()
    assert torch.nn.functional.cosine_similarity(flat16, flat32, dim=0) > 0.9
