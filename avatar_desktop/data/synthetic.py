"""Procedural stylised talking characters: identities from a seed, one anti-aliased RGB frame per parameter set.

Geometry is in face units (the face's half-width is 1, y points down, the face centre is the origin); each point
has a depth that sets how far it moves when the head turns, which gives a cheap pseudo-3D yaw and pitch. Roll
rotates the head about the neck, sway translates it. Drawing uses OpenCV with LINE_AA and 4 bits of sub-pixel
precision, so features move smoothly by fractions of a pixel.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import cv2
import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS
from avatar_desktop.drawn_face import MOUTH_CENTRE, MOUTH_HALF_WIDTH, PITCH_RANGE_DEG, ROLL_RANGE_DEG, YAW_RANGE_DEG

_SHIFT = 4  # sub-pixel bits for cv2 drawing
_ONE = 1 << _SHIFT

MOUTH_MAX_OPENING = 0.34  # interior height at opening = 1, face units
LIP_THICKNESS = 0.07

HAIR_STYLES = ("short", "long", "bun", "bald", "spiky", "curly")
GLASSES = ("none", "round", "square")

_SKIN_TONES = np.array(
    [[255, 224, 196], [241, 194, 160], [224, 172, 130], [198, 134, 98], [160, 102, 70], [110, 70, 48], [232, 190, 172]],
    dtype=np.float64,
)
_HAIR_COLOURS = np.array(
    [[30, 24, 20], [80, 50, 30], [150, 100, 50], [220, 190, 120], [170, 60, 30], [200, 200, 205], [70, 60, 160],
     [40, 120, 110], [230, 110, 160]],
    dtype=np.float64,
)
_EYE_COLOURS = np.array([[70, 45, 25], [40, 90, 160], [60, 120, 70], [110, 90, 60], [50, 50, 60]], dtype=np.float64)


def _colour(rgb: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.clip(rgb, 0, 255))


@dataclass(frozen=True)
class Identity:
    """Everything that makes a character look like itself; `Identity.from_seed(seed)` samples one."""

    seed: int
    face_width: float  # half-width relative to the face scale (about 1)
    face_height: float  # half-height in face units
    face_squareness: float  # superellipse exponent: 2 = oval, 3.5 = squarish
    chin_taper: float
    face_scale: float  # fraction of the frame size that one face unit spans
    skin: tuple[int, int, int]
    lips: tuple[int, int, int]
    hair_style: str
    hair: tuple[int, int, int]
    eye_colour: tuple[int, int, int]
    eye_size: float
    eye_spacing: float
    brow_thickness: float
    glasses: str
    glasses_colour: tuple[int, int, int]
    earrings: bool
    clothing: tuple[int, int, int]
    collar: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    background_pattern: int  # 0 plain gradient, 1 circles, 2 stripes

    @classmethod
    def from_seed(cls, seed: int) -> "Identity":
        rng = np.random.default_rng(np.random.SeedSequence([0x1DE7, seed]))
        skin = _SKIN_TONES[rng.integers(len(_SKIN_TONES))] * rng.uniform(0.93, 1.05) + rng.normal(0, 4, 3)
        lips = skin * np.array([0.62, 0.3, 0.34]) + np.array([60, 8, 22]) * rng.uniform(0.7, 1.1)
        hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] * rng.uniform(0.85, 1.15)
        clothing = rng.uniform(20, 235, 3)
        background_a = rng.uniform(40, 230, 3)
        background_b = np.clip(background_a + rng.normal(0, 45, 3), 0, 255)
        return cls(
            seed=seed,
            face_width=float(rng.uniform(0.92, 1.04)),
            face_height=float(rng.uniform(1.22, 1.38)),
            face_squareness=float(rng.uniform(2.0, 3.4)),
            chin_taper=float(rng.uniform(0.1, 0.4)),
            face_scale=float(rng.uniform(0.225, 0.245)),
            skin=_colour(skin),
            lips=_colour(lips),
            hair_style=HAIR_STYLES[int(rng.integers(len(HAIR_STYLES)))],
            hair=_colour(hair),
            eye_colour=_colour(_EYE_COLOURS[rng.integers(len(_EYE_COLOURS))] * rng.uniform(0.8, 1.2)),
            eye_size=float(rng.uniform(0.85, 1.2)),
            eye_spacing=float(rng.uniform(0.36, 0.44)),
            brow_thickness=float(rng.uniform(0.04, 0.08)),
            glasses=GLASSES[int(rng.choice(3, p=[0.6, 0.2, 0.2]))],
            glasses_colour=_colour(rng.uniform(0, 120, 3)),
            earrings=bool(rng.random() < 0.25),
            clothing=_colour(clothing),
            collar=_colour(np.where(clothing.mean() > 128, clothing * 0.6, clothing + 80)),
            background=(_colour(background_a), _colour(background_b)),
            background_pattern=int(rng.integers(3)),
        )


@dataclass
class FrameParams:
    """One frame's pose and face. Mouth: opening in [0, 1], width/rounding in [-1, 1], teeth in [0, 1].

    blink: 0 open .. 1 closed. expression: the five EXPRESSION_COMPONENTS in [-1, 1]. head_yaw/pitch/roll: the
    rendered pose in [-1, 1] (see *_RANGE_DEG; the expression's head components are already included). sway: head
    and body offset (dx, dy) in face units.
    """

    mouth_opening: float = 0.0
    mouth_width: float = 0.0
    mouth_rounding: float = 0.0
    teeth: float = 0.0
    blink: float = 0.0
    expression: np.ndarray = field(default_factory=lambda: np.zeros(len(EXPRESSION_COMPONENTS), np.float32))
    head_yaw: float = 0.0
    head_pitch: float = 0.0
    head_roll: float = 0.0
    sway: tuple[float, float] = (0.0, 0.0)

    def expression_value(self, name: str) -> float:
        return float(self.expression[EXPRESSION_COMPONENTS.index(name)])


@dataclass(frozen=True)
class FrameGeometry:
    """Where things are in a rendered frame: boxes (x0, y0, x1, y1) in pixels."""

    face_box: tuple[float, float, float, float]
    mouth_box: tuple[float, float, float, float]


class _Pose:
    """Face units (x, y, depth) -> pixel coordinates for one frame."""

    def __init__(self, identity: Identity, params: FrameParams, size: int) -> None:
        self.scale = identity.face_scale * size
        yaw = np.radians(params.head_yaw * YAW_RANGE_DEG)
        pitch = np.radians(params.head_pitch * PITCH_RANGE_DEG)
        roll = np.radians(params.head_roll * ROLL_RANGE_DEG)
        self.turn = np.array([np.sin(yaw), -np.sin(pitch)]) * 0.55
        self.squash = np.array([np.cos(yaw) ** 0.5, np.cos(pitch) ** 0.5])
        self.rotation = np.array([[np.cos(roll), -np.sin(roll)], [np.sin(roll), np.cos(roll)]])
        self.neck = np.array([0.0, 1.5])
        self.centre = np.array([size * 0.5, size * 0.5]) + np.asarray(params.sway) * self.scale

    def points(self, xy: np.ndarray, depth: float) -> np.ndarray:
        """(N, 2) face units at `depth` -> (N, 2) float pixels."""
        moved = np.asarray(xy, np.float64) * self.squash + self.turn * depth
        rotated = (moved - self.neck) @ self.rotation.T + self.neck
        return rotated * self.scale + self.centre

    def length(self, value: float) -> float:
        return value * self.scale


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * _ONE).astype(np.int32)


def _fill(image: np.ndarray, points: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [_fixed(points)], colour, cv2.LINE_AA, _SHIFT)


def _polyline(image: np.ndarray, points: np.ndarray, colour, thickness: float, closed: bool = False) -> None:
    cv2.polylines(image, [_fixed(points)], closed, colour, max(1, int(round(thickness))), cv2.LINE_AA, _SHIFT)


def _ellipse_points(cx: float, cy: float, rx: float, ry: float, n: int = 40, start=0.0, stop=2 * np.pi) -> np.ndarray:
    t = np.linspace(start, stop, n)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


def _face_outline(identity: Identity, n: int = 72) -> np.ndarray:
    """(n, 2) superellipse face outline with a tapered chin, face units."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    e = 2.0 / identity.face_squareness
    x = identity.face_width * np.sign(c) * np.abs(c) ** e
    y = identity.face_height * np.sign(s) * np.abs(s) ** e
    x = x * (1.0 - identity.chin_taper * np.clip(y / identity.face_height, 0, 1) ** 2)
    return np.stack([x, y], axis=1)


@functools.lru_cache(maxsize=64)
def _background(identity: Identity, size: int) -> np.ndarray:
    """(size, size, 3) uint8 backdrop: vertical gradient plus the identity's pattern."""
    top, bottom = (np.array(c, np.float64) for c in identity.background)
    ramp = np.linspace(0, 1, size)[:, None, None]
    image = np.ascontiguousarray(np.broadcast_to(top * (1 - ramp) + bottom * ramp, (size, size, 3)).astype(np.uint8))
    rng = np.random.default_rng(identity.seed)
    accent = _colour((top + bottom) / 2 + rng.normal(0, 25, 3))
    if identity.background_pattern == 1:
        for _ in range(6):
            centre = rng.uniform(0, size, 2)
            cv2.circle(image, tuple(_fixed(centre)), int(rng.uniform(0.05, 0.15) * size * _ONE), accent, -1,
                       cv2.LINE_AA, _SHIFT)
    elif identity.background_pattern == 2:
        step = size / 8
        for k in range(0, 9, 2):
            x = k * step
            _fill(image, np.array([[x, 0], [x + step * 0.6, 0], [x + step * 0.6 - size * 0.2, size],
                                   [x - size * 0.2, size]]), accent)
    image.flags.writeable = False
    return image


def _draw_body(image: np.ndarray, identity: Identity, pose: _Pose, size: int) -> None:
    body_centre = np.array([pose.centre[0] * 0.3 + size * 0.35, size * 1.1 + (pose.centre[1] - size * 0.5) * 0.3])
    neck = pose.points(np.array([[-0.38, 0.6], [0.38, 0.6], [0.42, 2.2], [-0.42, 2.2]]), 0.0)
    shade = _colour(np.array(identity.skin) * 0.82)
    _fill(image, neck, shade)
    shoulders = _ellipse_points(body_centre[0], body_centre[1], size * 0.46, size * 0.3, start=np.pi, stop=2 * np.pi)
    shoulders = np.vstack([shoulders, [[body_centre[0] + size * 0.46, size], [body_centre[0] - size * 0.46, size]]])
    _fill(image, shoulders, identity.clothing)
    collar_top = body_centre[1] - size * 0.3
    collar = np.array([[body_centre[0] - size * 0.12, collar_top + 2], [body_centre[0], collar_top + size * 0.12],
                       [body_centre[0] + size * 0.12, collar_top + 2]])
    _polyline(image, collar, identity.collar, size / 64)


def _draw_hair_back(image: np.ndarray, identity: Identity, pose: _Pose) -> None:
    w, h = identity.face_width, identity.face_height
    if identity.hair_style == "long":
        back = np.vstack([_ellipse_points(0, -0.1, w * 1.22, h * 1.1, start=np.pi, stop=2 * np.pi),
                          [[w * 1.3, 1.7], [-w * 1.3, 1.7]]])
        _fill(image, pose.points(back, -0.3), identity.hair)
    elif identity.hair_style == "bun":
        _fill(image, pose.points(_ellipse_points(0, -h - 0.25, 0.45, 0.4), -0.2), identity.hair)


def _draw_hair_front(image: np.ndarray, identity: Identity, pose: _Pose) -> None:
    w, h = identity.face_width, identity.face_height
    style = identity.hair_style
    if style == "bald":
        return
    cap = _ellipse_points(0, -0.25, w * 1.1, h * 0.95, start=np.pi, stop=2 * np.pi, n=36)
    if style == "spiky":
        tips = cap[::3] * np.array([1.15, 1.0]) + np.array([0, -0.22])
        cap = np.vstack([np.stack([cap[::3], tips], 1).reshape(-1, 2), cap[-1:]])
    fringe_depth = {"short": -0.45, "long": -0.35, "bun": -0.5, "spiky": -0.5, "curly": -0.4}[style]
    fringe = np.array([[w * 1.08, -0.25], [w * 0.5, fringe_depth], [0.0, fringe_depth + 0.06],
                       [-w * 0.6, fringe_depth - 0.04], [-w * 1.08, -0.25]])
    _fill(image, pose.points(np.vstack([cap, fringe]), 0.4), identity.hair)
    if style == "curly":
        for angle in np.linspace(np.pi * 1.05, np.pi * 1.95, 9):
            centre = np.array([[w * 1.05 * np.cos(angle), -0.25 + h * 0.95 * np.sin(angle)]])
            pixel = pose.points(centre, 0.4)[0]
            cv2.circle(image, tuple(_fixed(pixel)), int(pose.length(0.2) * _ONE), identity.hair, -1, cv2.LINE_AA,
                       _SHIFT)


def _draw_eye(image: np.ndarray, identity: Identity, pose: _Pose, params: FrameParams, side: int) -> None:
    cx, cy = side * identity.eye_spacing, -0.12
    rx, ry = 0.17 * identity.eye_size, 0.12 * identity.eye_size
    openness = (1.0 - params.blink) * float(np.clip(0.75 + 0.25 * params.expression_value("eye_open"), 0.3, 1.0))
    _fill(image, pose.points(_ellipse_points(cx, cy, rx, ry), 1.0), (250, 250, 248))
    iris = pose.points(np.array([[cx, cy + 0.01]]), 1.1)[0]
    cv2.circle(image, tuple(_fixed(iris)), int(pose.length(0.085 * identity.eye_size) * _ONE), identity.eye_colour,
               -1, cv2.LINE_AA, _SHIFT)
    cv2.circle(image, tuple(_fixed(iris)), int(pose.length(0.04 * identity.eye_size) * _ONE), (15, 15, 20), -1,
               cv2.LINE_AA, _SHIFT)
    lid_y = cy - ry + 2 * ry * (1.0 - openness)  # upper lid edge; the lower lid stays
    upper = np.vstack([_ellipse_points(cx, cy, rx * 1.25, ry * 1.35, start=np.pi, stop=2 * np.pi, n=20),
                       [[cx + rx * 1.25, lid_y], [cx - rx * 1.25, lid_y]]])
    upper[:, 1] = np.minimum(upper[:, 1], cy + ry * 0.98)
    _fill(image, pose.points(upper, 1.0), identity.skin)
    lower = np.vstack([_ellipse_points(cx, cy, rx * 1.25, ry * 1.35, start=0, stop=np.pi, n=20),
                       [[cx - rx * 1.25, cy + ry * 0.75], [cx + rx * 1.25, cy + ry * 0.75]]])
    _fill(image, pose.points(lower, 1.0), identity.skin)
    lash = np.array([[cx - rx * 1.05, min(lid_y, cy + ry * 0.7) + 0.01], [cx, min(lid_y, cy + ry * 0.7)],
                     [cx + rx * 1.05, min(lid_y, cy + ry * 0.7) + 0.01]])
    _polyline(image, pose.points(lash, 1.0), (40, 30, 30), pose.length(0.025))


def _draw_brows(image: np.ndarray, identity: Identity, pose: _Pose, params: FrameParams) -> None:
    lift = 0.1 * params.expression_value("brow")
    for side in (-1, 1):
        cx = side * identity.eye_spacing
        y = -0.36 - lift
        brow = np.array([[cx - side * 0.2, y + 0.04], [cx, y - 0.03], [cx + side * 0.2, y + 0.02 - 0.5 * lift]])
        _polyline(image, pose.points(brow, 1.0), _colour(np.array(identity.hair) * 0.8), pose.length(
            identity.brow_thickness))


def mouth_outline(params: FrameParams) -> tuple[np.ndarray, np.ndarray]:
    """Outer lip contour (2n, 2) and interior contour (2n, 2) in face units, centred on MOUTH_CENTRE."""
    half_width = MOUTH_HALF_WIDTH * (1.0 + 0.22 * params.mouth_width - 0.3 * params.mouth_rounding)
    half_open = 0.5 * MOUTH_MAX_OPENING * params.mouth_opening
    smile = params.expression_value("smile")
    x = np.linspace(-1, 1, 15)
    corner_lift = -0.09 * smile * x**2  # corners up for a smile
    bulge = 1 - x**2
    upper_inner = -half_open * bulge ** (0.7 - 0.3 * params.mouth_rounding) + corner_lift
    lower_inner = half_open * bulge ** (0.7 - 0.3 * params.mouth_rounding) + corner_lift
    upper_outer = upper_inner - LIP_THICKNESS * bulge**0.5 * (1 - 0.3 * np.abs(x))
    lower_outer = lower_inner + LIP_THICKNESS * 1.2 * bulge**0.5
    mx, my = MOUTH_CENTRE
    xs = mx + half_width * x
    outer = np.vstack([np.stack([xs, my + upper_outer], 1), np.stack([xs, my + lower_outer], 1)[::-1]])
    inner = np.vstack([np.stack([xs, my + upper_inner], 1), np.stack([xs, my + lower_inner], 1)[::-1]])
    return outer, inner


def _draw_mouth(image: np.ndarray, identity: Identity, pose: _Pose, params: FrameParams) -> None:
    outer, inner = mouth_outline(params)
    _fill(image, pose.points(outer, 1.0), identity.lips)
    if params.mouth_opening * MOUTH_MAX_OPENING > 0.012:
        _fill(image, pose.points(inner, 1.0), (70, 20, 30))
        if params.teeth > 0.05:
            n = len(inner) // 2
            upper = inner[:n]
            height = min(0.06 * params.teeth, 0.5 * MOUTH_MAX_OPENING * params.mouth_opening + 0.01)
            teeth = np.vstack([upper[2:-2], (upper[2:-2] + [0, height])[::-1]])
            _fill(image, pose.points(teeth, 1.0), (238, 236, 228))
    else:
        seam = inner[: len(inner) // 2]
        _polyline(image, pose.points(seam, 1.0), _colour(np.array(identity.lips) * 0.6), pose.length(0.018))


def _draw_glasses(image: np.ndarray, identity: Identity, pose: _Pose) -> None:
    thickness = pose.length(0.035)
    for side in (-1, 1):
        cx = side * identity.eye_spacing
        if identity.glasses == "round":
            frame = _ellipse_points(cx, -0.12, 0.25, 0.21)
        else:
            frame = np.array([[cx - 0.26, -0.3], [cx + 0.26, -0.3], [cx + 0.24, 0.05], [cx - 0.24, 0.05]])
        _polyline(image, pose.points(frame, 1.05), identity.glasses_colour, thickness, closed=True)
    bridge = np.array([[-identity.eye_spacing + 0.25, -0.15], [0, -0.19], [identity.eye_spacing - 0.25, -0.15]])
    _polyline(image, pose.points(bridge, 1.1), identity.glasses_colour, thickness)


def render_frame(identity: Identity, params: FrameParams, size: int = 256) -> tuple[np.ndarray, FrameGeometry]:
    """Draw one frame: uint8 (size, size, 3) RGB, and where the face and mouth are in it."""
    image = _background(identity, size).copy()
    pose = _Pose(identity, params, size)
    _draw_body(image, identity, pose, size)
    _draw_hair_back(image, identity, pose)
    outline = _face_outline(identity)
    for side in (-1, 1):  # ears
        ear = pose.points(np.array([[side * identity.face_width * 0.98, 0.05]]), 0.0)[0]
        cv2.ellipse(image, (tuple(_fixed(ear))), (int(pose.length(0.14) * _ONE), int(pose.length(0.24) * _ONE)), 0,
                    0, 360, _colour(np.array(identity.skin) * 0.92), -1, cv2.LINE_AA, _SHIFT)
        if identity.earrings:
            ring = pose.points(np.array([[side * identity.face_width * 1.0, 0.33]]), 0.0)[0]
            cv2.circle(image, tuple(_fixed(ring)), int(pose.length(0.06) * _ONE), (230, 200, 60), -1, cv2.LINE_AA,
                       _SHIFT)
    face = pose.points(outline, 0.5)
    _fill(image, face, identity.skin)
    _draw_hair_front(image, identity, pose)
    blush = _colour(np.array(identity.skin) * 0.93 + np.array([18, 0, 0]))
    for side in (-1, 1):
        cheek = pose.points(np.array([[side * 0.55, 0.3]]), 0.8)[0]
        cv2.ellipse(image, tuple(_fixed(cheek)), (int(pose.length(0.15) * _ONE), int(pose.length(0.08) * _ONE)), 0, 0,
                    360, blush, -1, cv2.LINE_AA, _SHIFT)
        _draw_eye(image, identity, pose, params, side)
    _draw_brows(image, identity, pose, params)
    nose = np.array([[0.02, -0.02], [0.08, 0.24], [-0.04, 0.28]])
    _polyline(image, pose.points(nose, 1.3), _colour(np.array(identity.skin) * 0.72), pose.length(0.03))
    _draw_mouth(image, identity, pose, params)
    if identity.glasses != "none":
        _draw_glasses(image, identity, pose)
    return image, FrameGeometry(face_box=_box(face), mouth_box=mouth_box(identity, params, size))


def _box(points: np.ndarray) -> tuple[float, float, float, float]:
    return (float(points[:, 0].min()), float(points[:, 1].min()), float(points[:, 0].max()), float(points[:, 1].max()))


def mouth_box(identity: Identity, params: FrameParams, size: int) -> tuple[float, float, float, float]:
    """Pixel box (x0, y0, x1, y1) that holds the mouth at any opening and shape for this pose (not the opening).

    Its size depends only on the face scale, never on the pose, so that measurements relative to it do not
    change when the head rolls or turns.
    """
    pose = _Pose(identity, params, size)
    mx, my = MOUTH_CENTRE
    top = 0.5 * MOUTH_MAX_OPENING + LIP_THICKNESS + 0.16
    bottom = 0.5 * MOUTH_MAX_OPENING + 1.2 * LIP_THICKNESS + 0.2
    centre_x, centre_y = pose.points(np.array([[mx, my]]), 1.0)[0]
    half_width = MOUTH_HALF_WIDTH * 1.35 * pose.scale
    return (float(centre_x - half_width), float(centre_y - top * pose.scale), float(centre_x + half_width),
            float(centre_y + bottom * pose.scale))
