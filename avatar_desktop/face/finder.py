"""Find and track the face mesh of a photo or video frame: BlazeFace, then MediaPipe's face mesh and iris models.

`find` runs the detector on the whole image (then on overlapping tiles if it finds nothing), takes the largest face,
cuts a square around it (1.5 x the box, rotated so the eyes are level) from the full-resolution image, runs the mesh
model on it, then again on the square the mesh itself gives (as MediaPipe's tracking does on the next frame) until
the mesh settles; then the iris model on a square around each eye. `track` skips the detector: the previous mesh
gives the square.
"""

from __future__ import annotations

import math

import numpy as np

from avatar_desktop.errors import InputFileError
from avatar_desktop.face.detector import Detection, FaceDetector, weighted_nms
from avatar_desktop.face.geometry import SquareRegion, apply
from avatar_desktop.face.landmarks import CHEEK_IMAGE_LEFT, CHEEK_IMAGE_RIGHT
from avatar_desktop.face.mesh import FaceMesh
from avatar_desktop.face.tflite import TFLiteModel

MIN_FACE_WIDTH = 64  # pixels, FaceMesh.width (cheek to cheek): below it a face is too small to animate well
GOOD_FACE_WIDTH = 128  # pixels: what the messages recommend
MIN_MESH_SCORE = 0.5  # the mesh model's own face score; below it the square holds no face
MESH_REGION_SCALE = 1.5  # the mesh model's square: this many times the face box (or the mesh's extent)
IRIS_REGION_SCALE = 2.3  # the iris model's square: this many times the eye's corner-to-corner width
MAX_REFINEMENTS = 4  # find: at most this many mesh runs after the first, each on the square the last one gives
SETTLED = 0.002  # find: the mesh has settled when its points move less than this many face widths on average
TILED_ABOVE = 1024  # pixels on the long side: a larger image is also searched in tiles when whole it shows no face
TILE_SIZE = 1024

# mesh points: eye corners (outer, inner) of the subject's right eye (image left) and left eye (image right)
RIGHT_EYE_CORNERS = (33, 133)
LEFT_EYE_CORNERS = (362, 263)
EYE_LINE = (33, 263)  # image-left to image-right outer eye corners: the angle that levels the face


class NoFaceError(InputFileError):
    """No face in an image that needs one."""

    def __init__(self, source: str = "portrait"):
        super().__init__(f"no face found in {source}: use a photo with the face visible and at least "
                         f"{GOOD_FACE_WIDTH} px wide")


class FaceTooSmallError(InputFileError):
    """The face is there but too small to animate."""

    def __init__(self, width: float, source: str = "portrait"):
        super().__init__(f"the face in {source} is {width:.0f} px wide: at least {MIN_FACE_WIDTH} px is needed "
                         f"({GOOD_FACE_WIDTH} px or more looks best); use a larger photo or one taken closer")


