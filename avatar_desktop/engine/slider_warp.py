"""The expression sliders as warps of the generated frames.

None of the tiny preset's one-step students learnt to act on their sliders (MODEL_CARD.md: smile moved by 2% of the
renderer's effect, brow and eye_open not at all, the head drawn as a cross-fade of two or not moved). The renderer
that defines the sliders (data/synthetic.py) moves parts of a drawn face, and a warp of the decoded frames moves
them as it does. Positions are in face units: the face is taken where the portrait framing puts it (centred, one
unit = FACE_HALF_WIDTH of the frame), as in the bundled characters and the synthetic data.

Face sliders (smile, brow, eye_open) move bands of pixels vertically, by the renderer's amounts at its places: smile
lifts the mouth's corners by 0.09 units x (x / mouth half-width)^2; brow lifts the brows by 0.1 units (their outer
ends by 0.15); eye_open lifts the upper lids by 0.06 units (half an eye's height). A band is drawn over what it
lands on, as the renderer draws brows, lids and lips over the face and hair, and the rows it leaves are filled by
stretching the face behind it.

Head sliders (head_yaw, head_pitch): turning a head by a few degrees mostly slides its front (eyes, nose, mouth)
across the frame while its outline moves half as far, what lies behind the head (long hair, the back of the head)
moves the other way and the background stays. Every pixel moves by the turn times a depth that is 1 at the face
centre, about 1/2 on an ellipse of the face's size, dips to about -0.45 at 1.5 face radii and fades to 0 beyond;
the angles per slider unit are those the training data renders (drawn_face.expression_pose). The face sliders
act first, on the face as the model draws it (facing the camera), then the head turns.

The shapes were fitted to the renderer on 60 characters (seeds 0-59: the head's depth dip by a search, the face
bands' sizes among a few variants) and checked on 100 others (seeds 1000-1099), at 256 px: warped by -1 and +1, the
neutral face moves along the renderer's own +-1 difference (the eval's expression gain, 1 = all of it) by 0.96
(smile), 0.93 (brow), 0.87 (eye_open), 0.71 (head_yaw) and 0.81 (head_pitch) on average, and by at least 0.93,
0.28, 0.69, 0.19 and 0.35 on every character. What a warp cannot do: show what a part uncovers (more of the eye as
a lid rises is the eye stretched), or move a part without what is drawn over it or touches it (raised brows take
the top of square glasses along, and the edge of a fringe that touches them).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, HEAD_SLIDER_INDICES
from avatar_desktop.drawn_face import MOUTH_CENTRE, MOUTH_HALF_WIDTH, PITCH_RANGE_DEG, YAW_RANGE_DEG, expression_pose

FACE_HALF_WIDTH = 0.235
"""One face unit (the face's half-width) as a fraction of the frame side (the framing of the bundled portraits)."""
FACE_ASPECT = 1.3
"""Face half-height over half-width."""
FRONT_DEPTH = 0.55
"""How far the front of the face moves per unit of sin(angle), in face units."""
BACK_DEPTH, BACK_RADIUS, BACK_WIDTH = 0.5, 1.5, 0.3
"""The dip of the depth behind the head: its size, and its centre and width in face radii."""

# The parts the face sliders move, as the renderer draws them (data/synthetic.py), in face units (y down). Each
# part is a band of rows that moves up or down as a whole, drawn over what it lands on, while the rows it leaves are
# filled by stretching the next *_RAMP units of the face behind it; a move fades out towards the band's ends in x.
BROW_X = 0.40
"""A brow's centre, |x| in face units."""
BROW_LINE = ((0.20, -0.32), (0.40, -0.39), (0.60, -0.34))
"""(|x|, y) of a brow's inner end, middle and outer end at brow 0."""
BROW_HALF, BROW_LIFT, BROW_RAMP = 0.045, 0.10, 0.08
"""Half the brow band's height; how far brow +1 lifts it (the outer end half as far again); the stretched skin."""
EYE_X = 0.40
"""An eye's centre, |x| in face units."""
LID_Y, LID_HALF, LID_LIFT = -0.18, 0.03, 0.06
"""The upper lid's edge (its lashes) at eye_open 0, half the band's height round it, how far eye_open +1 lifts it."""
LID_RAMP_BELOW, LID_RAMP_ABOVE = 0.12, 0.08
"""The eye stretched under a raised lid (down to the lower lid); the skin stretched over a lowered one."""
SMILE_HALF, SMILE_LIFT, SMILE_RAMP = 0.27, 0.09, 0.10
"""Half the mouth band's height (the lips wide open, and a margin); how far smile +1 lifts the mouth's corners
(by SMILE_LIFT (x / MOUTH_HALF_WIDTH)^2); the stretched skin."""
_BROW_ACROSS = (-0.34, -0.24, 0.24, 0.34)  # x from the brow's centre: (fades in, full, full, faded out)
_LID_ACROSS = (-0.32, -0.24, 0.24, 0.32)  # x from the eye's centre
_SMILE_FADE = (0.30, 0.45)  # |x|: full, faded out


def _ramp(t: np.ndarray, zero: float, one: float) -> np.ndarray:
    """0 at t = zero, 1 at t = one (either order), smoothstep between."""
    w = np.clip((t - zero) / (one - zero), 0.0, 1.0)
    return w * w * (3.0 - 2.0 * w)


def _plateau(t: np.ndarray, rise: float, top: float, top_end: float, fall: float) -> np.ndarray:
    """0 before `rise`, 1 from `top` to `top_end`, 0 after `fall`, smooth between."""
    return np.minimum(_ramp(t, rise, top), _ramp(t, fall, top_end))


@functools.lru_cache(maxsize=4)
def _face_units(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(size, size) float64 x and y of each pixel in face units from the frame centre (y down)."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    unit = FACE_HALF_WIDTH * size
    return (x - size / 2) / unit, (y - size / 2) / unit


def _moved_band(y: np.ndarray, top: np.ndarray, bottom: np.ndarray, lift: np.ndarray, ramp: float,
                ramp_behind: float | None = None) -> np.ndarray:
    """Where output rows y read their input (face units, arrays of one shape) when the band of rows [top, bottom]
    moves by `lift` (+ down) over what it lands on, and the rows it leaves stretch the `ramp` units behind it
    (`ramp_behind`, when given, for a band moving down)."""
    behind = ramp if ramp_behind is None else ramp_behind
    source = np.where((y >= top + lift) & (y <= bottom + lift), y - lift, y)
    rising = lift < 0
    start = np.where(rising, bottom + lift, top - behind)  # the output rows that show the stretched face
    length = np.where(rising, ramp - lift, behind + lift)
    along = (y - start) / np.maximum(length, 1e-9)
    stretched = np.where(rising, bottom + along * ramp, top - behind + along * behind)
    return np.where((along > 0) & (along < 1) & (lift != 0), stretched, source)


def _face_source_rows(size: int, values: dict[str, float]) -> np.ndarray:
    """(size, size) float32: the row each output pixel reads for the face sliders' values (the mouth, then the
    eyes, then the brows: the parts do not overlap)."""
    u, v = _face_units(size)
    y = v
    if values.get("smile"):
        across = np.minimum((u / MOUTH_HALF_WIDTH) ** 2, 1.0) * _ramp(np.abs(u), _SMILE_FADE[1], _SMILE_FADE[0])
        lift = -values["smile"] * SMILE_LIFT * across
        y = _moved_band(y, MOUTH_CENTRE[1] - SMILE_HALF, MOUTH_CENTRE[1] + SMILE_HALF, lift, SMILE_RAMP)
    outward = np.abs(u)  # x towards the cheek of either side
    if values.get("eye_open"):
        lift = -values["eye_open"] * LID_LIFT * _plateau(outward - EYE_X, *_LID_ACROSS)
        y = _moved_band(y, LID_Y - LID_HALF, LID_Y + LID_HALF, lift, LID_RAMP_BELOW, LID_RAMP_ABOVE)
    if values.get("brow"):
        line = np.interp(outward, *zip(*BROW_LINE))
        further = 1.0 + 0.5 * np.clip((outward - BROW_X) / (BROW_LINE[2][0] - BROW_X), 0.0, 1.0)
        lift = -values["brow"] * BROW_LIFT * further * _plateau(outward - BROW_X, *_BROW_ACROSS)
        y = _moved_band(y, line - BROW_HALF, line + BROW_HALF, lift, BROW_RAMP)
    return (y * FACE_HALF_WIDTH * size + size / 2).astype(np.float32)


def head_shift(yaw_slider: float, pitch_slider: float) -> tuple[float, float]:
    """Slider values in [-1, 1] -> how far the front of the face moves (dx, dy), in face units (y down)."""
    sliders = np.zeros(len(EXPRESSION_COMPONENTS))
    sliders[list(HEAD_SLIDER_INDICES)] = yaw_slider, pitch_slider
    yaw, pitch = expression_pose(sliders)
    return (FRONT_DEPTH * float(np.sin(np.radians(yaw * YAW_RANGE_DEG))),
            -FRONT_DEPTH * float(np.sin(np.radians(pitch * PITCH_RANGE_DEG))))


@functools.lru_cache(maxsize=8)
def _depth(size: int) -> np.ndarray:
    """(size, size) float32 depth of each pixel: 1 at the face centre, about 1/2 on the face ellipse, negative
    behind the head (around BACK_RADIUS face radii), ~0 far outside."""
    u, v = _face_units(size)
    radius = np.sqrt(u**2 + (v / FACE_ASPECT) ** 2)
    behind = BACK_DEPTH * np.exp(-(((radius - BACK_RADIUS) / BACK_WIDTH) ** 2))
    return (1.0 / (1.0 + radius**4) - behind).astype(np.float32)


def _head_source_maps(size: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel p of a (size, size) frame reads the input, for a face-front shift (dx, dy) in face
    units: p - shift * depth(p - shift * depth(p)), one fixed-point step of inverting the forward move.
    Two float32 (size, size) maps (x, y) for cv2.remap."""
    depth = _depth(size)
    unit = FACE_HALF_WIDTH * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    first_x, first_y = x - dx * unit * depth, y - dy * unit * depth
    depth_there = cv2.remap(depth, first_x, first_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return x - dx * unit * depth_there, y - dy * unit * depth_there


@functools.lru_cache(maxsize=8)
def _source_maps(size: int, sliders: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Two float32 (size, size) maps (x, y) for cv2.remap: the face sliders' move, then the head's turn."""
    face = {name: value for index, (name, value) in enumerate(zip(EXPRESSION_COMPONENTS, sliders))
            if value != 0 and index not in HEAD_SLIDER_INDICES}
    dx, dy = head_shift(*(sliders[index] for index in HEAD_SLIDER_INDICES))
    if dx == 0 and dy == 0:
        return np.tile(np.arange(size, dtype=np.float32), (size, 1)), _face_source_rows(size, face)
    map_x, map_y = _head_source_maps(size, dx, dy)
    if face:  # read the face-moved frame where the turn reads it
        map_y = cv2.remap(_face_source_rows(size, face), map_x, map_y, cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)
    return map_x, map_y


def warp(frames: np.ndarray, sliders: np.ndarray) -> np.ndarray:
    """Move uint8 (T, H, W, 3) square frames of a neutral face by the sliders (E,) in [-1, 1], in
    EXPRESSION_COMPONENTS order (0 for those not to warp), edges replicated. Bicubic: bilinear softens the lips
    enough that the eval's mouth measurer reads more closed mouths as open (MODEL_CARD.md).
    Returns a new array, or `frames` itself when every slider is 0."""
    values = tuple(float(value) for value in sliders)
    if not any(values):
        return frames
    size = frames.shape[1]
    if frames.shape[2] != size:
        raise ValueError(f"the slider warp expects square frames, got {frames.shape[1]}x{frames.shape[2]}")
    map_x, map_y = _source_maps(size, values)
    return np.stack([cv2.remap(frame, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                     for frame in frames])
