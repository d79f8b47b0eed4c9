"""gen_samples.py end to end on a tiny stand-in network: exactly the promised files, wiring, one-line errors."""
import math
import os
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import fake_generator
import gen_samples
import legacy
from configs.presets import get_preset
from configs.schema import CameraConfig
from torch_utils import checkpoint
from training.cameras import average_camera, fov_deg_to_focal
from training.geometry.density_grid import Grid, density_grid
from training.networks.mapping import MappingNetwork

trimesh = pytest.importorskip('trimesh')
pytest.importorskip('skimage')


@pytest.fixture(scope='module')
def network(tmp_path_factory):
    """A snapshot of SphereGenerator (sphere radius 0.25) as G and G_ema."""
    return fake_generator.save_sphere_snapshot(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl')


def _run(*args):
    """Invoke the CLI in-process; returns (exit code, output) with fake_generator.CALLS cleared first."""
    return fake_generator.run_cli(gen_samples.main, *args)


def _calls(name):
    """Kwargs of the recorded fake_generator calls of method `name`, in order."""
    return [kwargs for method, kwargs in fake_generator.CALLS if method == name]


def test_writes_exactly_the_promised_files(network, tmp_path):
    outdir = tmp_path / 'out'
    code, output = _run('--network', network, '--seeds', '0-1', '--outdir', outdir, '--shapes', '--shape-res', 24)
    assert code == 0, output
    stems = [f'seed000{seed}{suffix}' for seed in (0, 1) for suffix in ('.png', '_depth.png', '_mask.png', '.ply')]
    assert sorted(os.listdir(outdir)) == sorted(stems)
    assert f'Wrote 8 files to {outdir}' in output
    image = np.asarray(PIL.Image.open(outdir / 'seed0000.png'))
    assert image.shape == (16, 3 * 16, 3) and image.dtype == np.uint8
    depth = np.asarray(PIL.Image.open(outdir / 'seed0000_depth.png'))
    mask = np.asarray(PIL.Image.open(outdir / 'seed0000_mask.png'))
    assert depth.shape == mask.shape == (8, 3 * 8)
    assert set(np.unique(mask)) == {0, 255} and depth[4, 4] > depth[0, 0]     # the disc is nearer: brighter
    mesh = trimesh.load(str(outdir / 'seed0001.ply'), force='mesh', process=False)
    spacing = 0.8 / 23                                            # cube of side 2 * crop = 0.8
    assert mesh.is_watertight and mesh.volume > 0
    assert np.abs(np.linalg.norm(mesh.vertices, axis=1) - 0.25).max() < spacing


def test_wiring_of_cameras_poses_and_samples(network, tmp_path):
    code, output = _run('--network', network, '--seeds', '3', '--outdir', tmp_path, '--yaws', '90,-90',
                        '--trunc', 0.5, '--trunc-cutoff', 2)
    assert code == 0, output
    (mapping,) = _calls('mapping')
    assert torch.allclose(mapping['c'], average_camera())
    assert torch.equal(mapping['pose_params'], torch.zeros(1, 6))
    assert mapping['truncation_psi'] == 0.5 and mapping['truncation_cutoff'] == 2
    front, back = _calls('synthesis')
    for call in (front, back):
        assert call['apply_def'] is False and call['noise_mode'] == 'const'
        assert call['rendering'].depth_resolution == 8                     # 4 samples x --ray-sample-mult 2
        assert call['rendering'].depth_resolution_importance == 8
        assert call['c'][0, 16] == pytest.approx(CameraConfig().focal)     # the training focal by default
    assert front['c'][0, 11] > 2 and back['c'][0, 11] < -2                 # camera t_z: +z is the front


def test_posed_body_pose_and_float_fov(network, tmp_path):
    pose = '0.1,0,0,0,0.2,0'
    code, output = _run('--network', network, '--seeds', '0', '--outdir', tmp_path, '--posed', '--body-pose', pose,
                        '--fov-deg', 12.5, '--yaws', 0, '--ray-sample-mult', 1)
    assert code == 0, output
    expected = torch.tensor([[0.1, 0, 0, 0, 0.2, 0]])
    assert torch.allclose(_calls('mapping')[0]['pose_params'], expected)
    (synthesis,) = _calls('synthesis')
    assert synthesis['apply_def'] is True and torch.allclose(synthesis['pose_params'], expected)
    assert synthesis['c'][0, 16] == pytest.approx(fov_deg_to_focal(12.5))
    assert synthesis['rendering'].depth_resolution == 4
    assert synthesis['c'][0, 3] < -2                                           # yaw 0: camera on -x


def test_branch_pose_uses_the_pose_branch(network, tmp_path):
    code, output = _run('--network', network, '--seeds', '0', '--outdir', tmp_path, '--posed', '--body-pose', 'branch')
    assert code == 0, output
    cond, views = _calls('get_pose_params')
    assert torch.allclose(cond['c'], average_camera()) and views['c'].shape == (3, 25)
    synthesis = _calls('synthesis')
    assert not torch.equal(synthesis[0]['pose_params'], synthesis[2]['pose_params'])   # per-view poses


def test_same_seed_same_files(network, tmp_path):
    for name in ('a', 'b'):
        assert _run('--network', network, '--seeds', '5', '--outdir', tmp_path / name)[0] == 0
    for file in os.listdir(tmp_path / 'a'):
        assert (tmp_path / 'a' / file).read_bytes() == (tmp_path / 'b' / file).read_bytes()


def _garbage(tmp_path):
    path = tmp_path / 'garbage.pkl'
    path.write_bytes(b'not a network' * 10)
    return path


def _mapping_only(tmp_path):
    path = tmp_path / 'mapping.pkl'
    checkpoint.save_network_snapshot(path, {'G_ema': MappingNetwork(z_dim=4, c_dim=0, w_dim=4, num_ws=2)})
    return path


def _file(tmp_path):
    path = tmp_path / 'a_file'
    path.write_text('x')
    return path


BAD = {
    'missing network': (lambda net, tmp: ['--network', tmp / 'nope.pkl'], 'no such file'),
    'garbage network': (lambda net, tmp: ['--network', _garbage(tmp)], 'not a PyTorch file'),
    'no generator': (lambda net, tmp: ['--network', _mapping_only(tmp)], 'G_ema is not a portrait generator'),
    'seeds': (lambda net, tmp: ['--network', net, '--seeds', '3-1'], "Invalid value for '--seeds'"),
    'seed words': (lambda net, tmp: ['--network', net, '--seeds', 'a,b'], "Invalid value for '--seeds'"),
    'seed size': (lambda net, tmp: ['--network', net, '--seeds', str(2**32)], "expected seeds in [0, 4294967295]"),
    'pose length': (lambda net, tmp: ['--network', net, '--body-pose', '1,2,3'], "expected 'zero', 'branch' or 6"),
    'yaws': (lambda net, tmp: ['--network', net, '--yaws', 'front'], "Invalid value for '--yaws'"),
    'shape format': (lambda net, tmp: ['--network', net, '--shape-format', '.stl'], "'.stl' is not one of"),
    'fov': (lambda net, tmp: ['--network', net, '--fov-deg', 200], "Invalid value for '--fov-deg'"),
    'device': (lambda net, tmp: ['--network', net, '--device', 'tpu'], "invalid device 'tpu'"),
    'no surface': (lambda net, tmp: ['--network', net, '--shapes', '--shape-res', 8, '--shape-level', 1e6],
                   'seed 0: no surface at level 1e+06'),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_is_one_line_and_writes_nothing(network, tmp_path, case):
    make_args, message = BAD[case]
    outdir = tmp_path / 'out'
    args = make_args(network, tmp_path)
    args = (['--seeds', '0'] if '--seeds' not in args else []) + args + ['--outdir', outdir]
    code, output = _run(*args)
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and message in errors[0], output
    assert not outdir.exists() or os.listdir(outdir) == []


def test_outdir_that_cannot_be_created(network, tmp_path):
    code, output = _run('--network', network, '--seeds', '0', '--outdir', _file(tmp_path) / 'sub')
    assert code != 0 and output.splitlines()[-1].startswith('Error: --outdir: cannot create')


def test_missing_mesh_package_is_reported_before_rendering(network, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'mrcfile', None)
    code, output = _run('--network', network, '--seeds', '0', '--outdir', tmp_path / 'out', '--shapes',
                        '--shape-format', '.mrc')
    assert code != 0 and 'pip install mrcfile' in output and not (tmp_path / 'out').exists()
    assert _calls('synthesis') == []


def test_seed_parsing():
    parse = gen_samples.SeedList().convert
    assert parse('0-3,7, 9', None, None) == [0, 1, 2, 3, 7, 9]
    assert parse('5', None, None) == [5]
    assert math.isclose(gen_samples.DEFAULT_FOV_DEG, 2 * math.degrees(math.atan(0.5 / CameraConfig().focal)))


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


TINY_NRR = get_preset('tiny-cpu').neural_rendering_resolution


@pytest.fixture(scope='module')
def random_network(tmp_path_factory):
    """A random tiny-cpu snapshot written by scripts/make_random_network.py, run as users run it."""
    path = tmp_path_factory.mktemp('random') / 'sub' / 'network-snapshot-000000.pkl'
    subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'make_random_network.py'), '--preset', 'tiny-cpu',
                    '--out', str(path), '--seed', '1'], check=True, capture_output=True, cwd=str(path.parent.parent))
    return str(path)


