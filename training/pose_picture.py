"""Pictures of body poses: the posed body mesh, flat-shaded by a tiny software renderer (PIL polygons).

Used by the training snapshots (system.md §1.4) to show, side by side, the dataset pose of real
images, D's pose estimate of those reals, D's estimate on fakes and the pose G's pose branch
rendered those fakes with. Every panel shows the same body (G's body model, neck + head posed by
6 floats) from the same camera: the preset's camera sphere (configs.schema.CameraConfig) at a
three-quarter yaw, so that turns, tilts and nods all show. Faces are drawn far to near (painter's
algorithm), coloured from body to head by their head skinning weight and shaded by |n . view|.
"""
import math
from typing import Sequence, Tuple

import numpy as np
import PIL.Image
import PIL.ImageDraw
import torch

from configs.schema import CameraConfig
from training.cameras import camera_vector, project, unpack_camera
from training.deformation.body_model import BodyModel

VIEW_YAW_OFFSET_DEG = 35.0              # the picture's camera: this far from frontal towards the subject's right
BODY_RGB = np.array([150.0, 160.0, 185.0])
HEAD_RGB = np.array([235.0, 180.0, 140.0])
BACKGROUND_RGB = (255, 255, 255)
AMBIENT = 0.3                           # shade = AMBIENT + (1 - AMBIENT) |n . view|
UV_MARGIN = 0.05                        # faces whose centroid projects further outside the panel are skipped
LABEL_WIDTH = 64                        # pixels of the row-label column


def view_camera(cfg: CameraConfig = CameraConfig()) -> torch.Tensor:
    """The picture's camera [1, 25]: on the preset's sphere, level, VIEW_YAW_OFFSET_DEG off frontal."""
    return camera_vector(math.pi / 2 - math.radians(VIEW_YAW_OFFSET_DEG), math.pi / 2, cfg)


def _head_weight(body: BodyModel) -> np.ndarray:
    """Per-vertex head skinning weight float64 [V] (0 for vertices that the neck and head do not move)."""
    weight = np.zeros(body.num_vertices)
    weight[body.skinned_vertices.cpu().numpy()] = body.skinning_weights[:, 1].detach().cpu().double().numpy()
    return weight


def _face_draw_list(vertices: np.ndarray, faces: np.ndarray, uv: np.ndarray, origin: np.ndarray,
                    forward: np.ndarray, face_rgb: np.ndarray, size: int):
    """(pixel polygons [K, 3, 2], colours uint8 [K, 3]) of the faces inside the panel, far to near."""
    tri = vertices[faces]                                              # [F, 3, 3]
    normal = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-12)
    shade = AMBIENT + (1 - AMBIENT) * np.abs(normal @ forward)
    depth = (tri.mean(axis=1) - origin) @ forward
    centre = uv[faces].mean(axis=1)
    inside = np.all((centre > -UV_MARGIN) & (centre < 1 + UV_MARGIN), axis=1) & (depth > 0)
    order = np.argsort(-depth[inside], kind='stable')
    polygons = (uv[faces][inside][order] * size)
    colours = np.clip(face_rgb[inside][order] * shade[inside][order, None], 0, 255).astype(np.uint8)
    return polygons, colours


@torch.no_grad()
def render_bodies(body: BodyModel, poses: torch.Tensor, size: int, camera: torch.Tensor = None) -> np.ndarray:
    """Posed bodies for poses [N, 6] (neck, head axis-angle) seen by camera [1, 25] -> uint8 [N, size, size, 3]."""
    camera = view_camera() if camera is None else camera
    vertices = body.posed_vertices(poses.detach().to(body.canonical_vertices)).float().cpu()   # [N, V, 3]
    uv = project(vertices, camera.to(vertices).expand(vertices.shape[0], -1)).numpy()
    cam2world = unpack_camera(camera.to(torch.float64))[0][0].numpy()
    origin, forward = cam2world[:3, 3], cam2world[:3, 2]
    faces = body.faces.cpu().numpy()
    weight = _head_weight(body)[faces].mean(axis=1, keepdims=True)
    face_rgb = BODY_RGB * (1 - weight) + HEAD_RGB * weight
    panels = np.empty((vertices.shape[0], size, size, 3), dtype=np.uint8)
    for index in range(vertices.shape[0]):
        polygons, colours = _face_draw_list(vertices[index].double().numpy(), faces, uv[index], origin, forward,
                                            face_rgb, size)
        image = PIL.Image.new('RGB', (size, size), BACKGROUND_RGB)
        draw = PIL.ImageDraw.Draw(image)
        for polygon, colour in zip(polygons.tolist(), colours.tolist()):
            draw.polygon([tuple(p) for p in polygon], fill=tuple(colour))
        panels[index] = np.asarray(image)
    return panels


def pose_picture(body: BodyModel, rows: Sequence[Tuple[str, torch.Tensor]], size: int) -> np.ndarray:
    """One row of panels per (label, poses [N, 6]), labelled on the left -> uint8 [rows * size, 64 + N * size, 3]."""
    num = max(poses.shape[0] for _, poses in rows)
    picture = PIL.Image.new('RGB', (LABEL_WIDTH + num * size, len(rows) * size), BACKGROUND_RGB)
    draw = PIL.ImageDraw.Draw(picture)
    for row, (label, poses) in enumerate(rows):
        panels = render_bodies(body, poses, size)
        for col, panel in enumerate(panels):
            picture.paste(PIL.Image.fromarray(panel), (LABEL_WIDTH + col * size, row * size))
        draw.text((4, row * size + size // 2), label, fill=(0, 0, 0))
    return np.asarray(picture)
