"""The portrait3d procedural body: a licence-clean STAND-IN for SMPL, in SMPL's data layout.

It is NOT SMPL and carries no SMPL data. A smooth upper body (head with jaw and nose, neck,
torso, shoulders, T-posed arm stubs) is built from the primitives of `PROPORTIONS` and meshed
with exactly SMPL's vertex and face counts (6890, 13776; watertight, genus 0). It uses SMPL's
24-joint order and kinematic tree (interoperability facts only): joints below the waist and past
the elbows are packed inside the torso bottom and the arm stubs. Skinning weights come from the
distance to each joint's own primitives, the sparse J_regressor reproduces the designed joints,
shapedirs and posedirs are zero. The arrays follow the SMPL pickle key layout, with an extra
key 'stand_in', so the same loading path serves SMPL and this body.

Frame of `PROPORTIONS`: metres, y up, +x the subject's left, the body faces +z, origin at the
neck joint of `configs.schema.SkeletonConfig`. The returned v_template is shifted so that the
pelvis joint is at the origin, as in an SMPL template.
"""
import functools
from typing import Dict

import numpy as np
import scipy.sparse

from configs.schema import SkeletonConfig
from training.deformation import procedural_mesh

STAND_IN_NAME = 'portrait3d procedural body'
NUM_VERTICES = 6890                  # SMPL's counts, so that every SMPL consumer accepts the body
NUM_FACES = 13776
NUM_BETAS = 10
NUM_POSE_BASIS = 207                 # 23 joints x 9 rotation-matrix entries

JOINT_NAMES = (
    'pelvis', 'left_hip', 'right_hip', 'spine1', 'left_knee', 'right_knee', 'spine2',
    'left_ankle', 'right_ankle', 'spine3', 'left_foot', 'right_foot', 'neck', 'left_collar',
    'right_collar', 'head', 'left_shoulder', 'right_shoulder', 'left_elbow', 'right_elbow',
    'left_wrist', 'right_wrist', 'left_hand', 'right_hand')
PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

_SKELETON = SkeletonConfig()
_NEWTON_STEPS = 50                   # joint regressor: Newton iterations of the tilted Gaussian
_RADIUS_GROWTH = 1.25                # joint regressor: candidate radius factor after a failure

# Every dimension of the stand-in (metres, frame above). 'left_*' entries are mirrored to
# 'right_*'. Shapes, unioned in order: (owner joint, blend, 'ellipsoid', centre, radii) or
# (owner joint, blend, 'capsule', end a, end b, radius); blend is the smooth-union width with
# the shapes before it (0: plain union, e.g. collinear capsules of one radius join seamlessly).
PROPORTIONS = {
    'joints': {
        'pelvis': (0.0, -0.52, 0.0), 'left_hip': (0.085, -0.60, 0.0), 'spine1': (0.0, -0.40, -0.01),
        'left_knee': (0.085, -0.635, 0.0), 'spine2': (0.0, -0.27, -0.015),
        'left_ankle': (0.085, -0.665, 0.0), 'spine3': (0.0, -0.14, -0.02),
        'left_foot': (0.085, -0.665, 0.03), 'neck': _SKELETON.neck_joint,
        'left_collar': (0.075, -0.035, -0.02), 'head': _SKELETON.head_joint,
        'left_shoulder': (0.19, -0.07, -0.025), 'left_elbow': (0.43, -0.07, -0.03),
        'left_wrist': (0.52, -0.07, -0.03), 'left_hand': (0.56, -0.07, -0.03),
    },
    'shapes': (
        ('head', 0.0, 'ellipsoid', (0.0, 0.155, 0.0), (0.078, 0.105, 0.097)),          # cranium
        ('head', 0.03, 'ellipsoid', (0.0, 0.085, 0.045), (0.056, 0.058, 0.06)),        # jaw, chin
        ('head', 0.01, 'ellipsoid', (0.0, 0.135, 0.095), (0.013, 0.022, 0.022)),       # nose
        ('neck', 0.025, 'capsule', (0.0, -0.05, -0.01), (0.0, 0.06, -0.005), 0.056),
        ('spine3', 0.04, 'ellipsoid', (0.0, -0.17, -0.015), (0.17, 0.17, 0.105)),      # chest
        ('spine2', 0.08, 'ellipsoid', (0.0, -0.33, -0.005), (0.155, 0.17, 0.1)),       # belly
        ('spine1', 0.08, 'ellipsoid', (0.0, -0.45, 0.0), (0.15, 0.15, 0.1)),           # waist
        ('pelvis', 0.08, 'ellipsoid', (0.0, -0.57, 0.0), (0.16, 0.14, 0.105)),         # hips
        ('left_collar', 0.04, 'capsule', (0.06, -0.03, -0.02), (0.19, -0.07, -0.025), 0.055),
        ('left_shoulder', 0.03, 'capsule', (0.19, -0.07, -0.025), (0.43, -0.07, -0.03), 0.047),
        ('left_elbow', 0.0, 'capsule', (0.43, -0.07, -0.03), (0.575, -0.07, -0.03), 0.047),
    ),
    'grid_spacing': 0.028,            # marching-tetrahedra cell (gives fewer than 6890 vertices)
    'relax_iterations': 8,
    'skinning_temperature': 0.01,     # softmax over -(distance to each joint's primitives)
    'skinning_cutoff': 0.02,          # weights below this are dropped (smoothly) ...
    'skinning_max_joints': 4,         # ... and at most this many joints per vertex
    'regressor_sigma': 0.05,          # Gaussian prior of the joint regressor around each joint
    'regressor_radius': 0.08,         # first candidate radius; grown until the joint is reproduced
    'regressor_tolerance': 1e-4,      # metres between designed and regressed joint
}