@pytest.mark.slow
def test_random_network_snapshot_has_the_training_layout(random_network):
    data = legacy.load_network_pkl(random_network)
    assert {'G', 'D', 'G_ema', 'D_ema', 'training_set_kwargs', 'pose_predict_kwargs'} <= set(data)
    assert type(data['G']).__name__ == 'PortraitGenerator' and type(data['D']).__name__ == 'DualDiscriminator'
    assert data['pose_predict_kwargs']['neural_rendering_resolution'] == TINY_NRR
    for name, tensor in data['G'].state_dict().items():
        assert torch.equal(data['G_ema'].state_dict()[name], tensor), name


def _interior_median_sigma(network_pkl, seed):
    """Median raw sigma over the interior of a 9^3 grid (the points of a 17^3 grid's interior) for `seed`."""
    G = legacy.load_network_pkl(network_pkl)['G_ema']
    z = torch.from_numpy(np.random.RandomState(seed).randn(1, G.z_dim)).float()
    ws = G.mapping(z, average_camera(), pose_params=torch.zeros(1, 6))
    grid = Grid(9, min(G.rendering.box_warp, 2 * G.rendering.crop))
    volume = density_grid(lambda p: G.sample_mixed(p, None, ws)['sigma'], grid)
    return float(np.median(volume[1:-1, 1:-1, 1:-1]))


