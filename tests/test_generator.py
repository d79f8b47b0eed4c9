"""The portrait generator (training/networks/generator.py, system.md §2) at the tiny-cpu preset."""
import copy
import io
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dnnlib
from configs.presets import get_preset
from torch_utils import persistence
from training import cameras
from training.deformation import procedural_body, smpl_io
from training.geometry.density_grid import Grid, density_grid, generator_density
from training.rendering.planes import sample_trigrid

SMALL_NRR = 16                               # most tests render 16^2 rays (the preset's 32^2 in the shape test)
POSE = (0.2, -0.3, 0.1, 0.3, 0.25, -0.2)     # neck, head axis-angle (radians)
DETERMINISTIC = dict(noise_mode='const', perturb=False)
SHRUNK_BODY = 0.9                            # scale of the body written as an SMPL file in the round-trip test


pytestmark = pytest.mark.usefixtures('one_thread')


def _build(**overrides):
    torch.manual_seed(0)
    kwargs = {**get_preset('tiny-cpu').G_kwargs(), **overrides}
    return dnnlib.util.construct_class_by_name(**kwargs).eval()


@pytest.fixture(scope='module')
def G():
    return _build()


def _inputs(G, batch=2, seed=0):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(batch, G.z_dim, generator=gen)
    yaw = torch.linspace(0.3, 2 * math.pi - 0.3, batch)
    c = cameras.camera_vector(yaw, torch.full([batch], math.pi / 2))
    return z, c


def _pose(batch):
    return torch.tensor([POSE]).repeat(batch, 1)


def _assert_same(a: dict, b: dict, exact=True):
    assert a.keys() == b.keys()
    for key in a:
        if exact:
            assert torch.equal(a[key], b[key]), key
        else:
            torch.testing.assert_close(a[key], b[key], rtol=1e-3, atol=5e-3, msg=key)


def test_forward_shapes_at_tiny_preset(G):
    z, c = _inputs(G)
    with torch.no_grad():
        out = G(z, c, pose_params=_pose(2), **DETERMINISTIC)
    r, R = G.neural_rendering_resolution, G.img_resolution
    expected = dict(image=(2, 3, R, R), image_raw=(2, 3, r, r), image_depth=(2, 1, r, r), image_mask=(2, 1, r, r),
                    image_background=(2, 3, r, r))
    assert {k: tuple(v.shape) for k, v in out.items()} == expected
    assert all(torch.isfinite(v).all() for v in out.values())
    assert 0 <= out['image_mask'].min() and out['image_mask'].max() <= 1