def _mirror_point(point):
    """Reflection (x -> -x) of a point (x, y, z) across the body's plane of symmetry."""
    return (-point[0], point[1], point[2])


def _mirror_params(kind: str, params):
    """Parameters of the right-side twin of a left-side primitive."""
    if kind == 'ellipsoid':
        return [_mirror_point(params[0]), params[1]]
    return [_mirror_point(params[0]), _mirror_point(params[1]), params[2]]


def designed_joints() -> np.ndarray:
    """The 24 designed joints [24, 3] in SMPL order (neck frame of `PROPORTIONS`)."""
    table = dict(PROPORTIONS['joints'])
    for name, point in PROPORTIONS['joints'].items():
        if name.startswith('left_'):
            table[name.replace('left_', 'right_')] = _mirror_point(point)
    return np.array([table[name] for name in JOINT_NAMES], dtype=np.float64)


def _shapes():
    """All primitives with right-side copies: list of (joint index, blend, kind, params)."""
    shapes = []
    for owner, blend, kind, *params in PROPORTIONS['shapes']:
        shapes.append((JOINT_NAMES.index(owner), blend, kind, params))
        if owner.startswith('left_'):
            twin = JOINT_NAMES.index(owner.replace('left_', 'right_'))
            shapes.append((twin, blend, kind, _mirror_params(kind, params)))
    return shapes


def primitive_distances(points: np.ndarray) -> np.ndarray:
    """Signed distances [N, P] from `points` [N, 3] to each primitive of `_shapes()`.

    Exact for capsules; for ellipsoids the usual first-order bound k0 (k0 - 1) / k1.
    """
    coords = points.T
    columns = []
    for _, _, kind, params in _shapes():
        if kind == 'ellipsoid':
            local = [c - o for c, o in zip(coords, params[0])]
            k0 = np.sqrt(sum((u / r) ** 2 for u, r in zip(local, params[1])))
            k1 = np.sqrt(sum((u / r ** 2) ** 2 for u, r in zip(local, params[1])))
            columns.append(k0 * (k0 - 1.0) / np.maximum(k1, 1e-12))
        else:
            a, radius = params[0], params[2]
            axis = [e - s for s, e in zip(params[0], params[1])]
            local = [c - o for c, o in zip(coords, a)]
            t = np.clip(sum(u * d for u, d in zip(local, axis)) / sum(d * d for d in axis), 0.0, 1.0)
            columns.append(np.sqrt(sum((u - t * d) ** 2 for u, d in zip(local, axis))) - radius)
    return np.stack(columns, axis=1)


