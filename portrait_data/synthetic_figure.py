"""Synthetic identities: the part table of `synthetic_proportions` turned into batched quadric primitives.

Every primitive is a quadric |inv_axes (x - centre)|^2 = 1 (an ellipsoid, a sphere, or, with a
rank-2 `inv_axes`, an infinite elliptic cylinder) cut by up to `MAX_CLIPS` half-spaces
normal . x >= offset. A capsule is a clipped cylinder plus two end spheres. All tensors are in
canonical space (see `synthetic_proportions`), float64, batched over N identities.
"""
import dataclasses
import math
from dataclasses import dataclass
from typing import Dict, List, NamedTuple, Optional, Union

import torch

from configs.schema import SkeletonConfig
from portrait_data import synthetic_proportions as table

MAX_CLIPS = 2
MIRROR = (-1.0, 1.0, 1.0)


class Primitive(NamedTuple):
    """One entry of the static primitive list: the part it comes from and how."""
    name: str
    part: Union[table.Ellipsoid, table.Capsule]
    side: float          # +1 as listed, -1 reflected across x = 0
    component: str       # 'ellipsoid', 'cylinder', 'start' or 'end'


def _is_clipped(prim: Primitive) -> bool:
    """Whether a primitive has clipping half-spaces (a capsule's cylinder, a clipped ellipsoid)."""
    return prim.component == 'cylinder' or (prim.component == 'ellipsoid' and bool(prim.part.clip))


def _ellipsoid_field(prim: Primitive, field: str) -> Optional[str]:
    """An optional knob or style name of an ellipsoid part (capsules have none)."""
    return getattr(prim.part, field) if prim.component == 'ellipsoid' else None


def _expand_parts() -> List[Primitive]:
    """The static list of primitives (mirrored copies and capsule pieces included), clipped ones last."""
    out = []
    for part in table.PARTS:
        sides = [(part.name, 1.0)]
        if part.mirror:
            sides.append((part.name[:-2] + '_r', -1.0))
        for name, side in sides:
            if isinstance(part, table.Ellipsoid):
                out.append(Primitive(name, part, side, 'ellipsoid'))
            else:
                out += [Primitive(f'{name}/{piece}', part, side, piece) for piece in ('cylinder', 'start', 'end')]
    return sorted(out, key=_is_clipped)


PRIMITIVES = _expand_parts()
PRIMITIVE_NAMES = tuple(p.name for p in PRIMITIVES)
PRIMITIVE_GROUPS = torch.tensor([table.GROUPS.index(p.part.group) for p in PRIMITIVES])
PRIMITIVE_MATERIALS = torch.tensor([table.MATERIALS.index(p.part.material) for p in PRIMITIVES])
CLIPPED = slice(sum(not _is_clipped(p) for p in PRIMITIVES), len(PRIMITIVES))   # the clipped primitives
LANDMARK_NAMES = tuple(table.LANDMARKS)


@dataclass
class Identity:
    """A batch of N synthetic people in canonical space and their backgrounds.

    Geometry (float64): centre [N, P, 3]; inv_axes [N, P, 3, 3]; clip_normal [N, C, K, 3] and
    clip_offset [N, C, K], the half-spaces (keep normal . x >= offset) of the C clipped
    primitives PRIMITIVES[CLIPPED]; landmarks [N, L, 3] (order LANDMARK_NAMES, all on the head).
    Appearance (float32): colour [N, P, 3] in [0, 1]; background_colour [N, 2, 3] (top, bottom);
    background_pattern [N, 3] (stripe cycles per image width, stripe amplitude, vignette
    strength). enabled [N, P] bool: whether each primitive exists (optional hair styles, collar).
    """
    centre: torch.Tensor
    inv_axes: torch.Tensor
    clip_normal: torch.Tensor
    clip_offset: torch.Tensor
    colour: torch.Tensor
    enabled: torch.Tensor
    landmarks: torch.Tensor
    background_colour: torch.Tensor
    background_pattern: torch.Tensor

    def __len__(self) -> int:
        """Number of identities N."""
        return self.centre.shape[0]

    def select(self, index) -> 'Identity':
        """The identities at `index` (a slice, an int list or a bool mask) as a new batch."""
        return Identity(**{f.name: getattr(self, f.name)[index] for f in dataclasses.fields(self)})

    def to(self, device) -> 'Identity':
        """The same identities with every tensor on `device` (float64 geometry: CPU or CUDA, not MPS)."""
        return Identity(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})


