"""predict_poses.py on a random tiny-cpu network and synthetic photos: JSON, side-by-side PNGs, symmetry, errors."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import PIL.Image
import pytest
import torch

import fake_generator
import legacy
import predict_poses
from portrait_data.synthetic import generate
from synthetic_testing import synthetic_zips
from torch_utils import checkpoint
from training.cameras import average_camera, mirror_camera

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RES = 64                                                   # tiny-cpu image resolution
MIRROR_SIGN = np.array([1, -1, -1, 1, -1, -1])             # an axis-angle mirrored across x = 0 keeps x only


@pytest.fixture(scope='module')
def network(tmp_path_factory):
    """A random tiny-cpu snapshot written by scripts/make_random_network.py."""
    path = tmp_path_factory.mktemp('random') / 'network-snapshot-000000.pkl'
    subprocess.run([sys.executable, os.path.join(REPO, 'scripts', 'make_random_network.py'), '--preset', 'tiny-cpu',
                    '--out', str(path), '--seed', '2'], check=True, capture_output=True)
    return str(path)


def _write_photos(root, samples):
    """Folders root/images (PNGs + dataset.json with 25-float cameras) and root/masks; returns both paths."""
    images, masks = root / 'images', root / 'masks'
    labels = []
    for name, image, mask, camera in samples:
        for folder, array in ((images, image), (masks, mask)):
            (folder / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
            PIL.Image.fromarray(array).save(folder / name)
        labels.append([name, [float(v) for v in camera]])
    (images / 'dataset.json').write_text(json.dumps({'labels': labels}))
    return images, masks


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Three synthetic photos (one in a subfolder) plus the horizontal mirror of the first with the mirrored camera."""
    samples = [(f'sub/{s.name}' if k == 2 else s.name, s.image, s.mask, s.camera)
               for k, s in enumerate(generate(num_images=3, resolution=RES, seed=5))]
    first = samples[0]
    assert abs(first[3][3]) > 0.1                             # off the x = 0 plane: a strict left/right case
    mirrored = mirror_camera(torch.tensor(np.asarray(first[3], np.float32))[None])[0].numpy()
    samples.append(('mirrored.png', first[1][:, ::-1].copy(), first[2][:, ::-1].copy(), mirrored))
    return _write_photos(tmp_path_factory.mktemp('photos'), samples)


def _run(*args):
    """Invoke the CLI in-process; returns (exit code, output)."""
    return fake_generator.run_cli(predict_poses.main, *args)


@pytest.fixture(scope='module')
def result(network, photos, tmp_path_factory):
    """(outdir, poses) of one run over the photos with seeds 0-1."""
    outdir = tmp_path_factory.mktemp('out')
    code, output = _run('--network', network, '--data', photos[0], '--masks', photos[1], '--outdir', outdir,
                        '--seeds', '0-1', '--device', 'cpu')
    assert code == 0, output
    assert 'Predicted 4 poses' in output
    return outdir, json.loads((outdir / 'poses.json').read_text())


def test_one_pose_and_one_side_by_side_png_per_photo(result, photos):
    outdir, poses = result
    names = ['img00000000.png', 'img00000001.png', 'mirrored.png', 'sub/img00000002.png']
    assert sorted(poses) == names
    assert all(len(pose) == 6 and np.isfinite(pose).all() for pose in poses.values())
    assert len({tuple(pose) for pose in poses.values()}) == 4
    for name in names:
        tiles = np.asarray(PIL.Image.open(outdir / name))
        assert tiles.shape == (RES, 3 * RES, 3)                                   # photo | seed 0 | seed 1
        assert np.array_equal(tiles[:, :RES], np.asarray(PIL.Image.open(photos[0] / name)))
        assert not np.array_equal(tiles[:, RES:2 * RES], tiles[:, 2 * RES:])
    assert sorted(os.listdir(outdir)) == ['img00000000.png', 'img00000001.png', 'mirrored.png', 'poses.json', 'sub']


def test_mirrored_photo_and_camera_give_the_mirrored_pose(result):
    _, poses = result
    original, mirrored = np.array(poses['img00000000.png']), np.array(poses['mirrored.png'])
    assert np.abs(original).max() > 1e-2
    assert np.allclose(mirrored, MIRROR_SIGN * original, atol=1e-5)


