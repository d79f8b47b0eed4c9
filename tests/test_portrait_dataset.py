"""Tests for portrait_data/portrait.py: pairing by filename, x-flip, rebalancing, checks, workers."""
import io
import json
import math
import os
import pickle
import zipfile

import numpy as np
import PIL.Image
import pytest
import torch

from portrait_data.errors import DatasetError
from portrait_data.labels import labels_to_json, mirror_label
from portrait_data.portrait import PortraitDataset
from training import cameras

RES = 16


def png(array):
    """PNG bytes of a uint8 array."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format='PNG')
    return buffer.getvalue()


def jpeg(array):
    """JPEG bytes of a uint8 RGB array."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, format='JPEG', quality=95)
    return buffer.getvalue()


def image_of(k, res=RES):
    """A random (so asymmetric) RGB image unique to k: uint8 [res, res, 3]."""
    return np.random.default_rng(k).integers(0, 256, (res, res, 3), dtype=np.uint8)


def mask_of(k, res=RES):
    """A random 0/255 mask unique to k: uint8 [res, res]."""
    return (np.random.default_rng(1000 + k).random((res, res)) > 0.5).astype(np.uint8) * 255


def labels_for(yaws, seed=0):
    """float32 [N, 31] labels: preset cameras at `yaws` (level) + random poses."""
    c = cameras.camera_vector(torch.tensor(yaws, dtype=torch.float64), math.pi / 2).numpy()
    pose = np.random.default_rng(seed).normal(0, 0.3, (len(yaws), 6))
    return np.concatenate([c, pose], axis=1).astype(np.float32)


def write_zip(path, members, seed):
    """Uncompressed zip of (name, bytes) members in a shuffled order."""
    order = np.random.default_rng(seed).permutation(len(members))
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as z:
        for k in order:
            z.writestr(*members[k])
    return str(path)


def write_folder(path, members):
    """Folder of (name, bytes) members."""
    for name, data in members:
        os.makedirs(os.path.dirname(os.path.join(path, name)), exist_ok=True)
        with open(os.path.join(path, name), 'wb') as f:
            f.write(data)
    return str(path)


def build(tmp_path, yaws, kind='zip', masks=True, names=None, res=RES):
    """Images + dataset.json (+ masks with decoy extras) -> (image path, mask path, expected).

    expected[name] = (image [res, res, 3] as the reader decodes it, mask [res, res], label [31]).
    """
    names = names or [f'img{k:02d}.png' for k in range(len(yaws))]
    labels = labels_for(yaws)
    image_members, mask_members, expected = [], [], {}
    for k, name in enumerate(names):
        data = jpeg(image_of(k, res)) if name.endswith('.jpg') else png(image_of(k, res))
        image_members.append((name, data))
        mask_name = os.path.splitext(name)[0] + '.png'
        mask_members.append((mask_name, png(mask_of(k, res))))
        mask_members.append((os.path.splitext(name)[0] + '_decoy.png', png(255 - mask_of(k, res))))
        expected[name] = (np.asarray(PIL.Image.open(io.BytesIO(data))), mask_of(k, res), labels[k])
    image_members.append(('dataset.json', json.dumps(labels_to_json(dict(zip(names, labels)))).encode()))
    if kind == 'zip':
        images = write_zip(tmp_path / 'images.zip', image_members, seed=1)
        mask_path = write_zip(tmp_path / 'masks.zip', mask_members, seed=2) if masks else None
    else:
        images = write_folder(tmp_path / 'images', image_members)
        mask_path = write_folder(tmp_path / 'masks', mask_members) if masks else None
    return images, mask_path, expected


def check_item(item, expected, flip=False):
    """Assert a dataset item equals the expected (image, mask, label), mirrored if `flip`."""
    image, mask, camera, pose = item
    exp_image, exp_mask, exp_label = expected
    if flip:
        exp_image, exp_mask, exp_label = np.fliplr(exp_image), np.fliplr(exp_mask), mirror_label(exp_label)
    assert image.dtype == np.uint8 and image.shape == (3, RES, RES)
    assert mask.dtype == np.uint8 and mask.shape == (1, RES, RES)
    assert all(a.flags.writeable and a.flags.c_contiguous for a in item)
    assert camera.dtype == np.float32 and camera.shape == (25,) and pose.shape == (6,)
    assert np.array_equal(image, exp_image.transpose(2, 0, 1))
    assert np.array_equal(mask[0], exp_mask)
    assert np.array_equal(np.concatenate([camera, pose]), exp_label)