def _rotation_x(deg: float) -> torch.Tensor:
    """Rotation [3, 3] about +x by `deg` (tips +y toward +z)."""
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def _group_affines(knobs: Dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-identity shape affines [N, G, 3, 3] (diagonal) of the groups in `table.GROUPS` order."""
    one = torch.ones_like(knobs['head_scale'])
    head = knobs['head_scale']
    diagonals = {
        'torso': (knobs['shoulder_width'], one, one),
        'neck': (knobs['neck_width'], one, knobs['neck_width']),
        'head': (head * knobs['head_width'], head, head),
    }
    return torch.stack([torch.diag_embed(torch.stack(diagonals[g], dim=-1)) for g in table.GROUPS], dim=1)


def _pivots() -> torch.Tensor:
    """The point [G, 3] each group's shape affine is centred on (its joint)."""
    skeleton = SkeletonConfig()
    joints = {'torso': skeleton.neck_joint, 'neck': skeleton.neck_joint, 'head': skeleton.head_joint}
    return torch.tensor([joints[g] for g in table.GROUPS], dtype=torch.float64)


def _local_primitive(prim: Primitive, knobs: Dict[str, torch.Tensor]):
    """One primitive with its knobs and mirroring applied, before its group affine: centre [N, 3],
    axes [N, 3, 3] (None for capsule pieces), inv_axes [N, 3, 3], planes [(normal [3], point [3])]."""
    n = knobs['head_scale'].shape[0]
    part = prim.part
    mirror = torch.tensor(MIRROR if prim.side < 0 else (1.0, 1.0, 1.0), dtype=torch.float64)
    eye = torch.eye(3, dtype=torch.float64)
    if prim.component == 'ellipsoid':
        centre = torch.tensor(part.centre, dtype=torch.float64).repeat(n, 1)
        if part.spread_knob:
            centre[:, 0] *= knobs[part.spread_knob]
        size = knobs[part.size_knob] if part.size_knob else torch.ones(n, dtype=torch.float64)
        radii = torch.tensor(part.radii, dtype=torch.float64) * size[:, None]
        axes = mirror[:, None] * (_rotation_x(part.tilt_deg) @ torch.diag_embed(radii))
        planes = [(mirror * _vec(p.normal), mirror * _vec(p.point)) for p in part.clip]
        return centre * mirror, axes, torch.linalg.inv(axes), planes
    start, end = mirror * _vec(part.start), mirror * _vec(part.end)
    if prim.component == 'cylinder':
        axis = (end - start) / (end - start).norm()
        inv_axes = (eye - torch.outer(axis, axis)) / part.radius
        return start.repeat(n, 1), None, inv_axes.repeat(n, 1, 1), [(axis, start), (-axis, end)]
    centre = start if prim.component == 'start' else end
    return centre.repeat(n, 1), None, (eye / part.radius).repeat(n, 1, 1), []


def _vec(values) -> torch.Tensor:
    """A float64 tensor of a tuple from the table."""
    return torch.tensor(values, dtype=torch.float64)


def _clip_tensors(planes, affine, pivot, shift):
    """Clip planes after the group affine x -> pivot + affine (x - pivot), padded to MAX_CLIPS
    with always-true planes (0 . x >= -1): (normal [N, K, 3], offset [N, K]); `shift` [N] raises
    each offset (metres)."""
    n = affine.shape[0]
    normals = torch.zeros(n, MAX_CLIPS, 3, dtype=torch.float64)
    offsets = -torch.ones(n, MAX_CLIPS, dtype=torch.float64)
    inv_t = torch.linalg.inv(affine).transpose(1, 2)
    for k, (normal, point) in enumerate(planes):
        nrm = torch.nn.functional.normalize(inv_t @ normal, dim=-1)
        pt = pivot + (affine @ (point - pivot))
        normals[:, k] = nrm
        offsets[:, k] = (nrm * pt).sum(-1) + shift
    return normals, offsets


def build_geometry(knobs: Dict[str, torch.Tensor]):
    """Canonical primitives of N identities from their knob values (each [N], see
    `table.KNOB_RANGES`): centre [N, P, 3], inv_axes [N, P, 3, 3], clip_normal [N, C, K, 3],
    clip_offset [N, C, K] (of PRIMITIVES[CLIPPED]), landmarks [N, L, 3]."""
    affines, pivots = _group_affines(knobs), _pivots()
    zero = torch.zeros_like(knobs['head_scale'])
    centres, inv_axes, normals, offsets, axes_of = [], [], [], [], {}
    for prim, group in zip(PRIMITIVES, PRIMITIVE_GROUPS.tolist()):
        centre, axes, inv, planes = _local_primitive(prim, knobs)
        affine, pivot = affines[:, group], pivots[group]
        centres.append(pivot + ((centre - pivot)[:, None] @ affine.transpose(1, 2))[:, 0])
        inv_axes.append(inv @ torch.linalg.inv(affine))
        if planes:
            knob = _ellipsoid_field(prim, 'clip_knob')
            shift = knobs[knob] if knob else zero
            normal, offset = _clip_tensors(planes, affine, pivot, shift)
            normals.append(normal)
            offsets.append(offset)
        if axes is not None:
            axes_of[prim.name] = (centres[-1], affine @ axes)
    landmarks = []
    for part_name, unit in table.LANDMARKS.values():
        centre, axes = axes_of[part_name]
        landmarks.append(centre + axes @ _vec(unit))
    return (torch.stack(centres, 1), torch.stack(inv_axes, 1), torch.stack(normals, 1),
            torch.stack(offsets, 1), torch.stack(landmarks, 1))


def _uniform(generator: torch.Generator, n: int, bounds, *shape) -> torch.Tensor:
    """Uniform float64 samples [n, *shape] in [bounds[0], bounds[1])."""
    low, high = bounds
    return low + (high - low) * torch.rand(n, *shape, generator=generator, dtype=torch.float64)


def _choice(generator: torch.Generator, n: int, palette) -> torch.Tensor:
    """A random entry [n, 3] of a tuple of RGB colours."""
    return _vec(palette)[torch.randint(len(palette), (n,), generator=generator)]


def _saturated(generator: torch.Generator, n: int, saturation, value) -> torch.Tensor:
    """Random colours [n, 3]: a random hue direction mixed toward grey by 1 - saturation, times value."""
    hue = torch.rand(n, 3, generator=generator, dtype=torch.float64)
    hue = hue / hue.amax(-1, keepdim=True)
    sat, val = _uniform(generator, n, saturation, 1), _uniform(generator, n, value, 1)
    return val * (1 - sat + sat * hue)


def _skin(generator: torch.Generator, n: int) -> torch.Tensor:
    """Skin colours [n, 3] interpolated along table.SKIN_TONES."""
    tones = _vec(table.SKIN_TONES)
    position = torch.rand(n, generator=generator, dtype=torch.float64) * (len(tones) - 1)
    low = position.floor().long().clamp(max=len(tones) - 2)
    frac = (position - low)[:, None]
    return tones[low] * (1 - frac) + tones[low + 1] * frac


def sample_materials(generator: torch.Generator, n: int) -> torch.Tensor:
    """Per-identity material colours [n, M, 3] in `table.MATERIALS` order, in [0, 1]."""
    skin = _skin(generator, n)
    hair = _choice(generator, n, table.HAIR_COLOURS)
    lip_weight = _uniform(generator, n, table.LIP_TINT_WEIGHT, 1)
    colours = {
        'skin': skin,
        'hair': hair,
        'brow': hair * table.BROW_DARKENING,
        'lips': skin * (1 - lip_weight) + _vec(table.LIP_TINT) * lip_weight,
        'sclera': _vec(table.SCLERA_COLOUR).repeat(n, 1),
        'iris': _choice(generator, n, table.IRIS_COLOURS),
        'cloth': _saturated(generator, n, table.CLOTH_SATURATION, table.CLOTH_VALUE),
        'collar': _saturated(generator, n, table.CLOTH_SATURATION, table.CLOTH_VALUE),
    }
    jitter = table.COLOUR_JITTER * (2 * torch.rand(n, len(colours), 3, generator=generator, dtype=torch.float64) - 1)
    return (torch.stack([colours[m] for m in table.MATERIALS], 1) + jitter).clamp(0, 1)


def sample_identity(generator: torch.Generator, num: int = 1) -> Identity:
    """`num` random identities: proportions (table.KNOB_RANGES), styles, colours and backgrounds.

    Deterministic given the generator state; all draws are made in a fixed order on the CPU.
    """
    knobs = {name: _uniform(generator, num, bounds) for name, bounds in table.KNOB_RANGES.items()}
    styles = {name: torch.rand(num, generator=generator) < p for name, p in table.STYLE_PROBABILITIES.items()}
    centre, inv_axes, clip_normal, clip_offset, landmarks = build_geometry(knobs)
    enabled = torch.ones(num, len(PRIMITIVES), dtype=torch.bool)
    for index, prim in enumerate(PRIMITIVES):
        style = _ellipsoid_field(prim, 'style')
        if style:
            enabled[:, index] = styles[style]
    colour = sample_materials(generator, num)[:, PRIMITIVE_MATERIALS]
    background_colour = torch.stack([_saturated(generator, num, table.BACKGROUND_SATURATION,
                                                table.BACKGROUND_VALUE) for _ in range(2)], 1)
    background_pattern = torch.stack([_uniform(generator, num, bounds) for bounds in (
        table.BACKGROUND_STRIPES, table.BACKGROUND_STRIPE_AMPLITUDE, table.BACKGROUND_VIGNETTE)], -1)
    return Identity(centre, inv_axes, clip_normal, clip_offset, colour.float(), enabled, landmarks,
                    background_colour.float(), background_pattern.float())