class FaceFinder:
    """Holds the LiteRT interpreters; reuse one for many frames. Not thread-safe: one thread at a time."""

    def __init__(self, *, num_threads: int = 1):
        self._full_range = FaceDetector("face_detection_full_range.tflite", num_threads=num_threads)
        self._short_range = FaceDetector("face_detection_short_range.tflite", num_threads=num_threads)
        self._mesh_model = TFLiteModel("face_landmark.tflite", num_threads=num_threads)
        self._iris_model = TFLiteModel("iris_landmark.tflite", num_threads=num_threads)
        self.closed = False

    def __enter__(self) -> FaceFinder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Drop the interpreters; the finder cannot be used afterwards."""
        self._full_range = self._short_range = self._mesh_model = self._iris_model = None
        self.closed = True

    def find(self, image: np.ndarray) -> FaceMesh | None:
        """uint8 (H, W, 3) RGB -> the mesh of the largest face, or None when there is none."""
        self._check_open()
        _check_image(image)
        faces = self.detect(image)
        if not faces:
            return None
        face = max(faces, key=lambda detection: detection.area)
        left_eye, right_eye = face.keypoints[0], face.keypoints[1]  # image left, image right
        dx, dy = right_eye - left_eye
        x0, y0, x1, y1 = face.box
        region = SquareRegion(center=((x0 + x1) / 2, (y0 + y1) / 2), size=max(x1 - x0, y1 - y0) * MESH_REGION_SCALE,
                              angle=math.atan2(dy, dx))
        points, score = self._mesh(image, region)
        for _ in range(MAX_REFINEMENTS):  # the square the mesh itself gives, until the mesh settles
            if score < MIN_MESH_SCORE:
                return None
            previous = points
            points, score = self._mesh(image, _region_of(points))
            if np.linalg.norm(points[:, :2] - previous[:, :2], axis=1).mean() < SETTLED * _face_width(points):
                break
        if score < MIN_MESH_SCORE:
            return None
        return FaceMesh(points=points, irises=self._irises(image, points), box=face.box, score=face.score,
                        faces_found=len(faces), image_size=(image.shape[1], image.shape[0]))

    def track(self, image: np.ndarray, previous: FaceMesh) -> FaceMesh | None:
        """uint8 (H, W, 3) RGB -> the mesh in `previous`'s region (no detector), or None when no face is there.

        The image may differ in size from `previous`'s (the same picture resized). The box follows the mesh's
        centre and width; the score is the mesh model's face score.
        """
        self._check_open()
        _check_image(image)
        height, width = image.shape[:2]
        if previous.image_size != (width, height):
            previous = previous.scaled(width / previous.image_size[0])
        points, score = self._mesh(image, _region_of(previous.points))
        if score < MIN_MESH_SCORE:
            return None
        scale = _face_width(points) / max(_face_width(previous.points), 1e-6)
        centre, previous_centre = points[:, :2].mean(axis=0), previous.points[:, :2].mean(axis=0)
        box = ((previous.box.reshape(2, 2) - previous_centre) * scale + centre).reshape(4).astype(np.float32)
        return FaceMesh(points=points, irises=self._irises(image, points), box=box, score=score,
                        faces_found=1, image_size=(width, height))

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("this FaceFinder is closed: make a new one")

    def detect(self, image: np.ndarray) -> list[Detection]:
        """uint8 (H, W, 3) RGB -> the faces the detectors find, best first (image pixels)."""
        height, width = image.shape[:2]
        whole = SquareRegion(center=(width / 2, height / 2), size=max(width, height))
        faces = self._full_range.detect(image, whole) or self._short_range.detect(image, whole)
        if faces or max(width, height) <= TILED_ABOVE:
            return faces
        found = [face for tile in _tiles(width, height) for face in self._full_range.detect(image, tile)]
        if not found:
            return []
        return weighted_nms(np.stack([face.box for face in found]), np.stack([face.keypoints for face in found]),
                            np.array([face.score for face in found]))

    def _mesh(self, image: np.ndarray, region: SquareRegion) -> tuple[np.ndarray, float]:
        """The mesh model on `region` -> float32 (468, 3) image pixels (z scaled as x), its face score in [0, 1]."""
        size = self._mesh_model.input_width
        crop = region.crop(image, size)  # (192, 192, 3)
        raw_points, raw_score = self._mesh_model(crop.astype(np.float32) / 255.0)  # input in [0, 1]
        crop_points = raw_points.reshape(-1, 3)
        points = np.empty_like(crop_points)
        points[:, :2] = apply(region.to_image(size), crop_points[:, :2])
        points[:, 2] = crop_points[:, 2] * (region.size / size)
        return points.astype(np.float32), float(1.0 / (1.0 + np.exp(-float(raw_score.reshape(-1)[0]))))

    def _irises(self, image: np.ndarray, points: np.ndarray) -> np.ndarray:
        """float32 (468, 3) mesh -> float32 (2, 5, 2): each eye's iris centre and 4 edge points, image pixels."""
        size = self._iris_model.input_width
        irises = []
        for corners, flip in ((RIGHT_EYE_CORNERS, False), (LEFT_EYE_CORNERS, True)):  # the model sees a right eye
            start, end = points[list(corners), :2].astype(np.float64)
            dx, dy = end - start
            region = SquareRegion(center=tuple((start + end) / 2), size=math.hypot(dx, dy) * IRIS_REGION_SCALE,
                                  angle=math.atan2(dy, dx))
            crop = region.crop(image, size, flip=flip)  # (64, 64, 3)
            _, raw_iris = self._iris_model(crop.astype(np.float32) / 255.0)  # input in [0, 1]
            irises.append(apply(region.to_image(size, flip=flip), raw_iris.reshape(5, 3)[:, :2]))
        return np.stack(irises).astype(np.float32)


def _region_of(points: np.ndarray) -> SquareRegion:
    """The mesh model's square for a face whose mesh is `points` (468, 3): its extent, eyes level, x 1.5."""
    start, end = points[list(EYE_LINE), :2].astype(np.float64)
    angle = math.atan2(end[1] - start[1], end[0] - start[0])
    cos, sin = math.cos(angle), math.sin(angle)
    upright = points[:, :2] @ np.array([[cos, -sin], [sin, cos]])  # (468, 2): rotated by -angle
    low, high = upright.min(axis=0), upright.max(axis=0)
    centre = np.array([[cos, -sin], [sin, cos]]) @ ((low + high) / 2)
    return SquareRegion(center=(float(centre[0]), float(centre[1])), size=float((high - low).max()) * MESH_REGION_SCALE,
                        angle=angle)


def _face_width(points: np.ndarray) -> float:
    """float (468, 3) mesh -> its width in pixels, as FaceMesh.width."""
    return float(np.linalg.norm(points[CHEEK_IMAGE_RIGHT, :2] - points[CHEEK_IMAGE_LEFT, :2]))


def _tiles(width: int, height: int) -> list[SquareRegion]:
    """Overlapping upright squares (a quarter overlap) that cover a width x height image."""
    size = min(TILE_SIZE, max(width, height) // 2)
    stride = size * 3 // 4

    def starts(length: int) -> list[int]:
        if length <= size:
            return [0]
        count = math.ceil((length - size) / stride) + 1
        return [round(i * (length - size) / (count - 1)) for i in range(count)]

    return [SquareRegion(center=(x + size / 2, y + size / 2), size=size) for y in starts(height) for x in starts(width)]


def _check_image(image: np.ndarray) -> None:
    if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3):
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise InputFileError(f"expected an RGB image as uint8 (H, W, 3), got {dtype} {shape}: convert it first")
    if min(image.shape[:2]) < 16:
        raise InputFileError(f"the image is {image.shape[1]} x {image.shape[0]} px: too small to hold a face")


def find_face(image: np.ndarray, *, source: str = "portrait") -> FaceMesh:
    """uint8 (H, W, 3) RGB of any size -> the mesh of the largest face.

    Raises NoFaceError or FaceTooSmallError (naming `source`). Thread-safe: each call makes its own finder (about
    20-40 ms of its 30-100 ms), so the GUI and the worker share nothing.
    """
    _check_image(image)
    with FaceFinder() as finder:
        mesh = finder.find(image)
    if mesh is None:
        raise NoFaceError(source)
    if mesh.width < MIN_FACE_WIDTH:
        raise FaceTooSmallError(mesh.width, source)
    return mesh