@pytest.mark.parametrize('kind', ['zip', 'folder'])
def test_items_pair_masks_by_filename(tmp_path, kind):
    names = ['b/img00.png', 'a/img01.png', 'a/photo.jpg', 'c.png', 'a/img03.png']
    images, masks, expected = build(tmp_path, [0.5, 1.0, -1.0, 2.0, -2.5], kind=kind, names=names)
    ds = PortraitDataset(images, mask_path=masks)
    assert len(ds) == 5 and ds.has_masks and ds.resolution == RES and ds.num_channels == 3
    assert (ds.label_dim, ds.pose_dim, ds.image_shape) == (25, 6, [3, RES, RES])
    for i in range(len(ds)):
        details = ds.get_details(i)
        assert details.raw_idx == i and not details.xflip
        check_item(ds[i], expected[details.name])
        assert np.array_equal(ds.get_label(i), expected[details.name][2][:25])
        assert np.array_equal(ds.get_pose(i), expected[details.name][2][25:])


def test_xflip_mirrors_image_mask_camera_and_pose(tmp_path):
    images, masks, expected = build(tmp_path, [0.4, -2.0, 1.3])
    ds = PortraitDataset(images, mask_path=masks, xflip=True)
    assert len(ds) == 6 and ds.stats['xflip']
    for i in range(3):
        flipped = ds.get_details(i + 3)
        assert flipped.xflip and flipped.raw_idx == i and flipped.name == ds.get_details(i).name
        check_item(ds[i + 3], expected[flipped.name], flip=True)
        image, mask, camera, pose = ds[i]
        image_f, mask_f, camera_f, pose_f = ds[i + 3]
        assert np.array_equal(image_f, image[:, :, ::-1]) and np.array_equal(mask_f, mask[:, :, ::-1])
        assert np.array_equal(camera_f, cameras.mirror_camera(torch.from_numpy(camera[None]))[0].numpy())
        assert np.array_equal(pose_f, cameras.mirror_pose(torch.from_numpy(pose)).numpy())
        assert np.array_equal(ds.get_label(i + 3), camera_f)


def back_share_of(ds):
    """Share of the items whose camera is behind the head (camera centre z <= 0)."""
    z = np.array([ds.get_label(i)[11] for i in range(len(ds))])
    return float(np.mean(z <= 0))


@pytest.mark.parametrize('xflip', [False, True])
def test_back_share_reaches_requested_share(tmp_path, xflip):
    yaws = [1.4, 1.5, 1.6, 1.7, 0.9, 2.2, 1.0, 2.0, 1.2, -1.6, -2.8]
    images, masks, _ = build(tmp_path, yaws)
    plain = PortraitDataset(images, mask_path=masks, xflip=xflip)
    assert back_share_of(plain) == pytest.approx(2 / 11)
    ds = PortraitDataset(images, mask_path=masks, xflip=xflip, back_share=0.4)
    assert ds.stats['back_views'] == 2 and ds.stats['back_repeats'] == 4
    assert len(ds) == (11 + 4) * (2 if xflip else 1)
    assert back_share_of(ds) == pytest.approx(6 / 15)
    assert 5 / 14 < 0.4 <= back_share_of(ds)
    counts = np.bincount([ds.get_details(i).raw_idx for i in range(len(ds))], minlength=11)
    assert counts[9] == counts[10] == 3 * (2 if xflip else 1)


def test_back_share_odd_split_and_errors(tmp_path):
    images, masks, _ = build(tmp_path, [1.5, 1.0, 2.0, 1.2, 1.8, 1.3, 1.7, -1.5, -0.5])
    ds = PortraitDataset(images, mask_path=masks, back_share=0.5, seed=3)
    assert ds.stats['back_repeats'] == 5 and len(ds) == 14
    assert back_share_of(ds) == 0.5
    assert sorted(np.bincount([ds.get_details(i).raw_idx for i in range(14)])[7:]) == [3, 4]
    assert PortraitDataset(images, mask_path=masks, back_share=0.1).stats['back_repeats'] == 0
    with pytest.raises(ValueError, match='back_share'):
        PortraitDataset(images, back_share=1.0)
    (tmp_path / 'front').mkdir()
    front_only, _, _ = build(tmp_path / 'front', [1.5, 1.0])
    with pytest.raises(DatasetError, match='no back views'):
        PortraitDataset(front_only, back_share=0.3)


