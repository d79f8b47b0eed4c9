"""training/pose_picture.py: the software-rendered body panels against an independent projection."""
import math

import numpy as np
import pytest
import torch

from configs.schema import CameraConfig
from training import pose_picture
from training.deformation.body_model import BodyModel

SIZE = 64
WHITE = np.array(pose_picture.BACKGROUND_RGB)


def _camera_axes():
    """(cam2world float64 [4, 4], intrinsics [3, 3]) of the picture's camera, from its 25 floats."""
    c = pose_picture.view_camera()[0].double().numpy()
    return c[:16].reshape(4, 4), c[16:].reshape(3, 3)


def _two_triangle_body():
    """A body of two triangles facing the camera: A (body, large, far) and B (head, small, nearer,
    centroid at the look-at point = the head joint)."""
    cam2world, _ = _camera_axes()
    right, down, forward = cam2world[:3, 0], cam2world[:3, 1], cam2world[:3, 2]
    centre = np.array(CameraConfig().lookat)
    shape = np.stack([-right - down, right - down, 2 * down]) / 3          # centroid at 0, apex pointing down
    tri_a = centre + 0.15 * shape[[0, 2, 1]] * 2 + 0.1 * forward
    tri_b = centre + 0.15 * shape
    vertices = torch.tensor(np.concatenate([tri_a, tri_b]), dtype=torch.float32)
    return BodyModel(canonical_vertices=vertices, faces=torch.tensor([[0, 1, 2], [3, 4, 5]]),
                     head_joint=torch.tensor(centre, dtype=torch.float32),
                     skinned_vertices=torch.tensor([3, 4, 5]), skinning_weights=torch.tensor([[0.0, 1.0]] * 3),
                     pose_basis=torch.zeros(18, 18))


def _project(points):
    """Independent pinhole projection of world points [P, 3] to pixel coordinates [P, 2]."""
    cam2world, K = _camera_axes()
    cam = (points - cam2world[:3, 3]) @ cam2world[:3, :3]
    uvw = cam @ K.T
    return uvw[:, :2] / uvw[:, 2:] * SIZE


def _inside(p, tri, margin=1.0):
    """+1 if pixel centre p is inside triangle tri [3, 2] by more than margin pixels, -1 if outside by more,
    0 near an edge."""
    distances = []
    for i in range(3):
        a, b, c = tri[i], tri[(i + 1) % 3], tri[(i + 2) % 3]
        edge = b - a
        normal = np.array([-edge[1], edge[0]]) / np.linalg.norm(edge)
        normal *= np.sign(normal @ (c - a))
        distances.append(normal @ (p - a))
    return 1 if min(distances) > margin else (-1 if min(distances) < -margin else 0)


def _expected_classes(vertices):
    """Per pixel: 'head', 'body', 'background' or None (near an edge) from the projected triangles."""
    tri_a, tri_b = _project(vertices[:3]), _project(vertices[3:])
    out = {}
    for y in range(SIZE):
        for x in range(SIZE):
            p = np.array([x + 0.5, y + 0.5])
            a, b = _inside(p, tri_a), _inside(p, tri_b)
            if b == 1:
                out[(y, x)] = 'head'
            elif b == -1 and a == 1:
                out[(y, x)] = 'body'
            elif b == -1 and a == -1:
                out[(y, x)] = 'background'
    return out


def _check_panel(panel, vertices):
    """Every classified pixel of the panel has its class's colour (flat faces facing the camera: shade 1)."""
    colours = dict(head=pose_picture.HEAD_RGB, body=pose_picture.BODY_RGB, background=WHITE)
    counts = dict(head=0, body=0, background=0)
    for (y, x), kind in _expected_classes(vertices).items():
        assert np.abs(panel[y, x].astype(float) - colours[kind]).max() <= 1, (y, x, kind, panel[y, x])
        counts[kind] += 1
    assert min(counts.values()) > 20


def test_panels_match_an_independent_projection_with_the_nearer_face_on_top():
    body = _two_triangle_body()
    panel = pose_picture.render_bodies(body, torch.zeros(1, 6), SIZE)[0]
    assert panel.shape == (SIZE, SIZE, 3) and panel.dtype == np.uint8
    _check_panel(panel, body.canonical_vertices.double().numpy())


def test_a_head_rotation_turns_the_head_triangle_about_the_head_joint():
    body = _two_triangle_body()
    cam2world, _ = _camera_axes()
    axis = cam2world[:3, 2]                                             # turn in the image plane, by 180 degrees
    pose = torch.tensor([[0.0, 0.0, 0.0, *(math.pi * axis)]], dtype=torch.float32)
    panel = pose_picture.render_bodies(body, pose, SIZE)[0]
    vertices = body.canonical_vertices.double().numpy().copy()
    centre = np.array(CameraConfig().lookat)
    vertices[3:] = 2 * centre - vertices[3:]                            # a half turn about the axis through the joint
    _check_panel(panel, vertices)
    assert not np.array_equal(panel, pose_picture.render_bodies(body, torch.zeros(1, 6), SIZE)[0])


def test_picture_lays_out_rows_of_panels_with_labels():
    body = _two_triangle_body()
    poses = torch.zeros(3, 6)
    picture = pose_picture.pose_picture(body, [('dataset', poses), ('G branch', poses[:2])], SIZE)
    assert picture.shape == (2 * SIZE, pose_picture.LABEL_WIDTH + 3 * SIZE, 3)
    panel = pose_picture.render_bodies(body, poses[:1], SIZE)[0]
    x0 = pose_picture.LABEL_WIDTH
    assert np.array_equal(picture[:SIZE, x0 + 2 * SIZE:], panel)
    assert np.array_equal(picture[SIZE:, x0 + SIZE:x0 + 2 * SIZE], panel)
    assert (picture[SIZE:, x0 + 2 * SIZE:] == 255).all()                 # the shorter row is left blank
    assert (picture[:, :x0] < 128).any()                                  # label text


@pytest.mark.parametrize('count', [1, 4])
def test_procedural_body_renders(count):
    poses = torch.zeros(count, 6)
    poses[:, 3] = torch.linspace(-0.5, 0.5, count)
    panels = pose_picture.render_bodies(BodyModel.procedural(), poses, 48)
    assert panels.shape == (count, 48, 48, 3) and (panels != 255).any(axis=(1, 2, 3)).all()
