"""FaceMesh: MediaPipe's 468-point face mesh and the irises of one face, in the pixels of the image it was found in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_desktop.face.landmarks import CHEEK_IMAGE_LEFT, CHEEK_IMAGE_RIGHT


@dataclass(frozen=True)
class FaceMesh:
    """One face.

    points: float32 (468, 3): x, y in pixels of the image; z depth in the same pixel scale, MediaPipe's sign
        (smaller z = nearer the camera; about 0 at the face's centre).
    irises: float32 (2, 5, 2): per eye the iris centre then 4 points on its edge, pixels; [0] the subject's right eye
        (image left), [1] the subject's left eye (image right).
    box: float32 (4,): x0, y0, x1, y1 of the detector's face box, pixels.
    score: detector confidence in [0, 1] (after `FaceFinder.track`, the mesh model's face score).
    faces_found: how many faces the detector found (the mesh is of the largest).
    image_size: (width, height) of the image it was found in.
    """

    points: np.ndarray
    irises: np.ndarray
    box: np.ndarray
    score: float
    faces_found: int
    image_size: tuple[int, int]

    @property
    def width(self) -> float:
        """Face width in pixels: from mesh point 234 to 454 (the outline at eye height), in the image plane."""
        return float(np.linalg.norm(self.points[CHEEK_IMAGE_RIGHT, :2] - self.points[CHEEK_IMAGE_LEFT, :2]))

    def scaled(self, factor: float) -> FaceMesh:
        """The same face in the image resized by `factor` (image size rounded to whole pixels)."""
        width, height = self.image_size
        return FaceMesh(points=(self.points * factor).astype(np.float32),
                        irises=(self.irises * factor).astype(np.float32),
                        box=(self.box * factor).astype(np.float32), score=self.score, faces_found=self.faces_found,
                        image_size=(round(width * factor), round(height * factor)))