def test_max_size_is_seeded(tmp_path):
    images, masks, _ = build(tmp_path, list(np.linspace(-3, 3, 12)))
    subsets = {}
    for seed in (0, 0, 1):
        ds = PortraitDataset(images, mask_path=masks, max_size=5, seed=seed, xflip=True)
        assert len(ds) == 10 and ds.stats['used_images'] == 5
        subsets.setdefault(seed, []).append([ds.get_details(i).name for i in range(5)])
    assert subsets[0][0] == subsets[0][1] and subsets[0][0] != subsets[1][0]
    assert len(PortraitDataset(images, max_size=100)) == 12


def test_no_masks_gives_all_255(tmp_path):
    images, _, expected = build(tmp_path, [0.3, 0.6], masks=False)
    ds = PortraitDataset(images)
    assert not ds.has_masks
    image, mask, _, _ = ds[1]
    assert mask.shape == (1, RES, RES) and (mask == 255).all()
    assert np.array_equal(image, expected[ds.get_details(1).name][0].transpose(2, 0, 1))


def test_missing_mask_names_the_image(tmp_path):
    images, _, _ = build(tmp_path, [0.3, 0.6], masks=False)
    masks = write_folder(tmp_path / 'm', [('img00.png', png(mask_of(0)))])
    with pytest.raises(DatasetError, match=r"images.zip:img01.png: no mask 'img01.png' in .*/m$"):
        PortraitDataset(images, mask_path=masks)


def test_resolution_checks_name_the_file(tmp_path):
    images, masks, _ = build(tmp_path, [0.3, 0.6, 0.9])
    assert PortraitDataset(images, resolution=RES).resolution == RES
    with pytest.raises(DatasetError, match=r'images.zip:img00.png: image is 16x16 .*expected 32x32 .*resolution=32 was requested'):
        PortraitDataset(images, resolution=32)
    odd = [('img01.png', png(image_of(1, 32))), ('img00.png', png(image_of(0))), ('img02.png', png(image_of(2)))]
    _rewrite(images, odd)
    with pytest.raises(DatasetError, match=r'images.zip:img01.png: image is 32x32 .*expected 16x16 .*like most images'):
        PortraitDataset(images)
    _rewrite(images, [('img02.png', png(image_of(2)[:, :12]))])
    with pytest.raises(DatasetError, match=r'images.zip:img02.png: image is 12x16, not square'):
        PortraitDataset(images)
    _rewrite(images, [('img02.png', png(np.zeros((12, 12, 3), np.uint8)))])
    with pytest.raises(DatasetError, match=r'images.zip:img02.png: image side 12 is not a power of two'):
        PortraitDataset(images)
    _rewrite(images, [('img02.png', png(np.zeros((RES, RES, 4), np.uint8)))])
    with pytest.raises(DatasetError, match=r'images.zip:img02.png: image mode RGBA is not RGB or L'):
        PortraitDataset(images)


def _rewrite(zip_path, replacements):
    """Replace members of a zip (keeping the others)."""
    with zipfile.ZipFile(zip_path) as z:
        members = {n: z.read(n) for n in z.namelist()}
    members.update(dict(replacements))
    write_zip(zip_path, list(members.items()), seed=5)


def test_bad_masks_name_the_mask(tmp_path):
    images, masks, _ = build(tmp_path, [0.3, 0.6])
    _rewrite(masks, [('img01.png', png(np.zeros((8, 8), np.uint8)))])
    with pytest.raises(DatasetError, match=r'masks.zip:img01.png: mask is 8x8 but its image is 16x16'):
        PortraitDataset(images, mask_path=masks)
    _rewrite(masks, [('img01.png', png(image_of(1)))])
    with pytest.raises(DatasetError, match=r'masks.zip:img01.png: mask mode RGB is not single-channel'):
        PortraitDataset(images, mask_path=masks)


