"""The canonical body and its neck + head posing (training/deformation/body_model.py), checked
against smplx's own forward pass."""
import sys

import numpy as np
import pytest
import scipy.sparse
import torch
from scipy.spatial.transform import Rotation

from configs.schema import SkeletonConfig
from training.deformation import procedural_body, smpl_io
from training.deformation.body_model import BodyModel, axis_angle_to_matrix

smplx = pytest.importorskip('smplx')


@pytest.fixture(scope='module')
def stand_in_arrays():
    return procedural_body.procedural_smpl_arrays()


@pytest.fixture(scope='module')
def body(stand_in_arrays):
    return BodyModel.from_arrays(stand_in_arrays, 'stand-in')


def _random_real_size_smpl(stand_in_arrays, seed=0):
    """SMPL-layout model of real size (V=6890) with random weights, regressor and posedirs."""
    rng = np.random.default_rng(seed)
    num_vertices = 6890
    weights = rng.dirichlet(np.full(24, 0.3), size=num_vertices)
    regressor = rng.random((24, num_vertices)) * (rng.random((24, num_vertices)) < 0.02)
    return dict(stand_in_arrays,
                v_template=stand_in_arrays['v_template'] + rng.normal(scale=0.01, size=(num_vertices, 3)),
                weights=weights,
                J_regressor=scipy.sparse.csc_matrix(regressor / regressor.sum(1, keepdims=True)),
                shapedirs=rng.normal(scale=0.01, size=(num_vertices, 3, 10)),
                posedirs=rng.normal(scale=0.02, size=(num_vertices, 3, 207)))


def _smplx_posed(arrays, pose):
    """smplx's forward with body_pose indices 11 (neck) and 14 (head) set, shifted by the canonical neck."""
    model = smplx.SMPL('', data_struct=smplx.utils.Struct(**arrays))
    body_pose = torch.zeros(len(pose), 69)
    body_pose[:, 33:36], body_pose[:, 42:45] = pose[:, :3], pose[:, 3:]
    output = model(body_pose=body_pose, global_orient=torch.zeros(len(pose), 3), betas=torch.zeros(len(pose), 10))
    neck = (model.J_regressor.double() @ model.v_template.double())[12]
    return (output.vertices.double() - neck).float()


def _poses(batch, scale=0.5, seed=0):
    return torch.randn(batch, 6, generator=torch.Generator().manual_seed(seed)) * scale


@pytest.mark.parametrize('model', ['stand-in', 'random real-size with posedirs'])
def test_matches_smplx_forward(stand_in_arrays, model):
    arrays = stand_in_arrays if model == 'stand-in' else _random_real_size_smpl(stand_in_arrays)
    body = BodyModel.from_arrays(arrays, model)
    pose = _poses(5)
    pose[0] = 0.0
    pose[1, :3] = 0.0
    pose[2, 3:] = 0.0
    expected = _smplx_posed(arrays, pose)
    torch.testing.assert_close(body.posed_vertices(pose), expected, atol=1e-5, rtol=0)
    if model != 'stand-in':                                        # pose blend shapes took part
        unblended = BodyModel.from_arrays(dict(arrays, posedirs=np.zeros_like(arrays['posedirs'])), model)
        assert (unblended.posed_vertices(pose) - expected).abs().max() > 1e-3


def test_zero_pose_is_exactly_canonical(body):
    assert torch.equal(body.posed_vertices(torch.zeros(3, 6)), body.canonical_vertices.expand(3, -1, -1))


def test_canonical_frame(body, stand_in_arrays):
    template = stand_in_arrays['v_template']
    neck = (stand_in_arrays['J_regressor'] @ template)[12]
    np.testing.assert_allclose(body.canonical_vertices.numpy(), template - neck, atol=1e-6)
    np.testing.assert_allclose(body.head_joint.numpy(), SkeletonConfig().head_joint, atol=0.01)
    assert body.faces.dtype == torch.long and body.faces.shape == (13776, 3)
    np.testing.assert_array_equal(body.faces.numpy(), stand_in_arrays['f'])


def _pairwise(points):
    return torch.cdist(points.double(), points.double())


def test_head_moves_rigidly(body, stand_in_arrays):
    pose = _poses(4, scale=0.6, seed=3)
    posed = body.posed_vertices(pose)
    weights = torch.from_numpy(stand_in_arrays['weights'])
    head_only = weights[:, 15] == 1.0
    neck_or_head = weights[:, 12] + weights[:, 15] == 1.0
    assert head_only.sum() > 300
    canonical = body.canonical_vertices
    for sample in range(len(pose)):
        torch.testing.assert_close(_pairwise(posed[sample, head_only]), _pairwise(canonical[head_only]),
                                   atol=2e-6, rtol=0)
        assert (posed[sample, head_only] - canonical[head_only]).norm(dim=1).max() > 0.02
    neck_pose = pose.clone()
    neck_pose[:, 3:] = 0.0                                        # neck only: neck and head weights rigid
    posed = body.posed_vertices(neck_pose)
    torch.testing.assert_close(_pairwise(posed[0, neck_or_head]), _pairwise(canonical[neck_or_head]),
                               atol=2e-6, rtol=0)
    static = weights[:, 12] + weights[:, 15] == 0
    assert torch.equal(body.posed_vertices(pose)[:, static], canonical[static].expand(len(pose), -1, -1))


def test_head_joint_rotation(body):
    """A pure head rotation keeps the head joint fixed and turns the nose about it."""
    pose = torch.tensor([[0.0, 0.0, 0.0, 0.0, np.pi / 2, 0.0]])
    above_head_joint = body.canonical_vertices[:, 1] > body.head_joint[1]
    nose = torch.where(above_head_joint, body.canonical_vertices[:, 2], -1.0).argmax()
    moved = body.posed_vertices(pose)[0, nose]
    relative = body.canonical_vertices[nose] - body.head_joint
    expected = body.head_joint + torch.tensor([relative[2], relative[1], -relative[0]])
    torch.testing.assert_close(moved, expected, atol=1e-5, rtol=0)