@pytest.mark.slow
def test_end_to_end_with_the_real_tiny_generator(random_network, tmp_path):
    level = _interior_median_sigma(random_network, seed=2)
    outdir = tmp_path / 'out'
    code, output = _run('--network', random_network, '--seeds', 2, '--outdir', outdir, '--device', 'cpu', '--posed',
                        '--yaws', '90,-90', '--ray-sample-mult', 1,
                        '--body-pose', 'branch', '--shapes', '--shape-res', 17, '--shape-level', level,
                        '--shape-format', '.obj')
    assert code == 0, output
    assert sorted(os.listdir(outdir)) == ['seed0002.obj', 'seed0002.png', 'seed0002_depth.png', 'seed0002_mask.png']
    assert np.asarray(PIL.Image.open(outdir / 'seed0002.png')).shape == (64, 2 * 64, 3)
    assert np.asarray(PIL.Image.open(outdir / 'seed0002_depth.png')).shape == (TINY_NRR, 2 * TINY_NRR)
    mesh = trimesh.load(str(outdir / 'seed0002.obj'), force='mesh', process=False)
    assert len(mesh.faces) > 0 and np.abs(mesh.vertices).max() <= 0.4 + 1e-6       # inside the crop cube


@pytest.mark.slow
def test_ray_sample_mult_reaches_the_real_renderer(random_network):
    G = legacy.load_network_pkl(random_network)['G_ema']
    old = G.rendering
    gen_samples.multiply_ray_samples(G, 2)
    configs = [value for module in G.modules() for value in vars(module).values() if type(value) is type(old)]
    assert len(configs) >= 2 and all(cfg is G.rendering for cfg in configs)    # G and its renderer (at least)
    assert G.rendering.depth_resolution == 2 * old.depth_resolution
    assert G.rendering.depth_resolution_importance == 2 * old.depth_resolution_importance


@pytest.mark.slow
def test_ray_sample_mult_changes_the_render(random_network, tmp_path):
    for mult in (1, 2):
        code, output = _run('--network', random_network, '--seeds', 0, '--outdir', tmp_path / str(mult), '--yaws', 90,
                            '--ray-sample-mult', mult)
        assert code == 0, output
    assert (tmp_path / '1' / 'seed0000_depth.png').read_bytes() != (tmp_path / '2' / 'seed0000_depth.png').read_bytes()
