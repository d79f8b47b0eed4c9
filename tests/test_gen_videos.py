"""gen_videos.py on a tiny stand-in network: frame counts and sizes, camera paths, grid layout, mp4, one-line errors."""
import os
import subprocess
import sys
import types

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import fake_generator
import gen_videos
from configs.schema import CameraConfig
from training.cameras import average_camera

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
R, r = 16, 8        # SphereGenerator's image and neural rendering resolutions


@pytest.fixture(scope='module')
def network(tmp_path_factory):
    """A snapshot of SphereGenerator as G and G_ema."""
    return fake_generator.save_sphere_snapshot(tmp_path_factory.mktemp('net') / 'network-snapshot-000000.pkl')


def _run(*args):
    """Invoke the CLI in-process; returns (exit code, output) with fake_generator.CALLS cleared first."""
    return fake_generator.run_cli(gen_videos.main, *args)


def _frames(folder):
    """uint8 arrays of frame*.png in `folder`, in order."""
    names = sorted(os.listdir(folder))
    assert all(name.startswith('frame') and name.endswith('.png') for name in names), names
    return [np.asarray(PIL.Image.open(os.path.join(folder, name))) for name in names]


def _synthesis_cameras():
    """Camera vectors [F, 25] of the recorded synthesis calls (first sample of each frame)."""
    return torch.cat([kwargs['c'][:1] for method, kwargs in fake_generator.CALLS if method == 'synthesis'])


@pytest.mark.parametrize('mode, side', [('image', R), ('depth', r), ('raw', r), ('image_depth', r)])
def test_png_frames_have_the_promised_count_and_size(network, tmp_path, mode, side):
    code, output = _run('--network', network, '--seeds', '0-5', '--grid', '3x1', '--frames', 5, '--format', 'png',
                        '--image_mode', mode, '--outdir', tmp_path, '--ray-sample-mult', 1)
    assert code == 0, output
    assert sorted(os.listdir(tmp_path)) == ['seeds0000-0001-0002_orbit', 'seeds0003-0004-0005_orbit']
    for folder in os.listdir(tmp_path):
        frames = _frames(tmp_path / folder)
        assert len(frames) == 5
        assert all(frame.shape == (side, 3 * side, 3) and frame.dtype == np.uint8 for frame in frames)
    assert 'Wrote 2 frame folder(s) of 5 frames' in output


def _sphere_positions(yaw, pitch, radius):
    """Independent EG3D LookAtPoseSampler centre: (r sin(phi) cos(pi - h), r cos(phi), r sin(phi) sin(pi - h))."""
    phi = np.arccos(1 - 2 * pitch / np.pi)
    return radius * np.stack([np.sin(phi) * np.cos(np.pi - yaw), np.cos(phi), np.sin(phi) * np.sin(np.pi - yaw)], 1)


@pytest.mark.parametrize('motion', ['orbit', 'wobble'])
def test_camera_paths(network, tmp_path, motion):
    frames = 8
    code, output = _run('--network', network, '--seeds', 0, '--frames', frames, '--format', 'png', '--motion', motion,
                        '--outdir', tmp_path)
    assert code == 0, output
    c = _synthesis_cameras().double().numpy()
    k = np.arange(frames)
    if motion == 'orbit':
        yaw, pitch = np.pi / 2 + 2 * np.pi * k / frames, np.full(frames, np.pi / 2)
    else:
        yaw = np.pi / 2 + 0.35 * np.sin(2 * np.pi * k / frames)
        pitch = np.pi / 2 - 0.05 + 0.25 * np.cos(2 * np.pi * k / frames)
    cfg = CameraConfig()
    centres = _sphere_positions(yaw, pitch, cfg.radius)
    assert np.allclose(c[:, [3, 7, 11]], centres, atol=1e-5)
    forward = np.asarray(cfg.lookat) - centres
    assert np.allclose(c[:, [2, 6, 10]], forward / np.linalg.norm(forward, axis=1, keepdims=True), atol=1e-5)
    assert np.allclose(c[:, 16], cfg.focal)
    if motion == 'orbit':                 # a full turn: front, camera on +x (the subject's left), back, on -x
        assert c[0, 11] > 2.6 and c[2, 3] > 2.6 and c[4, 11] < -2.6 and c[6, 3] < -2.6


