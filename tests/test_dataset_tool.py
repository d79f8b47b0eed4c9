"""Tests for dataset_tool.py and portrait_data/tool.py + portrait_data/writer.py: convert, synthetic, atomic writes."""
import json
import math
import os
import sys
import types
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch
from click.testing import CliRunner

import dataset_tool
from configs.schema import CameraConfig
from portrait_data import sample_writer, tool
from portrait_data.errors import DatasetError
from portrait_data.portrait import PortraitDataset
from portrait_data.writer import DatasetWriter
from training import cameras

SIZES = {'p0.png': (32, 32), 'sub/p1.jpg': (40, 32), 'p2.png': (32, 32)}


def cam2world(yaw):
    """A preset cam2world as a nested 4x4 list."""
    return cameras.look_at_pose(yaw, math.pi / 2, CameraConfig().lookat, CameraConfig().radius)[0].double().tolist()


def smpl_of(k):
    """72 SMPL pose floats whose entries encode (k, index)."""
    return [round(0.01 * i + k, 4) for i in range(72)]


def make_source(root, sizes=SIZES):
    """Photos, masks and a preprocessing JSON under `root` -> (photos, masks, json path, records)."""
    photos, masks = root / 'photos', root / 'masks'
    records = {}
    for k, (name, (w, h)) in enumerate(sizes.items()):
        rng = np.random.default_rng(k)
        for folder in (photos, masks):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(photos / name)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4:, w // 3:] = 255
        PIL.Image.fromarray(mask).save(masks / (os.path.splitext(name)[0] + '.png'))
        records[os.path.splitext(name)[0] if k == 1 else name] = {'camera_pose': cam2world(0.5 + k), 'smpl_pose': smpl_of(k)}
    records['p2.png']['intrinsics'] = [[7.0, 0, 0.5], [0, 7.0, 0.5], [0, 0, 1]]
    path = root / 'result.json'
    path.write_text(json.dumps(records))
    return str(photos), str(masks), str(path), records


def run(*args):
    """Invoke the CLI; return the click result."""
    return CliRunner().invoke(dataset_tool.main, [str(a) for a in args], catch_exceptions=False)


def convert_args(src, out, *extra):
    """CLI arguments of a full convert into `out` at 16x16."""
    photos, masks, labels, _ = src
    return ['convert', '--source', photos, '--labels', labels, '--masks', masks,
            '--dest', out / 'images.zip', '--seg-dest', out / 'masks.zip', '--resolution', 16, *extra]


def test_convert_end_to_end(tmp_path):
    src = make_source(tmp_path)
    out = tmp_path / 'out'
    result = run(*convert_args(src, out))
    assert result.exit_code == 0, result.output
    assert 'Wrote 3 images at 16x16' in result.output
    ds = PortraitDataset(out / 'images.zip', mask_path=out / 'masks.zip')
    assert len(ds) == 3 and ds.resolution == 16 and ds.has_masks
    names = [ds.get_details(i).name for i in range(3)]
    assert names == ['p0.png', 'p2.png', 'sub/p1.png']
    focal = CameraConfig().focal
    for i, (name, k, yaw, fx) in enumerate([('p0.png', 0, 0.5, focal), ('p2.png', 2, 2.5, 7.0), ('sub/p1.png', 1, 1.5, focal * 40 / 32)]):
        image, mask, camera, pose = ds[i]
        assert np.allclose(camera[:16], np.asarray(cam2world(yaw)).reshape(-1), atol=1e-6)
        assert np.allclose(camera[16:], [fx, 0, 0.5, 0, 7.0 if k == 2 else focal, 0.5, 0, 0, 1], atol=1e-5)
        assert np.allclose(pose, smpl_of(k)[36:39] + smpl_of(k)[45:48], atol=1e-6)
        w, h = SIZES['sub/p1.jpg' if k == 1 else name]
        source = PIL.Image.open(os.path.join(src[0], 'sub/p1.jpg' if k == 1 else name)).convert('RGB')
        left = (w - h) // 2
        expected = source.crop((left, 0, left + h, h)).resize((16, 16), PIL.Image.LANCZOS)
        assert np.array_equal(image.transpose(1, 2, 0), np.asarray(expected))
        assert mask[0, 0, 0] == 0 and mask[0, -1, -1] == 255
    with zipfile.ZipFile(out / 'images.zip') as z:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in z.infolist())
        assert 'dataset.json' in z.namelist()


