"""The mouth interior where the lips part: a shaded cavity, upper and lower teeth and a tongue, in the photo's colours.

Everything is drawn in a small box around the moved inner-lip outline. The interior fades in as the gap between the
inner lips grows beyond the photo's own gap (fully in at 0.03 face widths more), so the neutral code leaves the
photo's mouth untouched. Sizes in face widths (fw): upper teeth 0.03-0.05 fw tall (by `teeth`), at most 0.45 of the
gap; lower teeth up to 0.015 fw, at most 0.2 of the gap; the tongue a flat ellipse on the lower lip. A photo with
its lips apart (more than 0.02 fw) keeps its own mouth interior (its teeth), carried by the upper lip, over these.
"""

from __future__ import annotations

import cv2
import numpy as np

from avatar_desktop.face import landmarks as lm
from avatar_desktop.motion_code import MOTION_INDEX

OWN_INTERIOR_FW = 0.02  # a photo whose lips are this far apart (face widths) keeps its own teeth
FADE_IN_FW = 0.03  # extra gap (face widths) at which the synthesized interior is fully shown
_OFF_WHITE = np.array([236, 230, 218], np.float32)
_TONGUE = np.array([196, 104, 104], np.float32)
_TOOTH_EDGES = np.array([0.0, 0.045, 0.085, 0.115], np.float32)  # from the middle, face widths
_CAVITY = np.array([96, 34, 36], np.float32)
_CAVITY_BACK = np.array([26, 9, 10], np.float32)