def test_mapping_and_rendering_share_the_pose(network, tmp_path):
    pose = '0.1,0,0,0,0.2,-0.1'
    code, output = _run('--network', network, '--seeds', '0-1', '--grid', '2x1', '--frames', 3, '--format', 'png',
                        '--body-pose', pose, '--posed', '--trunc', 0.5, '--trunc-cutoff', 2, '--outdir', tmp_path)
    assert code == 0, output
    expected = torch.tensor([[0.1, 0, 0, 0, 0.2, -0.1]]).expand(2, -1)
    (mapping,) = [kwargs for method, kwargs in fake_generator.CALLS if method == 'mapping']
    assert torch.allclose(mapping['c'], average_camera().expand(2, -1))
    assert torch.allclose(mapping['pose_params'], expected)
    assert mapping['truncation_psi'] == 0.5 and mapping['truncation_cutoff'] == 2
    synthesis = [kwargs for method, kwargs in fake_generator.CALLS if method == 'synthesis']
    assert len(synthesis) == 3
    for call in synthesis:
        assert call['apply_def'] is True and call['noise_mode'] == 'const'
        assert torch.allclose(call['pose_params'], expected)
        assert call['rendering'].depth_resolution == 8                  # 4 x the default --ray-sample-mult 2


def test_branch_pose_is_held_for_the_whole_video(network, tmp_path):
    code, output = _run('--network', network, '--seeds', 3, '--frames', 4, '--format', 'png', '--body-pose', 'branch',
                        '--outdir', tmp_path)
    assert code == 0, output
    (branch,) = [kwargs for method, kwargs in fake_generator.CALLS if method == 'get_pose_params']
    assert torch.allclose(branch['c'], average_camera())
    (mapping,) = [kwargs for method, kwargs in fake_generator.CALLS if method == 'mapping']
    synthesis = [kwargs for method, kwargs in fake_generator.CALLS if method == 'synthesis']
    assert mapping['pose_params'].abs().sum() > 0
    assert all(torch.equal(call['pose_params'], mapping['pose_params']) for call in synthesis)
    assert all(call['apply_def'] is False for call in synthesis)                       # canonical by default


def test_grid_tiles_are_the_single_seed_videos(network, tmp_path):
    assert _run('--network', network, '--seeds', '4-7', '--grid', '2x2', '--frames', 2, '--format', 'png',
                '--outdir', tmp_path / 'grid')[0] == 0
    assert _run('--network', network, '--seeds', '4-7', '--frames', 2, '--format', 'png',
                '--outdir', tmp_path / 'single')[0] == 0
    grid = _frames(tmp_path / 'grid' / 'seeds0004-0005-0006-0007_orbit')
    for index, seed in enumerate(range(4, 8)):
        single = _frames(tmp_path / 'single' / f'seed{seed:04d}_orbit')
        row, col = divmod(index, 2)
        for k in range(2):
            assert np.array_equal(grid[k][row * R:(row + 1) * R, col * R:(col + 1) * R], single[k])
    assert not np.array_equal(grid[0][:R, :R], grid[0][:R, R:])                         # the seeds differ


def test_depth_frames_map_the_fixed_depth_range(network, tmp_path):
    code, output = _run('--network', network, '--seeds', 0, '--frames', 1, '--format', 'png', '--image-mode', 'depth',
                        '--output', tmp_path / 'depth')
    assert code == 0, output
    (frame,) = _frames(tmp_path / 'depth')
    rendering = fake_generator.SphereGenerator().rendering
    v = np.linspace(-1, 1, r)
    disc = (v[:, None] ** 2 + v[None, :] ** 2) < 0.5
    depth = 2.7 - 0.25 * disc                          # SphereGenerator's depth for t_x = 0 (frontal camera)
    expected = np.round((depth - rendering.ray_end) / (rendering.ray_start - rendering.ray_end) * 255)
    assert np.abs(frame[..., 0].astype(float) - expected).max() <= 1
    assert np.array_equal(frame[..., 0], frame[..., 2])