def _d_input(photo, mask, nrr):
    """D's real input built here with PIL-free torch ops: [-1, 1] image, antialiased bilinear raw and mask."""
    image = torch.tensor(np.asarray(photo), dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
    seg = torch.tensor(np.asarray(mask), dtype=torch.float32)[None, None] / 255
    resize = dict(size=(nrr, nrr), mode='bilinear', align_corners=False, antialias=True)
    return dict(image=image, image_raw=torch.nn.functional.interpolate(image, **resize),
                image_mask=torch.nn.functional.interpolate(seg, **resize))


def test_stored_pose_predict_kwargs_and_D_ema_are_used(network, photos, tmp_path):
    data = legacy.load_network_pkl(network)
    D = data['D'].requires_grad_(False)
    with torch.no_grad():
        for p in D.parameters():
            p.add_(0.1 * torch.randn_like(p))
    kwargs = dict(blur_sigma=1.5, neural_rendering_resolution=16)
    net = tmp_path / 'variant.pkl'
    checkpoint.save_network_snapshot(net, {'G': data['G'], 'D': D, 'G_ema': data['G_ema'], 'D_ema': data['D_ema']},
                                     {'pose_predict_kwargs': kwargs})
    code, output = _run('--network', net, '--data', photos[0], '--masks', photos[1], '--outdir', tmp_path / 'out')
    assert code == 0, output
    poses = json.loads((tmp_path / 'out' / 'poses.json').read_text())
    name = 'img00000001.png'
    img = _d_input(PIL.Image.open(photos[0] / name), PIL.Image.open(photos[1] / name), 16)
    labels = dict(json.loads((photos[0] / 'dataset.json').read_text())['labels'])
    c = torch.tensor([labels[name]])
    expected = data['D_ema'].predict_pose(img, c, blur_sigma=1.5)[0].numpy()
    assert np.allclose(poses[name], expected, atol=1e-5)
    assert not np.allclose(poses[name], D.predict_pose(img, c, blur_sigma=1.5)[0].numpy(), atol=1e-3)
    assert not np.allclose(poses[name], data['D_ema'].predict_pose(img, c)[0].numpy(), atol=1e-3)   # blur matters

    G = data['G_ema']                                  # the fake: G_ema from the photo's camera with that pose
    pose = torch.tensor([poses[name]])
    z = torch.from_numpy(np.random.RandomState(0).randn(1, G.z_dim)).float()
    ws = G.mapping(z, average_camera(), pose_params=pose)
    fake = G.synthesis(ws, c, pose_params=pose, apply_def=True, noise_mode='const')['image'][0]
    fake = ((fake + 1) * 127.5).round().clamp(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    tile = np.asarray(PIL.Image.open(tmp_path / 'out' / name))[:, RES:]
    assert np.abs(tile.astype(int) - fake).max() <= 1


def test_dataset_zip_with_31_float_labels(network, tmp_path):
    images, masks = synthetic_zips(tmp_path, 2, RES, seed=1)
    code, output = _run('--network', network, '--data', images, '--masks', masks, '--outdir', tmp_path / 'out')
    assert code == 0, output
    poses = json.loads((tmp_path / 'out' / 'poses.json').read_text())
    assert sorted(poses) == ['img00000000.png', 'img00000001.png']


def _copy(photos, tmp_path):
    """A writable copy of the photo folders."""
    images, masks = tmp_path / 'images', tmp_path / 'masks'
    shutil.copytree(photos[0], images)
    shutil.copytree(photos[1], masks)
    return images, masks


def _set_label(images, name, values):
    """Replace the label of `name` in images/dataset.json."""
    obj = json.loads((images / 'dataset.json').read_text())
    obj['labels'] = [[n, values if n == name else v] for n, v in obj['labels']]
    (images / 'dataset.json').write_text(json.dumps(obj))


def _spoil(case, images, masks):
    """Make `case` wrong in the copied folders; returns extra CLI args."""
    if case == 'missing mask':
        os.remove(masks / 'img00000001.png')
    elif case == 'short label':
        _set_label(images, 'img00000001.png', [0.0] * 24)
    elif case == 'resolution':
        for folder in (images, masks):
            image = PIL.Image.open(folder / 'mirrored.png')
            image.resize((32, 32)).save(folder / 'mirrored.png')
    elif case == 'corrupt image':
        (images / 'img00000001.png').write_bytes(b'\x89PNG not really')
    elif case == 'truncated image':
        data = (images / 'img00000001.png').read_bytes()
        (images / 'img00000001.png').write_bytes(data[:len(data) // 2])
    elif case == 'rgb mask':
        PIL.Image.open(masks / 'img00000001.png').convert('RGB').save(masks / 'img00000001.png')
    elif case == 'no labels':
        os.remove(images / 'dataset.json')
    return []


BAD = {
    'missing mask': "images/img00000001.png: no mask 'img00000001.png' in",
    'short label': "dataset.json: labels['img00000001.png']: expected 25 camera floats (or 31, camera + an ignored "
                   'pose), got 24',
    'resolution': "images/mirrored.png: image is 32x32; the network's D takes 64x64",
    'corrupt image': 'images/img00000001.png: cannot read image',
    'truncated image': 'images/img00000001.png: cannot decode image',
    'rgb mask': 'masks/img00000001.png: mask mode RGB is not single-channel',
    'no labels': 'dataset.json: missing',
}


@pytest.mark.parametrize('case', sorted(BAD))
def test_bad_input_is_one_line_naming_the_file(network, photos, tmp_path, case):
    images, masks = _copy(photos, tmp_path)
    _spoil(case, images, masks)
    outdir = tmp_path / 'out'
    code, output = _run('--network', network, '--data', images, '--masks', masks, '--outdir', outdir)
    assert code != 0
    errors = [line for line in output.splitlines() if line.startswith('Error:')]
    assert len(errors) == 1 and BAD[case] in errors[0], output
    assert not outdir.exists()


def test_network_without_a_pose_predictor(photos, tmp_path):
    net = tmp_path / 'g_only.pkl'
    checkpoint.save_network_snapshot(net, {'G_ema': fake_generator.SphereGenerator()})
    code, output = _run('--network', net, '--data', photos[0], '--masks', photos[1], '--outdir', tmp_path / 'out')
    assert code != 0 and output.splitlines()[-1] == (f'Error: --network: {net}: no discriminator with a pose '
                                                     'predictor (D_ema or D with predict_pose)')
    assert not (tmp_path / 'out').exists()


def test_pose_predict_kwargs_default_to_no_blur_at_G_resolution():
    G = fake_generator.SphereGenerator(neural_rendering_resolution=8)
    assert predict_poses.predict_kwargs({'pose_predict_kwargs': None}, G) == (0.0, 8)
    assert predict_poses.predict_kwargs({'pose_predict_kwargs': {'blur_sigma': 2}}, G) == (2.0, 8)
