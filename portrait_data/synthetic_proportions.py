"""The synthetic portrait figure as one table: parts, landmarks, per-identity variation, colours.

Canonical space (metres): world y up, the body faces +z, origin at the neck joint, head joint at
SkeletonConfig().head_joint. +x is the figure's left. A part with `mirror=True` is listed on the
left (x > 0, name ending '_l') and its reflection across x = 0 ('_r') is added, so the figure is
exactly left-right symmetric. Every part belongs to one rigid group: 'torso' (never moves),
'neck' (rotates with the neck joint) or 'head' (neck then head joint).

Sizes follow the camera preset: the 0.41 m frame at 2.7 m holds the head (chin to crown about
0.23 m), the neck and the top of the shoulders.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

Vec3 = Tuple[float, float, float]

GROUPS = ('torso', 'neck', 'head')
MATERIALS = ('skin', 'hair', 'brow', 'lips', 'sclera', 'iris', 'cloth', 'collar')


@dataclass(frozen=True)
class Plane:
    """A clipping half-space: points x with normal . (x - point) >= 0 are kept."""
    normal: Vec3
    point: Vec3


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid part: semi-axes `radii` along its local axes, which are the canonical axes
    rotated by `tilt_deg` about x (positive tips local +y toward +z).

    `size_knob` scales the radii, `spread_knob` scales |x| of the centre, `clip_knob` moves the
    clipping planes along their normals (metres, positive removes more), `style` names the
    per-identity flag that enables the part (None: always present).
    """
    name: str
    group: str
    material: str
    centre: Vec3
    radii: Vec3
    tilt_deg: float = 0.0
    mirror: bool = False
    clip: Tuple[Plane, ...] = ()
    size_knob: Optional[str] = None
    spread_knob: Optional[str] = None
    clip_knob: Optional[str] = None
    style: Optional[str] = None


@dataclass(frozen=True)
class Capsule:
    """A capsule part: all points within `radius` of the segment `start`-`end`."""
    name: str
    group: str
    material: str
    start: Vec3
    end: Vec3
    radius: float
    mirror: bool = False


HAIRLINE = Plane(normal=(0.0, 0.11, -0.085), point=(0.0, 0.205, 0.065))
NAPE = Plane(normal=(0.0, 0.0, -1.0), point=(0.0, 0.0, -0.015))

PARTS = (
    Ellipsoid('cranium', 'head', 'skin', (0.0, 0.150, -0.005), (0.074, 0.095, 0.095)),
    Ellipsoid('jaw', 'head', 'skin', (0.0, 0.098, 0.026), (0.060, 0.075, 0.068)),
    Ellipsoid('nose', 'head', 'skin', (0.0, 0.118, 0.094), (0.012, 0.026, 0.017), tilt_deg=-15.0,
              size_knob='nose_size'),
    Ellipsoid('sclera_l', 'head', 'sclera', (0.031, 0.148, 0.072), (0.0125, 0.0125, 0.0125), mirror=True,
              spread_knob='eye_spacing'),
    Ellipsoid('iris_l', 'head', 'iris', (0.031, 0.148, 0.080), (0.0065, 0.0065, 0.0065), mirror=True,
              spread_knob='eye_spacing'),
    Ellipsoid('brow_l', 'head', 'brow', (0.033, 0.170, 0.079), (0.018, 0.0045, 0.008), mirror=True,
              spread_knob='eye_spacing'),
    Ellipsoid('lips', 'head', 'lips', (0.0, 0.071, 0.089), (0.022, 0.0065, 0.012), size_knob='mouth_size'),
    Ellipsoid('ear_l', 'head', 'skin', (0.074, 0.135, -0.010), (0.011, 0.028, 0.018), mirror=True,
              size_knob='ear_size'),
    Ellipsoid('hair', 'head', 'hair', (0.0, 0.158, -0.012), (0.082, 0.101, 0.101), clip=(HAIRLINE,),
              size_knob='hair_volume', clip_knob='hairline'),
    Ellipsoid('long_hair', 'head', 'hair', (0.0, 0.095, -0.050), (0.088, 0.135, 0.062), clip=(NAPE,),
              size_knob='hair_volume', style='long_hair'),
    Ellipsoid('bun', 'head', 'hair', (0.0, 0.228, -0.088), (0.042, 0.042, 0.042), style='bun'),
    Capsule('neck', 'neck', 'skin', (0.0, -0.015, -0.012), (0.0, 0.088, 0.0), 0.052),
    Ellipsoid('collar', 'neck', 'collar', (0.0, 0.0, -0.010), (0.066, 0.020, 0.066), style='collar'),
    Ellipsoid('chest', 'torso', 'cloth', (0.0, -0.175, -0.005), (0.165, 0.175, 0.105)),
    Ellipsoid('upper_back', 'torso', 'cloth', (0.0, -0.035, -0.025), (0.070, 0.045, 0.058)),
    Capsule('shoulder_l', 'torso', 'cloth', (0.030, -0.022, -0.015), (0.160, -0.058, -0.015), 0.056, mirror=True),
    Capsule('arm_l', 'torso', 'cloth', (0.170, -0.075, -0.015), (0.195, -0.330, -0.020), 0.052, mirror=True),
)