def test_crop_intrinsics_matches_pixel_projection():
    """Project in the full W x H image, shift by the crop offset: same as the re-normalised camera."""
    width, height = 48, 30
    label = np.zeros(31)
    label[:16] = np.asarray(cam2world(1.2)).reshape(-1)
    label[16:25] = [6.0, 0, 0.45, 0, 9.0, 0.55, 0, 0, 1]
    points = torch.randn(1, 20, 3, dtype=torch.float64) * 0.1
    uv = cameras.project(points, torch.from_numpy(label[None, :25]))[0].numpy()
    side, offset = 30, ((48 - 30) // 2, 0)
    expected = (uv * [width, height] - offset) / side
    cropped = tool.crop_intrinsics(label, width, height)
    uv_crop = cameras.project(points, torch.from_numpy(cropped[None, :25]))[0].numpy()
    assert np.allclose(uv_crop, expected, atol=1e-9)
    assert np.array_equal(cropped[:16], label[:16])


def test_refuses_to_overwrite_and_force(tmp_path):
    src = make_source(tmp_path)
    out = tmp_path / 'out'
    assert run(*convert_args(src, out)).exit_code == 0
    before = (out / 'images.zip').read_bytes()
    result = CliRunner().invoke(dataset_tool.main, [str(a) for a in convert_args(src, out)])
    assert result.exit_code == 1
    assert f'Error: {out / "images.zip"}: already exists (pass --force to overwrite)' in result.output
    assert (out / 'images.zip').read_bytes() == before
    assert run(*convert_args(src, out, '--force', '--max-images', 2)).exit_code == 0
    assert len(PortraitDataset(out / 'images.zip')) == 2
    assert sorted(os.listdir(out)) == ['images.zip', 'masks.zip']


def test_failure_leaves_no_temp_and_keeps_destination(tmp_path):
    src = make_source(tmp_path)
    out = tmp_path / 'out'
    assert run(*convert_args(src, out)).exit_code == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    (tmp_path / 'photos' / 'p2.png').write_bytes(b'\x89PNG\r\n\x1a\n broken')
    result = CliRunner().invoke(dataset_tool.main, [str(a) for a in convert_args(src, out, '--force')])
    errors = [line for line in result.output.splitlines() if line.startswith('Error:')]
    assert result.exit_code == 1 and len(errors) == 1
    assert errors[0] == f"Error: {tmp_path / 'photos' / 'p2.png'}: cannot decode image: UnidentifiedImageError: not a readable PNG or JPEG file"
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


def test_ctrl_c_removes_temporaries(tmp_path, monkeypatch):
    src = make_source(tmp_path)
    calls = []
    real = tool._source_image

    def interrupted(archive, name):
        """Act like Ctrl-C while the second photo is read."""
        calls.append(name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(archive, name)

    monkeypatch.setattr(tool, '_source_image', interrupted)
    out = tmp_path / 'out'
    with pytest.raises(KeyboardInterrupt):
        tool.convert(src[0], src[2], out / 'images.zip', masks=src[1], seg_dest=out / 'masks.zip', progress=False)
    assert os.listdir(out) == []


def test_writer_folder_destination(tmp_path):
    dest = tmp_path / 'folder_ds'
    for round_ in range(2):
        with DatasetWriter(dest, force=True) as w:
            w.write_image(f'a/x{round_}.png', np.zeros((4, 4, 3), np.uint8))
        assert sorted(os.listdir(dest / 'a')) == [f'x{round_}.png']
    with pytest.raises(DatasetError, match='not a clean relative path'):
        with DatasetWriter(tmp_path / 'y.zip') as w:
            w.write_bytes('../evil.png', b'')
    assert sorted(os.listdir(tmp_path)) == ['folder_ds']


def _mutate(records, key, field, value):
    """Set one field of one record."""
    records[key][field] = value


@pytest.mark.parametrize('change, pattern', [
    (lambda r: r['p0.png'].pop('camera_pose'), r"'p0.png': camera_pose: missing"),
    (lambda r: _mutate(r, 'p0.png', 'camera_pose', [[1, 0, 0, 0]] * 3), r"'p0.png': camera_pose: expected shape \[4, 4\], got \[3, 4\]"),
    (lambda r: _mutate(r, 'sub/p1', 'smpl_pose', [0.0] * 10), r"'sub/p1': smpl_pose: expected 72 or 6 numbers, got 10"),
    (lambda r: _mutate(r, 'p2.png', 'intrinsics', 'f=7'), r"'p2.png': intrinsics: expected a \(nested\) list of numbers"),
    (lambda r: _mutate(r, 'p2.png', 'intrinsics', [[7.0, 0, 300], [0, 7.0, 300], [0, 0, 1]]), r"'p2.png': intrinsics: principal point"),
    (lambda r: r['p0.png']['camera_pose'][0].__setitem__(0, 3.0), r"'p0.png': camera_pose: rotation is not orthonormal"),
    (lambda r: r.pop('p2.png'), r"no entry for image 'p2.png'"),
])
def test_json_errors_name_file_entry_and_field(tmp_path, change, pattern):
    photos, masks, labels, records = make_source(tmp_path)
    change(records)
    (tmp_path / 'result.json').write_text(json.dumps(records))
    with pytest.raises(DatasetError, match=r'^' + labels + ': ' + pattern):
        tool.convert(photos, labels, tmp_path / 'out.zip', progress=False)
    assert not (tmp_path / 'out.zip').exists()


def test_json_syntax_and_extra_records(tmp_path):
    photos, masks, labels, records = make_source(tmp_path)
    records['deleted.png'] = records['p0.png']
    records['p0.png'] = dict(records['p0.png'], smpl_pose=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    (tmp_path / 'result.json').write_text(json.dumps(records))
    summary = tool.convert(photos, labels, tmp_path / 'out.zip', resolution=32, progress=False)
    assert summary.ignored_records == 1 and summary.seg_dest is None
    assert np.allclose(PortraitDataset(tmp_path / 'out.zip').get_pose(0), [0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    (tmp_path / 'result.json').write_text('{"p0.png": ')
    with pytest.raises(DatasetError, match=r'result.json: not valid JSON'):
        tool.convert(photos, labels, tmp_path / 'out2.zip', progress=False)


def test_image_and_mask_errors(tmp_path):
    photos, masks, labels, _ = make_source(tmp_path)
    with pytest.raises(DatasetError, match=r'photos/sub/p1.jpg: image is 40x32, not square \(pass --resolution'):
        tool.convert(photos, labels, tmp_path / 'a.zip', progress=False)
    PIL.Image.fromarray(np.ones((32, 32), np.uint8)).save(os.path.join(masks, 'p2.png'))
    with pytest.raises(DatasetError, match=r'masks/p2.png: mask values are 0/1'):
        tool.convert(photos, labels, tmp_path / 'a.zip', masks=masks, seg_dest=tmp_path / 'm.zip', resolution=16, progress=False)
    os.remove(os.path.join(masks, 'p2.png'))
    with pytest.raises(DatasetError, match=r"photos/p2.png: no mask 'p2.png'"):
        tool.convert(photos, labels, tmp_path / 'a.zip', masks=masks, seg_dest=tmp_path / 'm.zip', resolution=16, progress=False)
    with pytest.raises(DatasetError, match=r'--resolution: image side 24 is not a power of two'):
        tool.convert(photos, labels, tmp_path / 'a.zip', resolution=24, progress=False)
    assert sorted(os.listdir(tmp_path)) == ['masks', 'photos', 'result.json']


def fake_generate(num_images, resolution, seed, yaw_distribution):
    """Stand-in for portrait_data.synthetic.generate: yields samples with the agreed attributes."""
    rng = np.random.default_rng(seed)
    yaws = rng.uniform(-math.pi, math.pi, num_images) if yaw_distribution == 'uniform' else np.full(num_images, 1.5)
    for k in range(num_images):
        camera = cameras.camera_vector(float(yaws[k]), math.pi / 2)[0].numpy()
        mask = np.zeros((resolution, resolution), np.uint8)
        mask[k % resolution:] = 255
        yield types.SimpleNamespace(name=f'{k // 2:05d}/img{k:08d}.png',
                                    image=rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8),
                                    mask=mask, camera=camera, pose=rng.normal(0, 0.1, 6).astype(np.float32))


@pytest.fixture
def fake_synthetic(monkeypatch):
    """Inject a tiny portrait_data.synthetic module (the real one is written separately)."""
    module = types.ModuleType('portrait_data.synthetic')
    module.generate = fake_generate
    monkeypatch.setitem(sys.modules, 'portrait_data.synthetic', module)
    return module


def test_synthetic_subcommand(tmp_path, fake_synthetic):
    result = run('synthetic', '--outdir', tmp_path / 'syn', '--count', 5, '--resolution', 8, '--seed', 3)
    assert result.exit_code == 0, result.output
    ds = PortraitDataset(tmp_path / 'syn' / 'images.zip', mask_path=tmp_path / 'syn' / 'masks.zip')
    samples = {s.name: s for s in fake_generate(5, 8, 3, 'uniform')}
    assert len(ds) == 5 and ds.resolution == 8
    for i in range(5):
        sample = samples[ds.get_details(i).name]
        image, mask, camera, pose = ds[i]
        assert np.array_equal(image.transpose(1, 2, 0), sample.image) and np.array_equal(mask[0], sample.mask)
        assert np.allclose(camera, sample.camera) and np.allclose(pose, sample.pose)
    again = CliRunner().invoke(dataset_tool.main, ['synthetic', '--outdir', str(tmp_path / 'syn'), '--count', '5'])
    assert again.exit_code == 1 and 'already exists' in again.output


def test_synthetic_options(tmp_path, fake_synthetic):
    dest, seg = tmp_path / 'i.zip', tmp_path / 'm.zip'
    assert run('synthetic', '--dest', dest, '--seg-dest', seg, '--count', 2, '--resolution', 4,
               '--yaws', 'front-heavy').exit_code == 0
    assert np.allclose(PortraitDataset(dest).get_label(0), cameras.camera_vector(1.5, math.pi / 2)[0].numpy(), atol=1e-6)
    usage = CliRunner().invoke(dataset_tool.main, ['synthetic', '--outdir', str(tmp_path), '--dest', str(dest)])
    assert usage.exit_code == 2 and 'either --outdir or --dest' in usage.output
    fake_synthetic.generate = lambda **kw: list(fake_generate(**kw))[:1]
    with pytest.raises(DatasetError, match=r'portrait_data.synthetic: produced 1 samples; expected 3'):
        sample_writer.write_synthetic(3, 4, 0, 'uniform', tmp_path / 'x.zip', tmp_path / 'y.zip', progress=False)
    assert sorted(os.listdir(tmp_path)) == ['i.zip', 'm.zip']


def test_synthetic_with_the_real_generator(tmp_path):
    """End to end with portrait_data.synthetic: the written set opens, validates and matches the stream."""
    from portrait_data import synthetic
    result = run('synthetic', '--outdir', tmp_path, '--count', 3, '--resolution', 16, '--yaws', 'front-heavy')
    assert result.exit_code == 0, result.output
    ds = PortraitDataset(tmp_path / 'images.zip', mask_path=tmp_path / 'masks.zip')
    samples = list(synthetic.generate(num_images=3, resolution=16, seed=0, yaw_distribution='front-heavy'))
    assert [ds.get_details(i).name for i in range(3)] == [s.name for s in samples]
    for i, sample in enumerate(samples):
        image, mask, camera, pose = ds[i]
        assert np.array_equal(image.transpose(1, 2, 0), sample.image) and np.array_equal(mask[0], sample.mask)
        assert np.allclose(camera, sample.camera, atol=1e-6) and np.allclose(pose, sample.pose, atol=1e-6)