def test_corrupt_images_name_the_file_and_skip_bad_counts(tmp_path):
    images, masks, _ = build(tmp_path, list(np.linspace(-3, 3, 6)))
    good = png(image_of(4))
    _rewrite(images, [('img02.png', b'not a png at all'), ('img04.png', good[:len(good) // 2])])
    with pytest.raises(DatasetError, match=r'images.zip:img02.png: cannot read image: UnidentifiedImageError'):
        PortraitDataset(images, mask_path=masks)
    _rewrite(images, [('img02.png', png(image_of(2)))])
    ds = PortraitDataset(images, mask_path=masks)
    names = [ds.get_details(i).name for i in range(len(ds))]
    with pytest.raises(DatasetError, match=r'images.zip:img04.png: cannot decode image'):
        ds[names.index('img04.png')]
    _rewrite(images, [('img02.png', b'not a png at all')])
    ds = PortraitDataset(images, mask_path=masks, skip_bad=True, xflip=True)
    assert ds.stats['skipped_bad'] == 2 and len(ds.skipped) == 2 and len(ds) == 8
    assert 'img02.png' in ds.skipped[0] and 'img04.png' in ds.skipped[1]
    assert {ds.get_details(i).name for i in range(len(ds))} == {'img00.png', 'img01.png', 'img03.png', 'img05.png'}


def test_dataset_json_errors(tmp_path):
    images, _, _ = build(tmp_path, [0.3, 0.6])
    with zipfile.ZipFile(images) as z:
        doc = json.loads(z.read('dataset.json'))
    _rewrite(images, [('dataset.json', b'{"labels": [')])
    with pytest.raises(DatasetError, match=r'images.zip:dataset.json: not valid JSON'):
        PortraitDataset(images)
    doc['labels'].append(['gone.png', doc['labels'][0][1]])
    _rewrite(images, [('dataset.json', json.dumps(doc).encode())])
    with pytest.raises(DatasetError, match=r"images.zip:dataset.json: labels\['gone.png'\]: no such image"):
        PortraitDataset(images)
    folder = write_folder(tmp_path / 'nolabels', [('a.png', png(image_of(0)))])
    with pytest.raises(DatasetError, match=r'nolabels/dataset.json: missing'):
        PortraitDataset(folder)


def test_label_std_over_items(tmp_path):
    images, masks, expected = build(tmp_path, [0.3, 2.0, -1.0, -2.5])
    ds = PortraitDataset(images, xflip=True)
    cams = np.stack([ds.get_label(i) for i in range(len(ds))])
    std = ds.label_std()
    assert std.shape == (25,) and std.dtype == np.float32
    assert np.allclose(std, cams.astype(np.float64).std(axis=0), atol=1e-6)
    assert std[3] > 0.5 and std[16] < 1e-6


def test_pickle_drops_open_zip_handle(tmp_path):
    images, masks, expected = build(tmp_path, [0.3, 0.6, 0.9])
    ds = PortraitDataset(images, mask_path=masks)
    ds[0]
    assert ds._images._zip is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._images._zip is None and clone._masks._zip is None
    check_item(clone[2], expected[clone.get_details(2).name])


@pytest.mark.parametrize('context', ['fork', 'spawn'])
def test_dataloader_workers(tmp_path, context):
    images, masks, expected = build(tmp_path, list(np.linspace(-3, 3, 8)))
    ds = PortraitDataset(images, mask_path=masks, xflip=True)
    ds[0]
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, multiprocessing_context=context)
    batches = list(loader)
    image = torch.cat([b[0] for b in batches])
    mask, camera, pose = (torch.cat([b[k] for b in batches]) for k in (1, 2, 3))
    assert image.shape == (16, 3, RES, RES) and image.dtype == torch.uint8 and mask.shape == (16, 1, RES, RES)
    for i in range(16):
        direct = ds[i]
        assert np.array_equal(image[i].numpy(), direct[0]) and np.array_equal(mask[i].numpy(), direct[1])
        assert np.array_equal(camera[i].numpy(), direct[2]) and np.array_equal(pose[i].numpy(), direct[3])