def test_gradients_flow_to_pose(body):
    for pose in (torch.zeros(2, 6), _poses(2)):
        pose.requires_grad_(True)
        body.posed_vertices(pose).square().sum().backward()
        assert torch.isfinite(pose.grad).all() and pose.grad.abs().min() > 0


def test_axis_angle_to_matrix_matches_scipy():
    vectors = torch.cat([torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1)),
                         torch.tensor([[1e-9, 0.0, 0.0], [0.0, 3e-5, 1e-5], [0.0, 0.0, np.pi]])])
    expected = Rotation.from_rotvec(vectors.numpy()).as_matrix()
    np.testing.assert_allclose(axis_angle_to_matrix(vectors).numpy(), expected, atol=1e-12)
    assert torch.equal(axis_angle_to_matrix(torch.zeros(2, 3)), torch.eye(3).expand(2, 3, 3))


@pytest.mark.parametrize('shape', [(6,), (2, 3), (2, 2, 6), (2, 69)])
def test_wrong_pose_shape(body, shape):
    with pytest.raises(ValueError, match=r'pose must have shape \[B, 6\]'):
        body.posed_vertices(torch.zeros(shape))


def test_any_batch_size(body):
    for batch in (1, 7):
        assert body.posed_vertices(torch.zeros(batch, 6)).shape == (batch, 6890, 3)


def test_box_faces(body):
    half_size = 0.5
    faces = body.box_faces(half_size)
    vertices, all_faces = body.canonical_vertices.numpy(), body.faces.numpy()
    expected = [index for index, face in enumerate(all_faces) if (np.abs(vertices[face]) < half_size).all()]
    assert faces.dtype == torch.long and faces.tolist() == expected
    assert 0 < len(faces) < len(all_faces)
    assert len(body.box_faces(0.1)) < len(faces)


def test_buffers_move_and_state_dict_round_trips(body, stand_in_arrays):
    assert list(body.parameters()) == []
    buffers = dict(body.named_buffers())
    assert buffers.keys() == {'canonical_vertices', 'faces', 'head_joint', 'skinned_vertices', 'skinning_weights',
                              'pose_basis'}
    assert body.pose_basis.shape == (18, 6890 * 3)
    weights = stand_in_arrays['weights']
    np.testing.assert_array_equal(body.skinned_vertices.numpy(), np.flatnonzero(weights[:, 12] + weights[:, 15]))
    double = BodyModel.from_arrays(stand_in_arrays, 'stand-in').to(torch.float64)
    assert double.canonical_vertices.dtype == torch.float64 and double.faces.dtype == torch.long
    assert double.posed_vertices(_poses(2)).dtype == torch.float64
    blank = BodyModel(**{name: torch.zeros_like(buffer) for name, buffer in buffers.items()})
    blank.load_state_dict(body.state_dict())
    for name, buffer in body.state_dict().items():
        assert torch.equal(blank.state_dict()[name], buffer), name
    torch.testing.assert_close(blank.posed_vertices(_poses(2)), body.posed_vertices(_poses(2)), atol=0, rtol=0)


def test_from_path_and_procedural(tmp_path, body, stand_in_arrays, capsys):
    smpl_io.save_smpl_pickle(stand_in_arrays, str(tmp_path / 'SMPL_NEUTRAL.pkl'))
    loaded = BodyModel.from_path(str(tmp_path))
    assert 'stand-in for SMPL' in capsys.readouterr().out
    built = BodyModel.procedural()
    assert 'stand-in for SMPL' in capsys.readouterr().out
    for name, buffer in body.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], buffer), name
        assert torch.equal(built.state_dict()[name], buffer), name


def test_broken_kinematic_tree(stand_in_arrays):
    table = stand_in_arrays['kintree_table'].copy()
    table[0, 16] = 12                                              # a shoulder hanging off the neck
    with pytest.raises(ValueError, match="my.pkl: key 'kintree_table'"):
        BodyModel.from_arrays(dict(stand_in_arrays, kintree_table=table), 'my.pkl')


def test_missing_smplx_hint(stand_in_arrays, monkeypatch):
    monkeypatch.setitem(sys.modules, 'smplx', None)
    with pytest.raises(ImportError, match='pip install smplx'):
        BodyModel.from_arrays(stand_in_arrays, 'stand-in')


def test_body_warp_fn_poses_once_for_all_calls_and_reaches_the_pose():
    """BodyWarp.warp_fn (training/networks/body_warp.py): identity skipped, calls share one posed mesh."""
    from training.networks.body_warp import BodyWarp
    module = BodyWarp(box_warp=1.0, thickness=0.25)
    assert module.warp_fn(torch.zeros(2, 6)) is None
    pose = (_poses(2, scale=0.3, seed=3)).requires_grad_(True)
    warp = module.warp_fn(pose)
    g = torch.Generator().manual_seed(4)
    points = (torch.rand(2, 3000, 3, generator=g) - 0.5) * 0.6 + torch.tensor([0.0, 0.1, 0.0])
    coarse, fine = warp(points[:, :1800]), warp(points[:, 1800:])
    expected = module.warp(points, module.body.posed_vertices(pose))[0]
    assert torch.equal(torch.cat([coarse, fine], dim=1), expected)
    assert not torch.equal(expected, points)
    (coarse.square().sum() + fine.square().sum()).backward()
    assert pose.grad.abs().sum() > 0
