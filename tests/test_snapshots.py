"""training/snapshots.py: deterministic grids, grid layout, and the files of an image snapshot."""
import numpy as np
import PIL.Image
import pytest
import torch

import fake_generator
from training import snapshots
from training.cameras import average_camera, camera_vector
from training.deformation.body_model import BodyModel
from training.loss import real_inputs

RES = 16


class _Dataset:
    """n items: image uint8 [3, 16, 16] = item index, mask, a camera at yaw = index, pose [6] = index / 100."""

    def __init__(self, n):
        self.n, self.resolution = n, RES

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        camera = camera_vector(float(i), np.pi / 2)[0].numpy()
        mask = np.zeros((1, RES, RES), np.uint8)
        mask[:, 4:12, 4:12] = 255
        return np.full((3, RES, RES), i, np.uint8), mask, camera, np.full(6, i / 100, np.float32)


class _PoseReader:
    """Stand-in for D: predict_pose returns the mean of each input image in all 6 entries and records calls."""

    def __init__(self):
        self.calls = []

    def predict_pose(self, img, c, blur_sigma=0):
        self.calls.append(dict(img=img, c=c, blur_sigma=blur_sigma))
        return img['image'].mean(dim=(1, 2, 3))[:, None].expand(-1, 6)


def _one_triangle_body():
    """A minimal BodyModel: one head triangle around the look-at point."""
    vertices = torch.tensor([[-0.1, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.15, 0.0]])
    return BodyModel(canonical_vertices=vertices, faces=torch.tensor([[0, 1, 2]]), head_joint=torch.zeros(3),
                     skinned_vertices=torch.tensor([0, 1, 2]), skinning_weights=torch.tensor([[0.0, 1.0]] * 3),
                     pose_basis=torch.zeros(18, 9))


@pytest.mark.parametrize('resolution, items, shape', [(64, 16, (8, 2)), (64, 32, (8, 4)), (512, 10**5, (15, 8)),
                                                      (64, 10**5, (16, 8)), (64, 1, (1, 1)), (64, 3, (3, 1))])
def test_grid_shape(resolution, items, shape):
    assert snapshots.grid_shape(resolution, items) == shape


def test_grid_is_deterministic_with_identical_z_pairs():
    grid = snapshots.make_grid(_Dataset(7), seed=3, z_dim=5)
    assert grid.shape == (7, 1) and sorted(grid.items.tolist()) == list(range(7))
    again = snapshots.make_grid(_Dataset(7), seed=3, z_dim=5)
    assert np.array_equal(grid.items, again.items) and torch.equal(grid.z, again.z)
    assert not np.array_equal(grid.items, snapshots.make_grid(_Dataset(7), seed=4, z_dim=5).items)
    assert grid.z.shape == (7, 5)
    for k in range(3):
        assert torch.equal(grid.z[2 * k], grid.z[2 * k + 1]) and not torch.equal(grid.z[2 * k], grid.z[2 * k + 2])
    assert torch.equal(grid.image[:, 0, 0, 0], torch.tensor(grid.items, dtype=torch.uint8))
    assert torch.allclose(grid.pose[:, 0], torch.tensor(grid.items / 100, dtype=torch.float32))


def test_grid_image_places_cell_k_at_row_k_div_gw():
    images = torch.arange(6, dtype=torch.float32)[:, None, None, None].expand(6, 3, 2, 4) / 5 * 2 - 1
    array = snapshots.grid_image(images, -1, 1, (3, 2))
    assert array.shape == (4, 12, 3) and array.dtype == np.uint8
    for k in range(6):
        row, col = divmod(k, 3)
        assert (array[2 * row:2 * row + 2, 4 * col:4 * col + 4] == round(k / 5 * 255)).all()
    assert snapshots.grid_image(images[:, :1], -1, 1, (3, 2)).shape == (4, 12)


def test_write_fakes_writes_every_variant_from_the_right_calls(tmp_path):
    torch.manual_seed(0)
    G = fake_generator.SphereGenerator(z_dim=8, img_resolution=RES, neural_rendering_resolution=8).eval()
    D = _PoseReader()
    grid = snapshots.make_grid(_Dataset(10), seed=0, z_dim=8)
    assert grid.shape == (5, 2)
    fake_generator.CALLS.clear()
    snapshots.write_reals(str(tmp_path / 'reals.png'), grid)
    snapshots.write_fakes(str(tmp_path), 12, G, D, _one_triangle_body(), grid, blur_sigma=2.5, batch=6,
                          device=torch.device('cpu'))
    sizes = {'reals.png': (5 * RES, 2 * RES), 'fakes000012.png': (5 * RES, 2 * RES),
             'fakes000012_canonical.png': (5 * RES, 2 * RES), 'fakes000012_raw.png': (40, 16),
             'fakes000012_depth.png': (40, 16), 'fakes000012_mask.png': (40, 16)}
    for name, size in sizes.items():
        assert PIL.Image.open(tmp_path / name).size == size, name
    panel = snapshots.POSE_PANEL
    assert PIL.Image.open(tmp_path / 'poses000012.png').size == (64 + 8 * panel, 4 * panel)
    reals = np.asarray(PIL.Image.open(tmp_path / 'reals.png'))
    assert reals[0, RES, 0] == grid.items[1] and reals[RES, 0, 0] == grid.items[5]
    mappings = [kw for name, kw in fake_generator.CALLS if name == 'mapping']
    assert [kw['c'].shape[0] for kw in mappings] == [6, 4]
    for kw in mappings:
        assert torch.equal(kw['c'], average_camera().expand_as(kw['c'])) and not kw['pose_params'].any()
    synth = [kw for name, kw in fake_generator.CALLS if name == 'synthesis']
    assert [kw['apply_def'] for kw in synth] == [True, False, True, False]
    assert torch.equal(synth[0]['c'], grid.camera[:6]) and torch.equal(synth[0]['pose_params'], G.get_pose_params(
        grid.z[:6], grid.camera[:6]))
    assert all(call['blur_sigma'] == 2.5 for call in D.calls) and len(D.calls) == 4
    expected_real = real_inputs(grid.image[:6].float() / 127.5 - 1, grid.mask[:6].float() / 255, 8, False)
    for key, value in expected_real.items():
        assert torch.allclose(D.calls[1]['img'][key], value)
    depth = np.asarray(PIL.Image.open(tmp_path / 'fakes000012_depth.png'))
    assert depth[4, 4] > depth[0, 0]                                           # the sphere is nearer: brighter
