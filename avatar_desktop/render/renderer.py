"""The photo renderer: a portrait and its face mesh, moved by motion codes, one frame per code.

Per portrait (`PhotoRenderer.__init__`): the photo at the output size, the deformation bases, the triangulation and
head region of the warp, the mouth's and eyes' colours. Per frame (`render`): the moved mesh, the warp's map of the
head region, one `cv2.remap`, the mouth interior and the eyes; everything outside `head_mask` is the photo's own
pixels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from avatar_desktop.errors import AvatarError
from avatar_desktop.motion_code import MOTION_DIM, MOTION_INDEX, neutral_code
from avatar_desktop.render.deform import FaceDeformer
from avatar_desktop.render.eyes import EyePainter
from avatar_desktop.render.mouth import MouthPainter
from avatar_desktop.render.warp import HeadWarp

if TYPE_CHECKING:
    from avatar_desktop.face import FaceMesh

MAX_OUTPUT_SIDE = 1920
CAMERA_SIZE = (1280, 720)


def _even(size: float) -> int:
    """The nearest even size (halves rounded up), at least 2."""
    return max(2, int(size / 2 + 0.5) * 2)


def default_output_size(photo_size: tuple[int, int], *, max_side: int = MAX_OUTPUT_SIDE) -> tuple[int, int]:
    """(width, height) of a photo -> the output size: the same, scaled down to max_side on the long side, even."""
    width, height = photo_size
    scale = min(1.0, max_side / max(width, height))
    return _even(width * scale), _even(height * scale)


class PhotoRenderer:
    """Renders a portrait moved by motion codes.

    photo: uint8 (H, W, 3) RGB; face: the FaceMesh found on that photo; output_size (width, height), default the
    photo's size capped at 1920 on the long side, even sizes.
    """

    def __init__(self, photo: np.ndarray, face: "FaceMesh", *, output_size: tuple[int, int] | None = None):
        photo = np.asarray(photo)
        if photo.dtype != np.uint8 or photo.ndim != 3 or photo.shape[2] != 3:
            raise AvatarError(f"the renderer needs an RGB photo, uint8 (H, W, 3); got {photo.dtype} {photo.shape}")
        height, width = photo.shape[:2]
        if tuple(face.image_size) != (width, height):
            raise AvatarError(f"the face mesh was found in a {face.image_size[0]}x{face.image_size[1]} image but the "
                              f"photo is {width}x{height}: find the face on this photo")
        self.frame_size = tuple(int(v) for v in (output_size or default_output_size((width, height))))
        out_width, out_height = self.frame_size
        if out_width < 16 or out_height < 16:
            raise AvatarError(f"output size {out_width}x{out_height} is too small: use at least 16x16")
        scale_x, scale_y = out_width / width, out_height / height
        if (out_width, out_height) == (width, height):
            self.neutral = np.ascontiguousarray(photo.copy())
        else:
            shrinking = scale_x * scale_y < 1
            self.neutral = cv2.resize(photo, self.frame_size, interpolation=cv2.INTER_AREA if shrinking
                                      else cv2.INTER_CUBIC)  # (H, W, 3)
        # pixel centres: x_out + 0.5 = (x + 0.5) * scale
        scale = np.array([scale_x, scale_y, (scale_x + scale_y) / 2], np.float32)
        offset = np.array([0.5 * scale_x - 0.5, 0.5 * scale_y - 0.5, 0.0], np.float32)
        points = np.asarray(face.points, np.float32) * scale + offset  # (468, 3)
        irises = np.asarray(face.irises, np.float32) * scale[:2] + offset[:2]  # (2, 5, 2)
        self.deformer = FaceDeformer(points, irises)
        face_width = self.deformer.face_width
        # the triangulation is made on a slightly opened mouth so that a closed one tears apart cleanly
        opened = neutral_code()[0]
        opened[MOTION_INDEX["mouth_open"]] = 0.3
        self.warp = HeadWarp(points, face_width, self.frame_size,
                             topology_points=self.deformer.move(opened).points)
        self.head_mask = self.warp.head_mask  # (H, W) bool
        self.mouth = MouthPainter(self.neutral, points, face_width, self.deformer.axes)
        self.eyes = EyePainter(self.neutral, points, irises, face_width)

    def render(self, code: np.ndarray) -> np.ndarray:
        """code float32 (D,) -> frame uint8 (H, W, 3) RGB."""
        code = np.asarray(code, np.float32)
        if code.shape != (MOTION_DIM,):
            raise AvatarError(f"a motion code has {MOTION_DIM} components; got shape {code.shape}")
        code = np.nan_to_num(code)
        moved = self.deformer.move(code)
        source_map = self.warp.map(moved.points, moved.head_only)  # (h, w, 2)
        x0, y0, x1, y1 = self.warp.box
        region = cv2.remap(self.neutral, source_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        open_points = None
        if max(code[MOTION_INDEX["blink_left"]], code[MOTION_INDEX["blink_right"]]) > 0.2:
            eyes_open = code.copy()
            eyes_open[[MOTION_INDEX["blink_left"], MOTION_INDEX["blink_right"]]] = 0
            open_points = self.deformer.move(eyes_open).points
        self.eyes.paint(region, source_map, moved.points, moved.irises, code, offset=(x0, y0), open_points=open_points)
        self.mouth.paint(region, moved.points, code, offset=(x0, y0))
        frame = self.neutral.copy()
        frame[y0:y1, x0:x1] = region  # outside head_mask the warp is exactly the identity and nothing is painted
        return frame


def camera_frame_size(photo_size: tuple[int, int], camera_size: tuple[int, int] = CAMERA_SIZE) -> tuple[int, int]:
    """(width, height) of the photo fitted inside the camera frame without distortion, even sizes."""
    width, height = photo_size
    scale = min(camera_size[0] / width, camera_size[1] / height)
    fitted_width = min(camera_size[0], _even(width * scale))
    fitted_height = min(camera_size[1], _even(height * scale))
    return fitted_width, fitted_height


def fit_to_camera(frame: np.ndarray, camera_size: tuple[int, int] = CAMERA_SIZE) -> np.ndarray:
    """uint8 (H, W, 3) frame -> uint8 (camera height, camera width, 3): the frame scaled to fit inside, centred,
    the rest filled with a blurred, darkened copy of the frame scaled to cover the camera frame (no black bars)."""
    frame = np.asarray(frame)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise AvatarError(f"fit_to_camera needs a uint8 (H, W, 3) frame; got {frame.dtype} {frame.shape}")
    camera_width, camera_height = camera_size
    height, width = frame.shape[:2]
    fitted_width, fitted_height = camera_frame_size((width, height), camera_size)
    if (fitted_width, fitted_height) == (width, height) == (camera_width, camera_height):
        return frame.copy()
    cover = max(camera_width / width, camera_height / height)
    small = cv2.resize(frame, (max(1, int(width * cover / 8)), max(1, int(height * cover / 8))),
                       interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), 3)
    background = cv2.resize(small, (int(np.ceil(width * cover)), int(np.ceil(height * cover))),
                            interpolation=cv2.INTER_LINEAR)
    top = (background.shape[0] - camera_height) // 2
    left = (background.shape[1] - camera_width) // 2
    canvas = (background[top: top + camera_height, left: left + camera_width] * 0.45).astype(np.uint8)
    fitted = cv2.resize(frame, (fitted_width, fitted_height),
                        interpolation=cv2.INTER_AREA if fitted_width < width else cv2.INTER_LINEAR)
    x0, y0 = (camera_width - fitted_width) // 2, (camera_height - fitted_height) // 2
    canvas[y0: y0 + fitted_height, x0: x0 + fitted_width] = fitted
    return canvas
