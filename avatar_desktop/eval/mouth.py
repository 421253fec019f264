"""Mouth opening measured from pixels alone, and its linear calibration on the renderer's ground truth.

The measurer looks inside a box known to hold the mouth (the clip's `mouth_box`: where the mouth is, not how
open it is). It takes the skin colour from the box border, marks pixels that differ from it (lips, the dark
mouth interior, teeth) with a soft threshold, finds the mouth's central columns from that mask, and measures the
tallest run of marked pixels down each: the height of the lip stack, which grows linearly with the opening.
Other features that enter the box (the nose tip) form separate, shorter runs and are ignored. A linear map fitted on ground-truth frames turns it into [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

_SOFT_LOW, _SOFT_HIGH = 10.0, 30.0  # RGB distance from the skin colour: 0 below LOW, 1 above HIGH
_CENTRAL_FRACTION = 0.3  # share of the box width around its centre that is summed


def measure_mouth_raw(frames: np.ndarray, mouth_boxes: np.ndarray) -> np.ndarray:
    """frames uint8 (T, H, W, 3), mouth_boxes (T, 4) pixels -> lip-stack height (T,) as a fraction of box height."""
    if len(frames) != len(mouth_boxes):
        raise ValueError(f"{len(frames)} frames but {len(mouth_boxes)} mouth boxes")
    heights = np.zeros(len(frames), np.float64)
    height, width = frames.shape[1:3]
    for index, (frame, box) in enumerate(zip(frames, mouth_boxes)):
        x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
        x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
        if x1 - x0 < 4 or y1 - y0 < 4:
            continue
        crop = cv2.GaussianBlur(frame[y0:y1, x0:x1].astype(np.float32), (3, 3), 0)
        border = np.concatenate([crop[0], crop[-1], crop[:, 0], crop[:, -1]])
        skin = np.median(border, axis=0)
        distance = np.linalg.norm(crop - skin, axis=2)
        mask = np.clip((distance - _SOFT_LOW) / (_SOFT_HIGH - _SOFT_LOW), 0.0, 1.0)
        heights[index] = _lip_stack_height(mask) / (y1 - y0)
    return heights


def _lip_stack_height(mask: np.ndarray) -> float:
    """Soft mask (h, w) of non-skin pixels -> mean height (pixels) of the tallest non-skin run in the central
    columns of the mouth, found as the mask's centre of mass in the middle rows (the mouth can sit off-centre)."""
    h, w = mask.shape
    middle = mask[h // 4: h - h // 4]
    mass = middle.sum(axis=0)
    centre = float((mass * np.arange(w)).sum() / mass.sum()) if mass.sum() > 0 else w / 2
    half = max(1, int(w * _CENTRAL_FRACTION / 2))
    columns = range(max(0, int(centre) - half), min(w, int(centre) + half))
    heights = []
    for column in columns:
        values = mask[:, column]
        inside = np.concatenate([[False], values > 0.5, [False]])
        edges = np.flatnonzero(np.diff(inside.astype(np.int8)))
        if len(edges) == 0:
            heights.append(float(values.sum()) if values.max() > 0 else 0.0)
            continue
        starts, ends = edges[::2], edges[1::2]
        longest = int(np.argmax(ends - starts))
        a, b = max(0, starts[longest] - 1), min(h, ends[longest] + 1)  # one pixel of soft edge each side
        heights.append(float(values[a:b].sum()))
    return float(np.mean(heights)) if heights else 0.0


@dataclass(frozen=True)
class MouthCalibration:
    """opening = slope * raw + intercept, fitted on ground truth; `fit_r` is the Pearson r of that fit."""

    slope: float
    intercept: float
    fit_r: float

    @classmethod
    def fit(cls, raw: np.ndarray, opening: np.ndarray) -> "MouthCalibration":
        """Least squares on (raw, ground-truth opening) pairs, both (N,)."""
        raw, opening = np.asarray(raw, np.float64), np.asarray(opening, np.float64)
        if len(raw) < 2 or np.std(raw) == 0 or np.std(opening) == 0:
            raise ValueError("calibration needs ground truth with the mouth both open and closed")
        slope, intercept = np.polyfit(raw, opening, 1)
        return cls(float(slope), float(intercept), float(np.corrcoef(raw, opening)[0, 1]))

    def apply(self, raw: np.ndarray) -> np.ndarray:
        return self.slope * np.asarray(raw, np.float64) + self.intercept


def measure_mouth(frames: np.ndarray, mouth_boxes: np.ndarray, calibration: MouthCalibration) -> np.ndarray:
    """Calibrated mouth opening (T,) of frames uint8 (T, H, W, 3) (about [0, 1], not clipped)."""
    return calibration.apply(measure_mouth_raw(frames, mouth_boxes))
