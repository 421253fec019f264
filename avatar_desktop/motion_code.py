"""The motion code: what the photo path generates per video frame, and what the photo renderer draws.

One float32 vector of `MOTION_DIM` components per frame (units in docs/DATA.md, "The motion code"). The synthetic
records hold most of it already (`motion_code_from_record`), so the data, the motion generator and the photo renderer
share one vocabulary. The expression sliders act as exact offsets on the code (`slider_offsets`): the generator
produces the motion without them and the engine adds them, so a slider does what it says at once.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, State

# name -> (low, high): the range a component may take (the renderer clips to it).
MOTION_COMPONENTS: dict[str, tuple[float, float]] = {
    "mouth_open": (0.0, 1.0),  # jaw and lips apart: 0 lips together (also a photo's parted ones) .. 1 wide ("ah")
    "mouth_width": (-1.0, 1.0),  # -1 narrow .. 1 spread
    "mouth_round": (-1.0, 1.0),  # -1 stretched .. 1 rounded and protruded ("oo")
    "teeth": (0.0, 1.0),  # teeth shown where the lips part
    "lip_press": (0.0, 1.0),  # lips pressed together (p, b, m)
    "upper_lip_raise": (0.0, 1.0),  # upper lip lifted off the teeth (f, v, th)
    "blink_left": (-0.3, 1.0),  # the subject's left eye: 0 as in the photo, 1 closed, < 0 wider
    "blink_right": (-0.3, 1.0),
    "gaze_x": (-1.0, 1.0),  # irises towards the subject's left (+) .. right (-), 1 = 0.35 eye widths
    "gaze_y": (-1.0, 1.0),  # irises up (+) .. down (-), 1 = 0.35 eye heights
    "brow": (-1.0, 1.0),  # brows lowered (-) .. raised (+)
    "smile": (-1.0, 1.0),  # mouth corners down (-) .. up and out (+)
    "head_yaw": (-1.0, 1.0),  # 1 = 25 degrees, turning to the subject's left
    "head_pitch": (-1.0, 1.0),  # 1 = 20 degrees, chin up
    "head_roll": (-1.0, 1.0),  # 1 = 15 degrees, clockwise in the image
    "head_x": (-0.3, 0.3),  # head translation in face widths, + to the image's right
    "head_y": (-0.3, 0.3),  # head translation in face widths, + down
}
MOTION_NAMES: tuple[str, ...] = tuple(MOTION_COMPONENTS)
MOTION_DIM = len(MOTION_NAMES)
MOTION_INDEX: dict[str, int] = {name: index for index, name in enumerate(MOTION_NAMES)}
MOTION_LOW = np.array([low for low, _ in MOTION_COMPONENTS.values()], np.float32)
MOTION_HIGH = np.array([high for _, high in MOTION_COMPONENTS.values()], np.float32)

# slider -> [(motion component, code units per slider unit)]. The head sliders match the synthetic renderer's
# (0.6 x slider, drawn_face.expression_pose); eye_open opens the lids by lowering the blink.
SLIDER_OFFSETS: dict[str, list[tuple[str, float]]] = {
    "smile": [("smile", 1.0)],
    "brow": [("brow", 1.0)],
    "eye_open": [("blink_left", -0.3), ("blink_right", -0.3)],
    "head_yaw": [("head_yaw", 0.6)],
    "head_pitch": [("head_pitch", 0.6)],
}
assert set(SLIDER_OFFSETS) == set(EXPRESSION_COMPONENTS)


def _slider_matrix() -> np.ndarray:
    matrix = np.zeros((len(EXPRESSION_COMPONENTS), MOTION_DIM), np.float32)
    for slider, targets in SLIDER_OFFSETS.items():
        for component, gain in targets:
            matrix[EXPRESSION_COMPONENTS.index(slider), MOTION_INDEX[component]] = gain
    return matrix


SLIDER_MATRIX = _slider_matrix()  # (E, D): offsets = sliders @ SLIDER_MATRIX


def slider_offsets(sliders: np.ndarray) -> np.ndarray:
    """Slider values (..., E) in EXPRESSION_COMPONENTS order, in [-1, 1] -> code offsets (..., D)."""
    return np.asarray(sliders, np.float32) @ SLIDER_MATRIX


def slider_array(values: Mapping[str, float] | None) -> np.ndarray:
    """Named sliders (missing ones 0) -> float32 (E,) in EXPRESSION_COMPONENTS order."""
    values = values or {}
    return np.array([float(values.get(name, 0.0)) for name in EXPRESSION_COMPONENTS], np.float32)


def clip_code(code: np.ndarray) -> np.ndarray:
    """Clip a code (..., D) to each component's range."""
    return np.clip(code, MOTION_LOW, MOTION_HIGH).astype(np.float32)


def neutral_code(frames: int = 1) -> np.ndarray:
    """(frames, D) zeros: the face as in the photo, with the lips together."""
    return np.zeros((frames, MOTION_DIM), np.float32)


def motion_code_from_record(record: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic clip's record (record.npz arrays, T frames) -> (code (T, D), sliders (T, E)).

    The code is everything the frame shows; the sliders are the part of the clip's expression that a user's
    sliders would set (the record's expression minus the attentive look of listening, which is behaviour the
    generator must learn). Lip press is 1 on p/b/m frames of speech; upper-lip raise follows the teeth visemes
    (f, v, th); the synthetic characters have no gaze (0).
    """
    from avatar_desktop.data.speech import Viseme
    from avatar_desktop.data.timeline import attentive_look

    frames = len(record["state"])
    code = np.zeros((frames, MOTION_DIM), np.float32)
    speaking = np.asarray(record["state"]) == int(State.SPEAKING)
    viseme = np.asarray(record["viseme"])
    code[:, MOTION_INDEX["mouth_open"]] = record["mouth_open"]
    code[:, MOTION_INDEX["mouth_width"]] = record["mouth_shape"][:, 0]
    code[:, MOTION_INDEX["mouth_round"]] = record["mouth_shape"][:, 1]
    code[:, MOTION_INDEX["teeth"]] = record["mouth_shape"][:, 2]
    code[:, MOTION_INDEX["lip_press"]] = speaking & (viseme == int(Viseme.CLOSED))
    raise_visemes = [int(Viseme.TEETH), int(Viseme.DENTAL)]
    code[:, MOTION_INDEX["upper_lip_raise"]] = 0.6 * (speaking & np.isin(viseme, raise_visemes))
    expression = np.asarray(record["expression"], np.float32)
    listening = (np.asarray(record["state"]) == int(State.LISTENING)).astype(np.float32)
    sliders = np.clip(expression - attentive_look(listening), -1, 1)
    eye_open = expression[:, EXPRESSION_COMPONENTS.index("eye_open")]
    code[:, MOTION_INDEX["blink_left"]] = record["blink"] - 0.3 * eye_open
    code[:, MOTION_INDEX["blink_right"]] = code[:, MOTION_INDEX["blink_left"]]
    code[:, MOTION_INDEX["brow"]] = expression[:, EXPRESSION_COMPONENTS.index("brow")]
    code[:, MOTION_INDEX["smile"]] = expression[:, EXPRESSION_COMPONENTS.index("smile")]
    code[:, MOTION_INDEX["head_yaw"] : MOTION_INDEX["head_roll"] + 1] = record["head_pose"]
    code[:, MOTION_INDEX["head_x"] : MOTION_INDEX["head_y"] + 1] = record["sway"]
    return clip_code(np.nan_to_num(code)), sliders.astype(np.float32)
