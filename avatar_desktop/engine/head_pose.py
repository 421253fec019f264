"""The head_yaw / head_pitch sliders as a re-posing warp of the generated frames.

None of the tiny preset's one-step students learnt to turn the head (MODEL_CARD.md: they drew a moving head as a
cross-fade of two, or did not move it). Turning a head by a few degrees mostly slides its front (eyes, nose, mouth)
across the frame while its outline moves half as far, what lies behind the head (long hair, the back of the head)
moves the other way and the background stays. The warp does that: every pixel moves by the turn times a depth that
is 1 at the face centre, about 1/2 on an ellipse of the face's size, dips to about -0.45 at 1.5 face radii and fades
to 0 beyond. The dip's size and place were fitted to the renderer on 60 characters (seeds 0-59) and checked on 100
others (seeds 1000-1099), at 256 px: the warped neutral face moves along the renderer's own +-1 difference by 0.72
(yaw) and 0.81 (pitch) of it on average, at least 0.20 / 0.36 on every character; without the dip long-haired
characters moved the wrong way (down to -0.39).
The face is taken where the portrait framing puts it (centred, FACE_HALF_WIDTH of the frame), as in the bundled
characters and the synthetic data; the angles per slider unit are those the training data renders
(data/timeline.expression_pose, data/synthetic._Pose).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, HEAD_SLIDER_INDICES
from avatar_desktop.data.synthetic import PITCH_RANGE_DEG, YAW_RANGE_DEG
from avatar_desktop.data.timeline import expression_pose

FACE_HALF_WIDTH = 0.235
"""The face's half-width as a fraction of the frame side (the framing of the bundled portraits)."""
FACE_ASPECT = 1.3
"""Face half-height over half-width."""
FRONT_DEPTH = 0.55
"""How far the front of the face moves per unit of sin(angle), in face half-widths."""
BACK_DEPTH, BACK_RADIUS, BACK_WIDTH = 0.5, 1.5, 0.3
"""The dip of the depth behind the head: its size, and its centre and width in face radii."""


def head_shift(yaw_slider: float, pitch_slider: float) -> tuple[float, float]:
    """Slider values in [-1, 1] -> how far the front of the face moves (dx, dy), in face half-widths (y down)."""
    sliders = np.zeros(len(EXPRESSION_COMPONENTS))
    sliders[list(HEAD_SLIDER_INDICES)] = yaw_slider, pitch_slider
    yaw, pitch = expression_pose(sliders)
    return (FRONT_DEPTH * float(np.sin(np.radians(yaw * YAW_RANGE_DEG))),
            -FRONT_DEPTH * float(np.sin(np.radians(pitch * PITCH_RANGE_DEG))))


@functools.lru_cache(maxsize=8)
def _depth(size: int) -> np.ndarray:
    """(size, size) float32 depth of each pixel: 1 at the face centre, about 1/2 on the face ellipse, negative
    behind the head (around BACK_RADIUS face radii), ~0 far outside."""
    unit = FACE_HALF_WIDTH * size
    centre = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    radius = np.sqrt(((x - centre) / unit) ** 2 + ((y - centre) / (unit * FACE_ASPECT)) ** 2)
    behind = BACK_DEPTH * np.exp(-(((radius - BACK_RADIUS) / BACK_WIDTH) ** 2))
    return (1.0 / (1.0 + radius**4) - behind).astype(np.float32)


@functools.lru_cache(maxsize=4)
def _source_maps(size: int, dx: float, dy: float) -> tuple[np.ndarray, np.ndarray]:
    """Where each output pixel p of a (size, size) frame reads the input, for a face-front shift (dx, dy) in face
    half-widths: p - shift * depth(p - shift * depth(p)), one fixed-point step of inverting the forward move.
    Two float32 (size, size) maps (x, y) for cv2.remap."""
    depth = _depth(size)
    unit = FACE_HALF_WIDTH * size
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    first_x, first_y = x - dx * unit * depth, y - dy * unit * depth
    depth_there = cv2.remap(depth, first_x, first_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return x - dx * unit * depth_there, y - dy * unit * depth_there


def repose(frames: np.ndarray, yaw_slider: float, pitch_slider: float) -> np.ndarray:
    """Re-pose uint8 (T, H, W, 3) square frames by the head sliders (in [-1, 1]), edges replicated. Bicubic: bilinear
    softens the lips enough that the eval's mouth measurer reads more closed mouths as open (MODEL_CARD.md).
    Returns a new array, or `frames` itself when both sliders are 0."""
    dx, dy = head_shift(yaw_slider, pitch_slider)
    if dx == 0 and dy == 0:
        return frames
    size = frames.shape[1]
    if frames.shape[2] != size:
        raise ValueError(f"repose expects square frames, got {frames.shape[1]}x{frames.shape[2]}")
    map_x, map_y = _source_maps(size, dx, dy)
    return np.stack([cv2.remap(frame, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
                     for frame in frames])
