"""Rotated square regions of an image and their resampling to a model's input.

Coordinates are continuous pixels: pixel (i, j) of an image covers x in [j, j + 1) and y in [i, i + 1), so its
centre is (j + 0.5, i + 0.5) and mirroring an image of width W maps x to W - x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

# Resample straight from the image down to this many image pixels per crop pixel; shrink by area first beyond it.
MAX_DIRECT_SHRINK = 2.0


@dataclass(frozen=True)
class SquareRegion:
    """A square of `size` pixels centred on `center` (x, y), its crop x axis at `angle` radians from the image's."""

    center: tuple[float, float]
    size: float
    angle: float = 0.0

    def to_image(self, out_size: int, *, flip: bool = False) -> np.ndarray:
        """float64 (2, 3): crop pixels (of an `out_size` square crop, x mirrored if `flip`) -> image pixels."""
        scale = self.size / out_size
        cos, sin = np.cos(self.angle) * scale, np.sin(self.angle) * scale
        linear = np.array([[cos, -sin], [sin, cos]])
        if flip:
            linear = linear @ np.diag([-1.0, 1.0])
        offset = np.asarray(self.center) - linear @ np.full(2, out_size / 2)
        return np.hstack([linear, offset[:, None]])

    def to_crop(self, out_size: int, *, flip: bool = False) -> np.ndarray:
        """float64 (2, 3): image pixels -> crop pixels (the inverse of `to_image`)."""
        return cv2.invertAffineTransform(self.to_image(out_size, flip=flip))

    def crop(self, image: np.ndarray, out_size: int, *, flip: bool = False, border: int = cv2.BORDER_REPLICATE
             ) -> np.ndarray:
        """uint8 (H, W, 3) -> uint8 (out_size, out_size, 3): the region resampled from the full-resolution image."""
        to_crop = self.to_crop(out_size, flip=flip)
        shrink = self.size / out_size
        if shrink > MAX_DIRECT_SHRINK:
            image, to_crop = _area_shrunk(image, to_crop, self, factor=math.ceil(shrink / MAX_DIRECT_SHRINK))
        return cv2.warpAffine(image, _for_opencv(to_crop), (out_size, out_size), flags=cv2.INTER_LINEAR,
                              borderMode=border, borderValue=0)


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """float (2, 3) affine, float (..., 2) points -> float64 (..., 2)."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def _for_opencv(matrix: np.ndarray) -> np.ndarray:
    """An affine map in continuous pixels -> the same map between OpenCV's pixel-centre indices."""
    return np.hstack([matrix[:, :2], (matrix[:, 2] + matrix[:, :2].sum(axis=1) * 0.5 - 0.5)[:, None]])


def _area_shrunk(image: np.ndarray, to_crop: np.ndarray, region: SquareRegion, *, factor: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The part of `image` under `region`, shrunk by a whole `factor` with area averaging (OpenCV's fast case),
    and `to_crop` adjusted to it."""
    height, width = image.shape[:2]
    reach = region.size / np.sqrt(2)  # the rotated square's half diagonal
    x0, y0 = (max(0, int(np.floor(c - reach))) for c in region.center)
    x1, y1 = min(width, int(np.ceil(region.center[0] + reach))), min(height, int(np.ceil(region.center[1] + reach)))
    columns, rows = (x1 - x0) // factor, (y1 - y0) // factor  # whole blocks only
    if columns < 1 or rows < 1:
        return image, to_crop
    part = image[y0:y0 + rows * factor, x0:x0 + columns * factor]  # (rows * factor, columns * factor, 3)
    shrunk = cv2.resize(part, (columns, rows), interpolation=cv2.INTER_AREA)
    from_shrunk = np.array([[factor, 0.0, x0], [0.0, factor, y0]])  # shrunk pixels -> image pixels
    return shrunk, _compose(to_crop, from_shrunk)


def _compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """(2, 3) affines -> (2, 3): outer after inner."""
    return np.hstack([outer[:, :2] @ inner[:, :2], (outer[:, :2] @ inner[:, 2] + outer[:, 2])[:, None]])
