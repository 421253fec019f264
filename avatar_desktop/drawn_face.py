"""The drawn characters' face, as far as more than the renderer needs it: where the mouth is, the head's rotation
ranges, and the head pose the head sliders ask for. The synthetic renderer (data/synthetic.py) and its timelines
draw by these; the engine's slider warp (engine/slider_warp.py) moves a generated drawn face by them.

Positions are in face units (the face's half-width is 1, y points down, the face centre is the origin).
"""

from __future__ import annotations

import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS

MOUTH_CENTRE = (0.0, 0.58)  # face units
MOUTH_HALF_WIDTH = 0.30

YAW_RANGE_DEG, PITCH_RANGE_DEG, ROLL_RANGE_DEG = 25.0, 20.0, 15.0
"""Head pose is recorded normalised to [-1, 1]; these are the angles that +-1 stands for."""


def expression_pose(expression: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The head yaw and pitch (normalised, as rendered) that the head_yaw / head_pitch sliders ask for:
    expression (..., 5) -> two arrays (...)."""
    names = list(EXPRESSION_COMPONENTS)
    return 0.6 * expression[..., names.index("head_yaw")], 0.6 * expression[..., names.index("head_pitch")]
