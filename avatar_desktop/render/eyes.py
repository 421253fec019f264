"""The eyes: irises that move with gaze inside the eye outline, and closing lids of the lid's own skin.

The warp already closes the lids (the lid skin above stretches down over the squashed eye). From a blink of 0.2 (in
fully by 0.55) the lid is painted from the open lid down to the closing lid's edge: the 0.035 fw of skin above it
reflected down (its texture, continuous at the top), a little darker towards the lashes, a faint crease, and a lash
line. Gaze moves the iris: inside the moved eye outline the frame shows the photo's eye with the iris painted out
(sclera, inpainted once per portrait) and, over it, the photo's visible iris shifted by the gaze.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_desktop.face import landmarks as lm
from avatar_desktop.motion_code import MOTION_INDEX

_EYES = (("blink_right", lm.RIGHT_EYE, lm.RIGHT_EYE_UPPER), ("blink_left", lm.LEFT_EYE, lm.LEFT_EYE_UPPER))


class EyePainter:
    """Moves the irises and draws lash lines.

    photo: uint8 (H, W, 3) at the output size; points float32 (468, 3) and irises float32 (2, 5, 2), the neutral
    mesh at that size; face_width in pixels.
    """

    def __init__(self, photo: np.ndarray, points: np.ndarray, irises: np.ndarray, face_width: float):
        self.face_width = face_width
        self.irises = np.asarray(irises, np.float32)
        height, width = photo.shape[:2]
        xy = points[:, :2]
        self.photo = photo
        self.without_iris = photo.copy()
        self.iris_alpha = np.zeros((height, width), np.float32)  # the photo's visible iris, soft edged
        self.lash = np.median(photo[self._ring_pixels(xy, lm.RIGHT_EYE_UPPER + lm.LEFT_EYE_UPPER)], 0) * 0.45
        for eye, (_, outline, _) in enumerate(_EYES):
            centre, edge = self.irises[eye, 0], self.irises[eye, 1:]
            radius = float(np.linalg.norm(edge - centre, axis=1).mean())
            box = self._box(xy[list(outline)], pad=int(radius) + 4, size=(width, height))
            x0, y0, x1, y1 = box
            disk = np.zeros((y1 - y0, x1 - x0), np.uint8)
            cv2.circle(disk, tuple(int(round(v)) for v in (centre - [x0, y0]) * 16), int(radius * 16 + 8), 255, -1,
                       cv2.LINE_AA, 4)
            eye_mask = np.zeros_like(disk)
            cv2.fillPoly(eye_mask, [np.round((xy[list(outline)] - [x0, y0]) * 16).astype(np.int32)], 255,
                         cv2.LINE_AA, 4)
            self.iris_alpha[y0:y1, x0:x1] = (disk.astype(np.float32) / 255) * (eye_mask.astype(np.float32) / 255)
            # the sclera where the iris was: the eye's own bright white, a little darker under the upper lid
            crop = photo[y0:y1, x0:x1].astype(np.float32)
            grown = cv2.dilate(disk, np.ones((5, 5), np.uint8))
            white = crop[(eye_mask > 128) & (grown < 128)]
            if len(white) >= 4:
                white = white[white.mean(1) >= np.percentile(white.mean(1), 75)]
            sclera = np.median(white, 0) if len(white) else np.array([225, 220, 215], np.float32)
            inside = (eye_mask.astype(np.float32) / 255)[..., None]
            filled = np.clip(crop * inside + sclera * (1 - inside), 0, 255).astype(np.uint8)
            self.without_iris[y0:y1, x0:x1] = cv2.inpaint(filled, grown, 3, cv2.INPAINT_TELEA)

    @staticmethod
    def _ring_pixels(xy: np.ndarray, indices: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        points = np.round(xy[list(indices)]).astype(int)
        return points[:, 1], points[:, 0]

    @staticmethod
    def _box(points: np.ndarray, *, pad: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
        x0, y0 = np.floor(points.min(0)).astype(int) - pad
        x1, y1 = np.ceil(points.max(0)).astype(int) + pad
        return max(x0, 0), max(y0, 0), min(x1, size[0]), min(y1, size[1])

    def paint(self, frame: np.ndarray, source_map: np.ndarray, moved: np.ndarray, moved_irises: np.ndarray,
              code: np.ndarray, *, offset: tuple[int, int], open_points: np.ndarray | None = None) -> None:
        """Draw into frame uint8 (h, w, 3) in place. source_map float32 (h, w, 2): the photo pixel of each frame
        pixel; moved (468, 3), moved_irises (2, 5, 2) output pixels; offset (x0, y0) of the frame in the output;
        open_points (468, 3): the same frame's mesh with the eyes open (needed when a blink is above 0.2)."""
        xy = moved[:, :2] - np.asarray(offset, np.float32)
        height, width = frame.shape[:2]
        for eye, (blink_name, outline, upper) in enumerate(_EYES):
            extent = xy[list(outline)]
            if open_points is not None:  # the open lid too: a closing lid is painted from there down
                extent = np.concatenate([extent, open_points[list(upper), :2] - offset - [0, 0.03 * self.face_width]])
            x0, y0, x1, y1 = self._box(extent, pad=4, size=(width, height))
            if x1 - x0 < 3 or y1 - y0 < 3:
                continue
            region = frame[y0:y1, x0:x1]
            # where the iris went: the shift of its centre, undone in the photo (the map's own move taken out)
            centre = moved_irises[eye, 0] - offset
            row, column = int(np.clip(centre[1], y0, y1 - 1)), int(np.clip(centre[0], x0, x1 - 1))
            shift = source_map[row, column] - self.irises[eye, 0]
            weight = float(np.clip(np.linalg.norm(shift) / 1.0, 0, 1))
            if weight > 0:
                sub_map = source_map[y0:y1, x0:x1]
                eye_mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
                cv2.fillPoly(eye_mask, [np.round((xy[list(outline)] - [x0, y0]) * 16).astype(np.int32)], 255,
                             cv2.LINE_AA, 4)
                sclera = cv2.remap(self.without_iris, sub_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                iris_map = sub_map - shift
                iris = cv2.remap(self.photo, iris_map, None, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
                iris_alpha = cv2.remap(self.iris_alpha, iris_map, None, cv2.INTER_LINEAR)[..., None]
                drawn = sclera * (1 - iris_alpha) + iris * iris_alpha
                alpha = eye_mask.astype(np.float32)[..., None] / 255 * weight
                region[:] = np.clip(region * (1 - alpha) + drawn * alpha + 0.5, 0, 255).astype(np.uint8)
            closing = float(np.clip((code[MOTION_INDEX[blink_name]] - 0.2) / 0.35, 0, 1))
            if closing > 0 and open_points is not None:
                lid = xy[list(upper)] - [x0, y0]
                opened = open_points[list(upper), :2] - [offset[0] + x0, offset[1] + y0]
                middle = np.sin(np.linspace(0, np.pi, len(lid)))[:, None]  # 0 at the corners
                lowered = lid + [0, 0.012 * self.face_width] * middle
                opened = opened - [0, 0.02 * self.face_width] * middle
                cover = np.zeros(region.shape[:2], np.uint8)
                cv2.fillPoly(cover, [np.round(np.concatenate([opened, lowered[::-1]]) * 16).astype(np.int32)], 255,
                             cv2.LINE_AA, 4)
                cover = cv2.GaussianBlur(cover, (0, 0), max(0.7, 0.008 * self.face_width))
                alpha = cover.astype(np.float32)[..., None] * (closing * closing * (3 - 2 * closing) / 255)
                # the lid's own skin: the skin above the cover, reflected down over it to the closing lid's edge
                columns = np.arange(x1 - x0, dtype=np.float32)
                top = np.interp(columns, opened[:, 0], opened[:, 1])  # (w,) the cover's top edge
                edge = np.maximum(np.interp(columns, lid[:, 0], lid[:, 1]), top + 1)  # (w,) the lash line
                band = 0.035 * self.face_width  # of skin above the cover
                rows = np.arange(y1 - y0, dtype=np.float32)[:, None]
                along = np.clip((rows - top) / (edge - top), 0, 1)  # (h, w) 0 at the cover's top, 1 at the lashes
                source_y = (top - along * band).astype(np.float32)
                source_x = np.broadcast_to(columns, source_y.shape).astype(np.float32)
                skin = cv2.remap(np.ascontiguousarray(region), source_x, np.ascontiguousarray(source_y),
                                 cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT).astype(np.float32)
                # a little darker towards the lashes, and a faint crease where the lid folds under the brow
                below_edge = rows - edge
                crease = rows - (top + 0.006 * self.face_width)
                shading = (1 - 0.1 * np.exp(-np.square(below_edge / max(1.0, 0.02 * self.face_width))) *
                           (along > 0.5)) * (1 - 0.06 * np.exp(-np.square(crease / max(0.7, 0.004 * self.face_width))))
                skin *= shading[..., None]
                region[:] = np.clip(region * (1 - alpha) + skin * alpha + 0.5, 0, 255).astype(np.uint8)
                thickness = max(1, int(round(0.008 * self.face_width)))
                lash = np.zeros(region.shape[:2], np.uint8)
                cv2.polylines(lash, [np.round(lid * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, 4)
                lash = cv2.GaussianBlur(lash, (0, 0), max(0.5, 0.002 * self.face_width))
                alpha = lash.astype(np.float32)[..., None] * (0.8 * closing / 255)
                region[:] = np.clip(region * (1 - alpha) + self.lash * alpha + 0.5, 0, 255).astype(np.uint8)