def test_neural_rendering_resolution_is_stored_and_settable_per_call(G):
    z, c = _inputs(G, batch=1)
    with torch.no_grad():
        out = G(z, c, neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
    assert out['image_raw'].shape[-1] == SMALL_NRR and out['image'].shape[-1] == G.img_resolution
    assert G.neural_rendering_resolution == get_preset('tiny-cpu').neural_rendering_resolution
    G2 = copy.deepcopy(G)
    G2.neural_rendering_resolution = SMALL_NRR
    assert int(G2.state_dict()['nrr']) == SMALL_NRR


def test_mapping_is_conditioned_on_pose(G):
    z, c = _inputs(G)
    ws_zero = G.mapping(z, c)
    assert torch.equal(ws_zero, G.mapping(z, c, pose_params=torch.zeros(2, 6)))
    ws_posed = G.mapping(z, c, pose_params=_pose(2))
    assert ws_posed.shape == (2, G.num_ws, G.w_dim)
    assert not torch.allclose(ws_zero, ws_posed)
    assert torch.equal(ws_posed, G.mapping(z, torch.cat([c, _pose(2)], dim=1)))


def test_warp_changes_the_render_only_for_a_nonzero_pose(G):
    z, c = _inputs(G)
    kwargs = dict(neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
    with torch.no_grad():
        ws = G.mapping(z, c, _pose(2))
        canonical = G.synthesis(ws, c, torch.zeros(2, 6), apply_def=False, **kwargs)
        _assert_same(canonical, G.synthesis(ws, c, torch.zeros(2, 6), apply_def=True, **kwargs))
        posed = G.synthesis(ws, c, _pose(2), apply_def=True, **kwargs)
        _assert_same(canonical, G.synthesis(ws, c, _pose(2), apply_def=False, **kwargs))
    assert not torch.allclose(canonical['image_mask'], posed['image_mask'])
    assert not torch.allclose(canonical['image'], posed['image'])


def test_gradients_reach_every_trainable_parameter():
    G = _build().train()
    z, c = _inputs(G)
    out = G(z, c, pose_params=G.get_pose_params(z, c), neural_rendering_resolution=SMALL_NRR)
    (out['image'].square().mean() + out['image_raw'].square().mean()).backward()
    unused = {name for name, _ in G.named_parameters() if name.startswith('superresolution.')
              and name.endswith('noise_strength')}                     # sr_noise_mode 'none' (§2.10)
    for name, param in G.named_parameters():
        if name in unused:
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_pose_branch_learns_through_the_warp():
    G = _build().train()
    z, c = _inputs(G)
    ws = G.mapping(z, c)                             # zero pose in the mapping: the warp is the only path
    pose = G.get_pose_params(z, c)
    out = G.synthesis(ws.detach(), c, pose, neural_rendering_resolution=SMALL_NRR, noise_mode='const')
    (out['image'].square().mean() + out['image_raw'].square().mean()).backward()
    grads = [p.grad for p in G.pose_branch.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_sample_returns_decoder_output_at_canonical_points(G):
    z, c = _inputs(G, batch=1)
    coords = torch.tensor([[[0.0, 0.1, 0.05], [0.1, -0.2, -0.1], [0.45, 0.0, 0.0]]])   # last one is cropped
    with torch.no_grad():
        out = G.sample(coords, None, z, c, pose_params=_pose(1), noise_mode='const')
        planes = G.planes(G.mapping(z, c, _pose(1)), noise_mode='const')
        cfg = G.rendering
        sigma, features = G.decoder(sample_trigrid(planes, coords, cfg.triplane_depth, cfg.box_warp))
    assert out['sigma'].shape == (1, 3, 1) and out['features'].shape == (1, 3, cfg.decoder_output)
    torch.testing.assert_close(out['sigma'][:, :2], sigma[:, :2])
    torch.testing.assert_close(out['features'], features)
    assert out['sigma'][0, 2, 0] == cfg.empty_density
    assert torch.equal(out['rgb'], out['features'])


def test_sample_mixed_with_precomputed_planes_equals_the_backbone_path(G):
    z, c = _inputs(G, batch=2)
    coords = torch.rand(2, 50, 3) * 0.8 - 0.4
    with torch.no_grad():
        ws = G.mapping(z, c)
        own = G.sample_mixed(coords, None, ws, noise_mode='const')
        given = G.sample_mixed(coords, None, ws, planes=G.planes(ws, noise_mode='const'))
        _assert_same(own, given)
        with pytest.raises(ValueError, match=r'^planes: expected shape \[2, 3,'):
            G.sample_mixed(coords, None, ws, planes=G.planes(ws)[:, :, :-1])


def test_density_grid_computes_the_planes_once_and_matches_the_per_chunk_path(G):
    z, c = _inputs(G, batch=1)
    grid = Grid(7, 0.8)
    with torch.no_grad():
        ws = G.mapping(z, c)
        old = density_grid(lambda p: G.sample_mixed(p, None, ws, noise_mode='const')['sigma'], grid, max_batch=100)
        calls = []
        handle = G.backbone.register_forward_hook(lambda *_: calls.append(1))
        try:
            new = density_grid(generator_density(G, ws, noise_mode='const'), grid, max_batch=100)
        finally:
            handle.remove()
    assert len(calls) == 1 and grid.resolution ** 3 > 3 * 100
    np.testing.assert_array_equal(new, old)


def test_set_rendering_reaches_every_holder_and_the_render(G):
    G = copy.deepcopy(G)
    z, c = _inputs(G, batch=1)
    coords = torch.rand(1, 40, 3) * 0.3 - 0.15                      # inside the crop at both scales below
    with torch.no_grad():
        ws = G.mapping(z, c)
        planes = G.planes(ws, noise_mode='const')
        wide = G.sample_mixed(coords * 2, None, ws, planes=planes)
        new = G.set_rendering(ray_start=2.6, ray_end=2.8, depth_resolution=5, box_warp=0.5, ray_chunk=50,
                              decoder_activation='lrelu')
        assert G.rendering is new and G.renderer.cfg is new and G.decoder.cfg is new
        assert G.decoder.activation == 'lrelu' and G.init_kwargs['rendering_kwargs']['ray_start'] == 2.6
        narrow = G.sample_mixed(coords, None, ws, planes=planes)    # box 0.5: coords address what coords * 2 did
        depth = G(z, c, neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)['image_depth']
    torch.testing.assert_close(narrow['sigma'], wide['sigma'])
    torch.testing.assert_close(narrow['features'], F.leaky_relu(wide['features'], 0.2) * math.sqrt(2))
    assert depth.min() >= 2.6 and depth.max() <= 2.8


def test_set_rendering_rejects_bad_overrides_and_keeps_the_config(G):
    G = copy.deepcopy(G)
    before = G.rendering
    for bad in (dict(depth_resolution=0), dict(triplane_features=8), dict(ray_start=5.0), dict(bogus=1)):
        with pytest.raises(ValueError, match=f'^{next(iter(bad))}:'):
            G.set_rendering(**bad)
    assert G.rendering is before and G.renderer.cfg is before


def test_background_ws_only_move_the_background(G):
    z, c = _inputs(G)
    with torch.no_grad():
        ws = G.mapping(z, c)
        kwargs = dict(neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
        own = G.synthesis(ws, c, **kwargs)
        swapped = G.synthesis(ws, c, ws_bcg=ws.roll(1, dims=0), **kwargs)
    assert torch.equal(own['image_mask'], swapped['image_mask'])
    assert torch.equal(own['image_depth'], swapped['image_depth'])
    assert not torch.allclose(own['image_background'], swapped['image_background'])


def test_no_batch_size_is_baked_in(G):
    z, c = _inputs(G, batch=3)
    with torch.no_grad():
        three = G(z, c, pose_params=_pose(3), neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
        one = G(z[1:2], c[1:2], pose_params=_pose(1), neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
    _assert_same({k: v[1:2] for k, v in three.items()}, one, exact=False)     # batched matmuls round differently


@pytest.mark.parametrize('option', ['use_torgb_raw', 'use_background'])
def test_raw_rgb_and_background_can_be_switched_off(option):
    G = _build(**{option: False})
    z, c = _inputs(G, batch=1)
    with torch.no_grad():
        out = G(z, c, neural_rendering_resolution=SMALL_NRR, **DETERMINISTIC)
    assert out['image_raw'].shape == (1, 3, SMALL_NRR, SMALL_NRR) and out['image'].shape[-1] == G.img_resolution
    if option == 'use_background':
        assert not hasattr(G, 'background')
        assert torch.equal(out['image_background'], G.raw_rgb(torch.zeros(1, 32, SMALL_NRR, SMALL_NRR),
                                                              G.mapping(z, c)))


def test_checkpoint_round_trip_needs_no_body_file(tmp_path):
    arrays = procedural_body.procedural_smpl_arrays()
    arrays = {**arrays, 'v_template': arrays['v_template'] * SHRUNK_BODY}   # a body unlike the stand-in
    smpl_dir = tmp_path / 'smpl'
    smpl_dir.mkdir()
    smpl_io.save_smpl_pickle(arrays, str(smpl_dir / 'SMPL_NEUTRAL.pkl'))
    G = _build(smpl_path=str(tmp_path))
    stand_in_faces = _build().body_warp.sizes()['box_faces']
    assert G.body_warp.sizes()['box_faces'] != stand_in_faces
    G.neural_rendering_resolution = SMALL_NRR
    buffer = io.BytesIO()
    torch.save(persistence.module_to_dict(G), buffer)
    os.remove(smpl_dir / 'SMPL_NEUTRAL.pkl')
    buffer.seek(0)
    G2 = persistence.module_from_dict(torch.load(buffer, weights_only=True)).eval()
    assert G2.neural_rendering_resolution == SMALL_NRR
    for name, tensor in G.state_dict().items():
        assert torch.equal(tensor, G2.state_dict()[name]), name
    z, c = _inputs(G)
    with torch.no_grad():
        _assert_same(G(z, c, pose_params=_pose(2), **DETERMINISTIC), G2(z, c, pose_params=_pose(2), **DETERMINISTIC))


@pytest.mark.parametrize('call,argument', [
    (lambda G, z, c: G.mapping(z, c[:, :24]), 'c'),
    (lambda G, z, c: G.mapping(z, c, pose_params=torch.zeros(2, 5)), 'pose_params'),
    (lambda G, z, c: G.mapping(z, torch.cat([c, _pose(2)], 1), pose_params=_pose(2)), 'pose_params'),
    (lambda G, z, c: G.mapping(z[:, :-1], c), 'z'),
    (lambda G, z, c: G.synthesis(G.mapping(z, c), c[:1]), 'c'),
    (lambda G, z, c: G.synthesis(G.mapping(z, c)[:, 1:], c), 'ws'),
    (lambda G, z, c: G.synthesis(G.mapping(z, c), c, pose_params=torch.zeros(2, 3)), 'pose_params'),
    (lambda G, z, c: G(z, c, neural_rendering_resolution=0), 'neural_rendering_resolution'),
    (lambda G, z, c: G.get_pose_params(z, c[:, :20]), 'c'),
])
def test_bad_inputs_raise_value_errors_naming_the_argument(G, call, argument):
    z, c = _inputs(G)
    with pytest.raises(ValueError, match=f'^{argument}:'):
        call(G, z, c)
