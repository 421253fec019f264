"""BlazeFace (MediaPipe's face detector): SSD anchors, box decoding and weighted non-max suppression.

Each anchor regresses 16 values in input pixels: the box centre's offset from the anchor centre, the box width and
height, then six keypoints' offsets (the image-left eye, the image-right eye, nose tip, mouth centre, image-left ear,
image-right ear). The anchors are fixed-size (1 x 1): only their centres matter.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_desktop.face.geometry import SquareRegion, apply
from avatar_desktop.face.tflite import TFLiteModel

# model file -> its anchor layout: (stride in input pixels, anchors per feature-map cell) for each feature map
DETECTOR_LAYOUTS: dict[str, tuple[tuple[int, int], ...]] = {
    "face_detection_full_range.tflite": ((4, 1),),  # 192 x 192 input: one 48 x 48 map
    "face_detection_short_range.tflite": ((8, 2), (16, 6)),  # 128 x 128 input: 16 x 16 x 2 then 8 x 8 x 6
}
RAW_SCORE_LIMIT = 80.0  # logits are clipped here (MediaPipe clips at 100, which overflows float32's exp)
MIN_SCORE = 0.5
OVERLAP_SAME_FACE = 0.3  # intersection over union above which two detections are merged into one face


@dataclass(frozen=True)
class Detection:
    """One face: `box` float32 (4,) x0, y0, x1, y1 and `keypoints` float32 (6, 2) in image pixels; score in [0, 1]."""

    box: np.ndarray
    keypoints: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1]))


def ssd_anchors(input_size: int, layout: tuple[tuple[int, int], ...]) -> np.ndarray:
    """float32 (N, 2): anchor centres in [0, 1], feature map by feature map, row-major, `per_cell` copies each."""
    centres = []
    for stride, per_cell in layout:
        cells = input_size // stride
        y, x = np.mgrid[0:cells, 0:cells]
        grid = (np.stack([x, y], axis=-1).reshape(-1, 2) + 0.5) / cells  # (cells * cells, 2)
        centres.append(np.repeat(grid, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


class FaceDetector:
    """One BlazeFace model: `detect(image, region)` -> the faces in that square of the image, merged."""

    def __init__(self, file_name: str, *, num_threads: int = 1, min_score: float = MIN_SCORE):
        self._model = TFLiteModel(file_name, num_threads=num_threads)
        self.input_size = self._model.input_width
        self._anchors = ssd_anchors(self.input_size, DETECTOR_LAYOUTS[file_name])
        expected = (1, len(self._anchors), 16)
        if self._model.output_shapes[0] != expected:
            raise ValueError(f"{file_name}: regressor output {self._model.output_shapes[0]}, expected {expected}")
        self.min_score = min_score

    def detect(self, image: np.ndarray, region: SquareRegion) -> list[Detection]:
        """uint8 (H, W, 3) RGB and an upright square of it -> faces found there (image pixels), best first."""
        size = self.input_size
        crop = region.crop(image, size, border=cv2.BORDER_CONSTANT)  # (size, size, 3), black outside the image
        raw_boxes, raw_scores = self._model(crop.astype(np.float32) / 127.5 - 1.0)  # input in [-1, 1]
        logits = np.clip(raw_scores.reshape(-1), -RAW_SCORE_LIMIT, RAW_SCORE_LIMIT)
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = scores >= self.min_score
        if not keep.any():
            return []
        raw = raw_boxes.reshape(-1, 8, 2)[keep] / size  # (K, 8, 2): centre, size, 6 keypoints; input fractions
        anchors = self._anchors[keep][:, None]  # (K, 1, 2)
        centre, half = raw[:, :1] + anchors, raw[:, 1:2] / 2
        corners = np.concatenate([centre - half, centre + half, raw[:, 2:] + anchors], axis=1) * size  # (K, 8, 2)
        points = apply(region.to_image(size), corners)  # image pixels; the region is upright
        boxes = points[:, :2].reshape(-1, 4)
        return weighted_nms(boxes, points[:, 2:], scores[keep])


def weighted_nms(boxes: np.ndarray, keypoints: np.ndarray, scores: np.ndarray, *,
                 overlap: float = OVERLAP_SAME_FACE) -> list[Detection]:
    """(N, 4) boxes, (N, 6, 2) keypoints, (N,) scores -> one Detection per face, best first.

    The best remaining detection takes every other one that overlaps it by more than `overlap` (intersection over
    union); the face's box and keypoints are their score-weighted mean, its score the best one's.
    """
    values = np.concatenate([boxes, keypoints.reshape(len(boxes), -1)], axis=1).astype(np.float64)  # (N, 16)
    remaining = np.argsort(-scores)
    faces = []
    while len(remaining):
        best = remaining[0]
        same = iou(boxes[best], boxes[remaining]) > overlap
        same[0] = True
        members = remaining[same]
        weights = scores[members][:, None]
        merged = (values[members] * weights).sum(axis=0) / weights.sum()
        faces.append(Detection(box=merged[:4].astype(np.float32),
                               keypoints=merged[4:].reshape(-1, 2).astype(np.float32), score=float(scores[best])))
        remaining = remaining[~same]
    return faces


def iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """float (4,) and (N, 4) x0, y0, x1, y1 -> float (N,) intersection over union."""
    width = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    height = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = width * height
    area = lambda b: np.clip(b[..., 2] - b[..., 0], 0, None) * np.clip(b[..., 3] - b[..., 1], 0, None)  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)
