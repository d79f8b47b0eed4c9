"""The portrait3d procedural SMPL stand-in (training/deformation/procedural_body.py)."""
import numpy as np
import pytest
import scipy.sparse
import trimesh

from configs.schema import SkeletonConfig
from training.deformation import procedural_body, procedural_mesh

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


@pytest.fixture(scope='module')
def arrays():
    return procedural_body.procedural_smpl_arrays()


def _neck_frame(arrays):
    """v_template shifted so that the regressed neck joint is the origin."""
    joints = arrays['J_regressor'] @ arrays['v_template']
    return arrays['v_template'] - joints[12], joints - joints[12]


def test_smpl_layout(arrays):
    assert arrays['v_template'].shape == (6890, 3)
    assert arrays['f'].shape == (13776, 3) and arrays['f'].dtype == np.uint32
    assert arrays['weights'].shape == (6890, 24)
    assert isinstance(arrays['J_regressor'], scipy.sparse.csc_matrix) and arrays['J_regressor'].shape == (24, 6890)
    assert arrays['shapedirs'].shape == (6890, 3, 10) and not arrays['shapedirs'].any()
    assert arrays['posedirs'].shape == (6890, 3, 207) and not arrays['posedirs'].any()
    table = arrays['kintree_table']
    assert table.shape == (2, 24) and table.dtype == np.uint32 and table[0, 0] == 4294967295
    assert table[0, 1:].tolist() == SMPL_PARENTS[1:] and table[1].tolist() == list(range(24))
    assert arrays['stand_in'] == 'portrait3d procedural body'


def test_watertight_genus_zero(arrays):
    mesh = trimesh.Trimesh(arrays['v_template'], arrays['f'], process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent
    assert mesh.euler_number == 2 and mesh.body_count == 1
    assert mesh.volume > 0                                        # outward normals


def test_well_shaped_triangles_on_the_surface(arrays):
    vertices = arrays['v_template'] + procedural_body.designed_joints()[0]     # back to the design frame
    np.testing.assert_allclose(procedural_body.body_sdf(vertices), 0.0, atol=1e-9)
    corners = vertices[arrays['f'].astype(np.int64)]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    assert np.linalg.norm(normals, axis=1).min() / 2 > 5e-6        # no degenerate faces (m^2)
    gradient = procedural_mesh.sdf_gradient(procedural_body.body_sdf, corners.mean(1))
    assert ((normals * gradient).sum(1) > 0).all()                  # no folded faces
    for k in range(3):
        a, b = corners[:, (k + 1) % 3] - corners[:, k], corners[:, (k + 2) % 3] - corners[:, k]
        cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
        assert np.degrees(np.arccos(cosine)).min() > 10.0


def test_joint_regressor(arrays):
    regressor = arrays['J_regressor']
    assert regressor.min() >= 0
    np.testing.assert_allclose(np.asarray(regressor.sum(axis=1)).ravel(), 1.0, atol=1e-12)
    designed = procedural_body.designed_joints()
    np.testing.assert_allclose(regressor @ arrays['v_template'], designed - designed[0], atol=2e-4)
    assert regressor.nnz < 24 * 500                               # sparse: vertices near each joint


def test_canonical_neck_and_head_match_skeleton_config(arrays):
    _, joints = _neck_frame(arrays)
    skeleton = SkeletonConfig()
    np.testing.assert_allclose(joints[12], skeleton.neck_joint, atol=1e-12)
    np.testing.assert_allclose(joints[15], skeleton.head_joint, atol=0.01)
    np.testing.assert_allclose(joints[15], skeleton.head_joint, atol=5e-4)    # by design, much closer


def test_adult_proportions(arrays):
    vertices, joints = _neck_frame(arrays)
    crown = vertices[:, 1].max()
    face = vertices[(np.abs(vertices[:, 0]) < 0.01) & (vertices[:, 2] > 0.05) & (vertices[:, 1] > 0)]
    chin = face[face[:, 2] > 0.08][:, 1].min()
    assert 0.21 < crown - chin < 0.25                             # head height
    assert 0.35 < joints[16, 0] - joints[17, 0] < 0.45            # shoulder width
    head = vertices[vertices[:, 1] > joints[15, 1]]
    assert head[np.argmax(head[:, 2]), 1] > joints[15, 1] + 0.05  # the nose: the face looks to +z
    assert head[:, 2].max() > -head[:, 2].min() + 0.01
    assert (vertices[:, 0].max() + vertices[:, 0].min()) == pytest.approx(0.0, abs=0.01)   # symmetric


def test_skinning_weights(arrays):
    weights = arrays['weights']
    assert weights.min() >= 0 and ((weights > 0).sum(1) <= 4).all()
    np.testing.assert_allclose(weights.sum(1), 1.0, atol=1e-12)
    vertices, joints = _neck_frame(arrays)
    crown_region = vertices[:, 1] > joints[15, 1] + 0.08
    assert (weights[crown_region, 15] == 1.0).all()               # the skull moves with the head only
    assert (weights[vertices[:, 1] < -0.15, 12] == 0).all()      # the neck does not reach the chest
    assert (weights[:, 12] > 0).sum() > 200 and (weights[:, 15] == 1).sum() > 300


def test_deterministic_and_copied():
    first = procedural_body.procedural_smpl_arrays()
    procedural_body.procedural_smpl_arrays()['v_template'][:] = 0.0       # callers get copies
    assert procedural_body.procedural_smpl_arrays()['v_template'].any()
    procedural_body._cached_arrays.cache_clear()
    rebuilt = procedural_body.procedural_smpl_arrays()
    assert rebuilt.keys() == first.keys()
    for key, value in first.items():
        if scipy.sparse.issparse(value):
            assert (value != rebuilt[key]).nnz == 0
        else:
            np.testing.assert_array_equal(value, rebuilt[key], err_msg=key)


def test_smplx_loads_and_runs_it(arrays):
    smplx = pytest.importorskip('smplx')
    model = smplx.SMPL('', data_struct=smplx.utils.Struct(**arrays))   # default vertex_ids work at V=6890
    output = model()
    assert output.vertices.shape == (1, 6890, 3) and output.joints.shape == (1, 45, 3)
    np.testing.assert_allclose(output.vertices[0].detach().numpy(), arrays['v_template'], atol=1e-6)