def test_mp4_is_readable_or_refused_before_output(network, tmp_path):
    args = ['--network', network, '--seeds', '0-1', '--grid', '2x1', '--frames', 6, '--fps', 12]
    try:
        import imageio_ffmpeg
    except ImportError:
        code, output = _run(*args, '--outdir', tmp_path / 'out')
        assert code != 0 and 'pip install imageio-ffmpeg' in output and not (tmp_path / 'out').exists()
        return
    assert _run(*args, '--outdir', tmp_path / 'mp4')[0] == 0
    assert _run(*args, '--outdir', tmp_path / 'png', '--format', 'png')[0] == 0
    assert os.listdir(tmp_path / 'mp4') == ['seeds0000-0001_orbit.mp4']
    reader = imageio_ffmpeg.read_frames(str(tmp_path / 'mp4' / 'seeds0000-0001_orbit.mp4'))
    meta = next(reader)
    assert tuple(meta['size']) == (2 * R, R) and meta['fps'] == 12
    decoded = [np.frombuffer(frame, np.uint8).reshape(R, 2 * R, 3) for frame in reader]
    frames = _frames(tmp_path / 'png' / 'seeds0000-0001_orbit')
    assert len(decoded) == len(frames) == 6
    errors = [np.abs(a.astype(float) - b).mean() for a, b in zip(decoded, frames)]
    assert max(errors) < 8                                # lossy H.264 + 4:2:0 chroma, but the same pictures