# Landmarks: (part name, unit vector in the part's local axes); position = centre + axes @ unit.
LANDMARKS = {
    'nose_tip': ('nose', (0.0, -0.5, 0.75 ** 0.5)),
    'eye_l': ('iris_l', (0.0, 0.0, 1.0)),
    'eye_r': ('iris_r', (0.0, 0.0, 1.0)),
    'mouth': ('lips', (0.0, 0.0, 1.0)),
}

# Per-identity shape variation: uniform ranges. Group scales act about the group's joint
# (head: head joint; neck and torso: neck joint); `hairline` is in metres.
KNOB_RANGES = {
    'head_scale': (0.92, 1.05),
    'head_width': (0.93, 1.07),
    'neck_width': (0.85, 1.15),
    'shoulder_width': (0.88, 1.12),
    'eye_spacing': (0.92, 1.08),
    'nose_size': (0.80, 1.25),
    'mouth_size': (0.85, 1.20),
    'ear_size': (0.85, 1.15),
    'hair_volume': (1.00, 1.10),
    'hairline': (-0.012, 0.012),
}
STYLE_PROBABILITIES = {'long_hair': 0.4, 'bun': 0.15, 'collar': 0.5}

# Colours (linear-ish RGB in [0, 1]); skin is interpolated along SKIN_TONES.
SKIN_TONES = ((0.98, 0.85, 0.74), (0.92, 0.73, 0.60), (0.78, 0.57, 0.43), (0.56, 0.38, 0.27), (0.36, 0.24, 0.17))
HAIR_COLOURS = ((0.06, 0.05, 0.05), (0.22, 0.14, 0.09), (0.42, 0.28, 0.16), (0.85, 0.70, 0.42),
                (0.55, 0.22, 0.10), (0.66, 0.66, 0.64))
IRIS_COLOURS = ((0.30, 0.18, 0.10), (0.12, 0.08, 0.05), (0.30, 0.45, 0.65), (0.30, 0.45, 0.30))
SCLERA_COLOUR = (0.95, 0.95, 0.92)
LIP_TINT = (0.75, 0.30, 0.32)
LIP_TINT_WEIGHT = (0.3, 0.6)
BROW_DARKENING = 0.75
COLOUR_JITTER = 0.04
CLOTH_SATURATION = (0.15, 0.8)
CLOTH_VALUE = (0.15, 0.9)
BACKGROUND_VALUE = (0.25, 0.95)
BACKGROUND_SATURATION = (0.0, 0.5)
BACKGROUND_STRIPES = (4.0, 14.0)       # stripe frequency: cycles across the image width
BACKGROUND_STRIPE_AMPLITUDE = (0.0, 0.15)
BACKGROUND_VIGNETTE = (0.0, 0.4)