def _median_colour(image: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    pixels = image[mask.astype(bool)]
    return np.median(pixels, 0).astype(np.float32) if len(pixels) >= 8 else fallback.astype(np.float32)


def _polygon_mask(shape: tuple[int, int], polygon: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(polygon * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    return mask


class MouthPainter:
    """Paints the mouth interior into rendered frames.

    photo: uint8 (H, W, 3) RGB at the output size; points: float32 (468, 3) the neutral mesh at that size;
    face_width in pixels; axes: float32 (2, 2), the face's unit u (across) and v (down) vectors.
    """

    def __init__(self, photo: np.ndarray, points: np.ndarray, face_width: float, axes: np.ndarray):
        self.face_width = face_width
        self.down = axes[1]
        xy = points[:, :2]
        self.photo_gap = float(np.dot(xy[14] - xy[13], self.down))
        height, width = photo.shape[:2]
        outer = _polygon_mask((height, width), xy[list(lm.LIPS_OUTER)])
        inner = _polygon_mask((height, width), xy[list(lm.LIPS_INNER)])
        skin = np.zeros((height, width), np.uint8)
        for cheek in (50, 280):  # the cheeks' middles
            cv2.circle(skin, tuple(int(v) for v in xy[cheek]), max(2, int(0.04 * face_width)), 1, -1)
        self.lip = _median_colour(photo, (outer > 128) & (inner < 128), np.array([170, 90, 90]))
        self.skin = _median_colour(photo, skin, np.array([200, 150, 130]))
        interior = photo[inner > 128].astype(np.float32)
        bright = interior[interior.mean(1) > max(150.0, np.percentile(interior.mean(1), 80))] if len(interior) else []
        shade = np.clip(self.skin.mean() / 170.0, 0.7, 1.05)
        self.teeth = np.median(bright, 0) if len(bright) >= 12 else (0.85 * _OFF_WHITE + 0.15 * self.skin) * shade
        self.cavity_front = (0.5 * self.lip * 0.4 + 0.5 * _CAVITY * shade).astype(np.float32)
        self.cavity_back = (_CAVITY_BACK * shade).astype(np.float32)
        self.tongue = (0.5 * _TONGUE + 0.5 * self.lip) * 0.8
        # the photo's own mouth interior (teeth a smiling photo shows), carried by the upper lip
        self.upper_lip = xy[list(lm.LIPS_INNER_UPPER)].astype(np.float32)  # (11, 2)
        ys, xs = np.nonzero(inner)
        self.photo_interior = None
        if self.photo_gap > OWN_INTERIOR_FW * face_width and len(xs) >= 12:
            x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
            self.photo_interior = photo[y0:y1, x0:x1].astype(np.float32)  # (h, w, 3)
            alpha = inner[y0:y1, x0:x1].astype(np.float32) / 255
            self.photo_interior_alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.5, 0.003 * face_width))  # (h, w)
            self.photo_interior_origin = np.array([x0, y0], np.float32)

    def paint(self, frame: np.ndarray, moved: np.ndarray, code: np.ndarray, *, offset: tuple[int, int]) -> None:
        """Draw into frame uint8 (h, w, 3) in place; moved float32 (468, 3) in output pixels; offset (x0, y0) of the
        frame's top-left corner in output pixels."""
        xy = moved[:, :2] - np.asarray(offset, np.float32)
        gap = float(np.dot(xy[14] - xy[13], self.down))
        fade = np.clip((gap - self.photo_gap) / (FADE_IN_FW * self.face_width), 0.0, 1.0)
        if fade <= 0.0 or gap <= 1.0:
            return
        fade = fade * fade * (3 - 2 * fade)
        outline = xy[list(lm.LIPS_INNER)]
        pad = 3
        x0, y0 = np.floor(outline.min(0)).astype(int) - pad
        x1, y1 = np.ceil(outline.max(0)).astype(int) + pad
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        local = xy - [x0, y0]
        shape = (y1 - y0, x1 - x0)
        fw = self.face_width
        inside = _polygon_mask(shape, local[list(lm.LIPS_INNER)])
        depth = cv2.distanceTransform((inside > 127).astype(np.uint8), cv2.DIST_L2, 3)
        depth_scale = max(float(depth.max()), 1.0)
        back = np.clip(depth / depth_scale, 0, 1)[..., None]
        interior = (1 - back) * self.cavity_front + back * self.cavity_back  # (h, w, 3) float
        canvas = np.zeros(shape, np.uint8)
        # the tongue lies on the lower lip, behind the lower teeth
        lower_middle = local[14]
        mouth_width = float(np.linalg.norm(local[308] - local[78]))
        centre = lower_middle + self.down * 0.05 * gap
        axes = (max(1, int(0.28 * mouth_width)), max(1, int(0.35 * gap)))
        angle = float(np.degrees(np.arctan2(self.down[0], self.down[1]) * -1))
        cv2.ellipse(canvas, (int(centre[0]), int(centre[1])), axes, angle, 0, 360, 255, -1, cv2.LINE_AA)
        tongue_alpha = cv2.GaussianBlur(canvas, (0, 0), max(0.6, 0.004 * fw)).astype(np.float32)[..., None] / 255
        tongue_shade = np.clip(0.35 + 0.6 * (1 - back), 0, 1)
        interior = interior * (1 - tongue_alpha) + self.tongue * tongue_shade * tongue_alpha
        teeth_amount = code[MOTION_INDEX["teeth"]]
        upper_height = min((0.03 + 0.02 * teeth_amount) * fw, 0.45 * gap)
        lower_height = min(0.015 * teeth_amount * fw, 0.2 * gap)
        columns = np.arange(shape[1], dtype=np.float32)
        for lip, height, tint, extent in ((lm.LIPS_INNER_UPPER, upper_height, 1.0, 0.8),
                                          (lm.LIPS_INNER_LOWER, -lower_height, 0.95, 0.45)):
            if abs(height) < 0.5:
                continue
            edge = local[list(lip[1:-1])]
            across = np.linspace(0, 1, len(edge))
            taper = np.sqrt(np.clip(1 - np.square((across - 0.5) / (0.5 * extent)), 0, 1))[:, None]
            tips = edge + self.down * height * taper
            shown = taper[:, 0] > 0
            edge, tips = edge[shown], tips[shown]
            canvas[:] = 0
            cv2.fillPoly(canvas, [np.round(np.concatenate([edge, tips[::-1]]) * 16).astype(np.int32)], 255,
                         cv2.LINE_AA, 4)
            alpha = cv2.GaussianBlur(canvas, (0, 0), max(0.5, 0.002 * fw)).astype(np.float32)[..., None] / 255
            # darker towards the corners (further back in the mouth), faint gaps between the front teeth
            middle_x = (local[lip[0], 0] + local[lip[-1], 0]) / 2
            half = max(abs(local[lip[-1], 0] - local[lip[0], 0]) / 2, 1.0)
            across_mouth = (columns - middle_x) / half
            side_shade = np.clip(1 - 0.6 * np.square(across_mouth), 0.35, 1)
            gaps = 1 - 0.18 * np.exp(-np.square((np.abs(columns - middle_x)[:, None] - _TOOTH_EDGES * fw)
                                                / max(0.6, 0.003 * fw))).sum(1)
            interior = interior * (1 - alpha) + self.teeth * tint * (side_shade * gaps)[None, :, None] * alpha
        if self.photo_interior is not None:
            similarity, _ = cv2.estimateAffinePartial2D(self.upper_lip, local[list(lm.LIPS_INNER_UPPER)])
            if similarity is not None:
                similarity[:, 2] += similarity[:, :2] @ self.photo_interior_origin
                own = cv2.warpAffine(self.photo_interior, similarity, shape[::-1], flags=cv2.INTER_LINEAR)
                own_alpha = cv2.warpAffine(self.photo_interior_alpha, similarity, shape[::-1],
                                           flags=cv2.INTER_LINEAR)[..., None]
                interior = interior * (1 - own_alpha) + own * own_alpha
        # the lips' inner shadow
        shadow = 1 - 0.35 * np.exp(-depth / max(0.015 * fw, 1.0))[..., None]
        interior *= shadow
        alpha = cv2.GaussianBlur(inside, (0, 0), max(0.5, 0.003 * fw)).astype(np.float32)[..., None] / 255
        alpha *= fade
        region = frame[y0:y1, x0:x1]
        region[:] = np.clip(region * (1 - alpha) + interior * alpha + 0.5, 0, 255).astype(np.uint8)