def _smooth_min(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum of width k (C1 union of two distance fields; k = 0: minimum)."""
    if k == 0:
        return np.minimum(a, b)
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.minimum(a, b) - h * h * k / 4.0


def body_sdf(points: np.ndarray) -> np.ndarray:
    """Signed distance [N] (negative inside) of the stand-in surface at `points` [N, 3]."""
    distances = primitive_distances(points)
    result = distances[:, 0]
    for (_, blend, _, _), column in zip(_shapes()[1:], distances.T[1:]):
        result = _smooth_min(result, column, blend)
    return result


def _bounds():
    """Axis-aligned box (lower [3], upper [3]) enclosing every primitive."""
    lows, highs = [], []
    for _, _, kind, params in _shapes():
        if kind == 'ellipsoid':
            lows.append(np.subtract(params[0], params[1]))
            highs.append(np.add(params[0], params[1]))
        else:
            lows.append(np.minimum(params[0], params[1]) - params[2])
            highs.append(np.maximum(params[0], params[1]) + params[2])
    return np.min(lows, axis=0), np.max(highs, axis=0)


def build_surface():
    """Stand-in mesh: vertices [6890, 3] float64 (neck frame), faces [13776, 3] int64, outward."""
    lower, upper = _bounds()
    vertices, faces = procedural_mesh.marching_tetrahedra(body_sdf, lower, upper, PROPORTIONS['grid_spacing'])
    vertices = procedural_mesh.relax(body_sdf, vertices, faces, PROPORTIONS['relax_iterations'])
    vertices, faces = procedural_mesh.split_to_count(body_sdf, vertices, faces, NUM_VERTICES)
    vertices = procedural_mesh.relax(body_sdf, vertices, faces, PROPORTIONS['relax_iterations'])
    if len(faces) != NUM_FACES:
        raise RuntimeError(f'stand-in surface has {len(faces)} faces, expected {NUM_FACES} (not genus 0)')
    return vertices, faces


def skinning_weights(vertices: np.ndarray) -> np.ndarray:
    """LBS weights [V, 24]: softmax of -(distance to each joint's primitives), cut and top-k.

    Joints without primitives get no weight. Small weights are removed continuously
    (max(w - cutoff, 0)), at most `skinning_max_joints` remain, rows are renormalised to 1.
    """
    distance = np.full((len(vertices), len(JOINT_NAMES)), np.inf)
    for (joint, _, _, _), column in zip(_shapes(), primitive_distances(vertices).T):
        distance[:, joint] = np.minimum(distance[:, joint], column)
    logits = -(distance - distance.min(1, keepdims=True)) / PROPORTIONS['skinning_temperature']
    weights = np.exp(logits)
    weights = np.maximum(weights / weights.sum(1, keepdims=True) - PROPORTIONS['skinning_cutoff'], 0.0)
    rank = np.argsort(np.argsort(-weights, axis=1, kind='stable'), axis=1, kind='stable')
    weights[rank >= PROPORTIONS['skinning_max_joints']] = 0.0
    return weights / weights.sum(1, keepdims=True)


def _tilted_weights(points: np.ndarray, prior: np.ndarray, target: np.ndarray):
    """Weights [N] proportional to prior * exp(lam . points) whose weighted mean is `target` [3].

    Damped Newton on the convex dual log sum prior exp(lam . (points - target)); returns None
    if `target` is not reproduced (it lies outside the hull of `points`).
    """
    offsets = points - target
    lam = np.zeros(3)

    def dual(lam):
        """Dual objective (minus its normalising shift) and unnormalised weights [N] at lam."""
        logits = np.log(prior) + offsets @ lam
        top = logits.max()
        return top + np.log(np.exp(logits - top).sum()), np.exp(logits - top)

    for _ in range(_NEWTON_STEPS):
        value, weights = dual(lam)
        weights /= weights.sum()
        gradient = weights @ offsets
        if np.linalg.norm(gradient) < PROPORTIONS['regressor_tolerance']:
            return weights
        hessian = (offsets * weights[:, None]).T @ offsets - np.outer(gradient, gradient)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(3), gradient)
        while dual(lam - step)[0] > value and np.linalg.norm(step) > 1e-12:
            step = step / 2
        lam = lam - step
    return None


def _regressor_row(vertices: np.ndarray, joint: np.ndarray) -> np.ndarray:
    """Positive weights [V] on the vertices near `joint` [3], summing to 1, with mean `joint`.

    A Gaussian of the distance to the joint, exponentially tilted so that the weighted mean of
    the vertices is the joint; the candidate radius grows until that is possible.
    """
    distance = np.linalg.norm(vertices - joint, axis=1)
    radius = PROPORTIONS['regressor_radius']
    while True:
        near = np.flatnonzero(distance < radius)
        prior = np.exp(-0.5 * (distance[near] / PROPORTIONS['regressor_sigma']) ** 2)
        weights = _tilted_weights(vertices[near], prior / prior.sum(), joint) if len(near) > 3 else None
        if weights is not None:
            row = np.zeros(len(vertices))
            row[near] = weights
            return row
        if len(near) == len(vertices):
            raise RuntimeError(f'designed joint {tuple(joint)} lies outside the stand-in surface')
        radius *= _RADIUS_GROWTH


def joint_regressor(vertices: np.ndarray) -> scipy.sparse.csc_matrix:
    """Sparse J_regressor [24, V] (rows sum to 1) reproducing `designed_joints()` from `vertices`."""
    rows = [_regressor_row(vertices, joint) for joint in designed_joints()]
    return scipy.sparse.csc_matrix(np.stack(rows))


@functools.lru_cache(maxsize=1)
def _cached_arrays():
    """The stand-in's SMPL-layout arrays, built once per process."""
    vertices, faces = build_surface()
    pelvis = designed_joints()[0]
    parents = np.array(PARENTS, dtype=np.int64).astype(np.uint32)   # -1 -> 4294967295, as SMPL
    return {
        'v_template': vertices - pelvis,
        'f': faces.astype(np.uint32),
        'weights': skinning_weights(vertices),
        'J_regressor': joint_regressor(vertices),
        'kintree_table': np.stack([parents, np.arange(len(PARENTS), dtype=np.uint32)]),
        'shapedirs': np.zeros((NUM_VERTICES, 3, NUM_BETAS), dtype=np.float32),
        'posedirs': np.zeros((NUM_VERTICES, 3, NUM_POSE_BASIS), dtype=np.float32),
        'stand_in': STAND_IN_NAME,
    }


def procedural_smpl_arrays() -> Dict[str, object]:
    """The stand-in in the SMPL pickle layout (a fresh dict of copies; deterministic).

    Keys: v_template [6890, 3] float64 (pelvis joint at the origin), f [13776, 3] uint32,
    weights [6890, 24], J_regressor scipy csc [24, 6890], kintree_table [2, 24] uint32,
    shapedirs [6890, 3, 10] and posedirs [6890, 3, 207] float32 zeros, stand_in (str).
    """
    return {key: value.copy() if hasattr(value, 'copy') else value for key, value in _cached_arrays().items()}