def test_missing_imageio_ffmpeg_is_one_line_before_rendering(network, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', None)
    code, output = _run('--network', network, '--seeds', 0, '--frames', 2, '--outdir', tmp_path / 'out')
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert errors == ['Error: --format mp4 needs the imageio-ffmpeg package: pip install imageio-ffmpeg  '
                      '(or pip install -e ".[video]"), or use --format png'], output
    assert fake_generator.CALLS == [] and not (tmp_path / 'out').exists()


def test_missing_ffmpeg_binary_is_one_line(network, tmp_path, monkeypatch):
    def no_binary():
        raise RuntimeError('No ffmpeg exe could be found.')

    monkeypatch.setitem(sys.modules, 'imageio_ffmpeg', types.SimpleNamespace(get_ffmpeg_exe=no_binary))
    code, output = _run('--network', network, '--seeds', 0, '--frames', 2, '--outdir', tmp_path / 'out')
    assert code != 0 and output.splitlines()[-1].startswith(
        'Error: --format mp4 needs an ffmpeg binary (No ffmpeg exe could be found.): pip install imageio-ffmpeg')
    assert fake_generator.CALLS == [] and not (tmp_path / 'out').exists()


@pytest.mark.parametrize('fmt', ['png', 'mp4'])
def test_interrupted_run_leaves_no_partial_output(network, tmp_path, monkeypatch, fmt):
    if fmt == 'mp4':
        pytest.importorskip('imageio_ffmpeg')
    real_render = gen_videos.render_frame
    calls = []

    def flaky(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_render(*args)

    outdir = tmp_path / 'out'
    assert _run('--network', network, '--seeds', 0, '--frames', 2, '--format', fmt, '--outdir', outdir)[0] == 0
    before = sorted(os.listdir(outdir))
    monkeypatch.setattr(gen_videos, 'render_frame', flaky)
    code, output = _run('--network', network, '--seeds', 0, '--frames', 4, '--format', fmt, '--outdir', outdir)
    assert code != 0 and 'Aborted!' in output and len(calls) == 3
    assert sorted(os.listdir(outdir)) == before                    # no temporaries, the old video untouched
    if fmt == 'png':
        assert len(_frames(outdir / 'seed0000_orbit')) == 2


def test_rerun_replaces_a_frame_folder(network, tmp_path):
    for frames in (4, 2):
        code, output = _run('--network', network, '--seeds', 1, '--frames', frames, '--format', 'png', '--outdir', tmp_path)
        assert code == 0, output
    assert os.listdir(tmp_path) == ['seed0001_orbit'] and len(_frames(tmp_path / 'seed0001_orbit')) == 2


def test_output_of_the_wrong_kind_is_refused(network, tmp_path):
    (tmp_path / 'seed0000_orbit').write_text('not a folder')
    code, output = _run('--network', network, '--seeds', 0, '--frames', 2, '--format', 'png', '--outdir', tmp_path)
    assert code != 0 and output.splitlines()[-1] == (f'Error: {tmp_path / "seed0000_orbit"} is a file but '
                                                     '--format png writes a frame folder there')
    assert fake_generator.CALLS == []


def test_help_hides_the_original_spellings(network):
    output = CliRunner().invoke(gen_videos.main, ['--help']).output
    assert '--image-mode' in output and '--frames' in output
    assert '--image_mode' not in output and '--w-frames' not in output and '--sample_mult' not in output


BAD = {
    'grid zero': (['--grid', '0x2'], "Invalid value for '--grid': '0x2': expected columns x rows like '2x2'"),
    'grid words': (['--grid', 'big'], "Invalid value for '--grid'"),
    'partial grid': (['--seeds', '0-2', '--grid', '2x1'], "Invalid value for '--seeds': 3 seed(s) do not fill"),
    'mode': (['--image-mode', 'normals'], "Invalid value for '--image-mode': 'normals' is not one of"),
    'mode alias': (['--image_mode', 'normals'], "Invalid value for '--image-mode'"),
    'frames': (['--w-frames', 0], "Invalid value for '--frames'"),
    'both outputs': (['--output', 'x.mp4'], 'give either --outdir or --output (exactly one)'),
    'output for two grids': (['--seeds', '0-1', '--no-outdir'], '--output names one video but the seeds fill 2 grids'),
    'pose': (['--body-pose', '1,2'], "expected 'zero', 'branch' or 6"),
    'device': (['--device', 'tpu'], "invalid device 'tpu'"),
    'missing network': (['--network', 'nope.pkl'], 'no such file'),
    'motion': (['--motion', 'spin'], "Invalid value for '--motion'"),
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_flags_are_one_line_and_write_nothing(network, tmp_path, case):
    extra, message = BAD[case]
    outdir = tmp_path / 'out'
    args = ['--network', network, '--seeds', 0, '--frames', 2, '--format', 'png', '--outdir', outdir]
    if '--no-outdir' in extra:
        extra = [a for a in extra if a != '--no-outdir'] + ['--output', outdir / 'v']
        args = args[:-2]
    if '--network' in extra:
        args = args[2:]
    if '--seeds' in extra:
        args = [a for k, a in enumerate(args) if k not in (args.index('--seeds'), args.index('--seeds') + 1)]
    code, output = _run(*args, *extra)
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and message in errors[0], output
    assert not outdir.exists()


@pytest.mark.slow
def test_end_to_end_with_the_real_tiny_generator(tmp_path):
    net = tmp_path / 'random' / 'network-snapshot-000000.pkl'
    subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'make_random_network.py'), '--preset', 'tiny-cpu',
                    '--out', str(net), '--seed', '3'], check=True, capture_output=True)
    code, output = _run('--network', net, '--seeds', '0-1', '--grid', '1x2', '--frames', 3, '--format', 'png',
                        '--posed', '--body-pose', 'branch', '--ray-sample-mult', 1, '--device', 'cpu',
                        '--outdir', tmp_path / 'out')
    assert code == 0, output
    frames = _frames(tmp_path / 'out' / 'seeds0000-0001_orbit')
    assert len(frames) == 3 and all(frame.shape == (2 * 64, 64, 3) for frame in frames)
    assert not np.array_equal(frames[0], frames[1])                        # the camera moved
