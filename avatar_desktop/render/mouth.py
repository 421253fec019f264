"""The mouth interior where the lips part, in the photo's colours, and the line where a photo's parted lips meet.

Everything is drawn in a small box around the moved inner-lip outline, in the mouth's own frame (u across from its
middle, v down, pixels). The interior fades in as the gap between the inner lips grows beyond the photo's own gap
(fully in at 0.03 face widths more), so the neutral code leaves the photo's mouth untouched. Sizes in face widths
(fw): the cavity is darkest high up at the back; the tongue a dark arch on the lower lip, up to 0.045 fw and 0.3 of
the gap; upper teeth 0.028-0.05 fw tall (by `teeth`), at most 0.45 of the gap, with rounded edges, gaps between
them, shaded towards the corners; lower teeth a band of at most 0.012 fw behind the lower lip from a 0.09 fw gap.
A thin shadow lies under the upper lip and the lower lip's inner edge turns from lip to cavity over 1-2 px. A photo
with its lips apart (more than 0.02 fw) keeps its own mouth interior (its teeth), carried by the upper lip, over
these; when such lips are closed (below the photo's gap) a thin dark line marks where they meet.
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

    def _paint_contact_line(self, region: np.ndarray, local: np.ndarray, strength: float) -> None:
        """Where a photo's parted lips are closed: a thin dark line where they meet, over the squeezed remains of
        the photo's interior. region uint8 (h, w, 3) in place; local float32 (468, 2) mesh in region pixels."""
        meeting = (local[list(lm.LIPS_INNER_UPPER)] + local[list(lm.LIPS_INNER_LOWER)]) / 2  # (11, 2)
        line = np.zeros(region.shape[:2], np.uint8)
        thickness = max(1, round(0.008 * self.face_width))
        cv2.polylines(line, [np.round(meeting * 16).astype(np.int32)], False, 255, thickness, cv2.LINE_AA, 4)
        alpha = cv2.GaussianBlur(line, (0, 0), max(0.5, 0.002 * self.face_width)).astype(np.float32)[..., None]
        alpha *= strength / 255
        region[:] = np.clip(region * (1 - alpha) + self.lip * 0.5 * alpha + 0.5, 0, 255).astype(np.uint8)

    def paint(self, frame: np.ndarray, moved: np.ndarray, code: np.ndarray, *, offset: tuple[int, int]) -> None:
        """Draw into frame uint8 (h, w, 3) in place; moved float32 (468, 3) in output pixels; offset (x0, y0) of the
        frame's top-left corner in output pixels."""
        xy = moved[:, :2] - np.asarray(offset, np.float32)
        gap = float(np.dot(xy[14] - xy[13], self.down))
        closing = np.clip((self.photo_gap - gap) / (0.5 * self.photo_gap), 0.0, 1.0) if self.photo_gap > 1.0 else 0.0
        fade = np.clip((gap - self.photo_gap) / (FADE_IN_FW * self.face_width), 0.0, 1.0)
        if (fade <= 0.0 or gap <= 1.0) and closing <= 0.0:
            return
        outline = xy[list(lm.LIPS_INNER)]
        pad = 3
        x0, y0 = np.floor(outline.min(0)).astype(int) - pad
        x1, y1 = np.ceil(outline.max(0)).astype(int) + pad
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, frame.shape[1]), min(y1, frame.shape[0])
        if x1 - x0 < 4 or y1 - y0 < 4:
            return
        if closing > 0.0:
            self._paint_contact_line(frame[y0:y1, x0:x1], xy - [x0, y0], closing)
        if fade <= 0.0 or gap <= 1.0:
            return
        fade = fade * fade * (3 - 2 * fade)
        fw = self.face_width
        local = xy - [x0, y0]
        shape = (y1 - y0, x1 - x0)
        # every pixel in the moved mouth's own frame: u across from its middle, v down (pixels)
        across = local[308] - local[78]
        across = across / max(float(np.linalg.norm(across)), 1e-6)
        down = np.array([-across[1], across[0]], np.float32)
        middle = (local[78] + local[308]) / 2
        rows, columns = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float32)
        rows -= middle[1]
        columns -= middle[0]
        u = columns * across[0] + rows * across[1]  # (h, w)
        v = columns * down[0] + rows * down[1]
        upper = (local[list(lm.LIPS_INNER_UPPER)] - middle) @ np.stack([across, down]).T  # (11, 2) u, v
        lower = (local[list(lm.LIPS_INNER_LOWER)] - middle) @ np.stack([across, down]).T
        top = np.interp(u, *upper[np.argsort(upper[:, 0])].T)  # (h, w): the upper lip's inner edge
        bottom = np.interp(u, *lower[np.argsort(lower[:, 0])].T)  # the lower lip's
        half = max(float(np.abs(np.concatenate([upper[:, 0], lower[:, 0]])).max()), 1.0)
        side = np.clip(u / half, -1, 1)  # -1 .. 1 corner to corner
        below_top, above_bottom = v - top, bottom - v  # pixels inside from each lip
        height = np.maximum(bottom - top, 1e-3)
        # the cavity: darkest high up at the back, a little light reaches its lower front
        light = np.clip((0.15 + 0.55 * np.square(np.clip(below_top / height, 0, 1))) * (1 - 0.7 * side * side), 0, 1)
        interior = self.cavity_back + (self.cavity_front - self.cavity_back) * light[..., None]  # (h, w, 3)
        # the tongue lies low, behind the lower teeth: a dark arch, lighter towards the front
        tongue_height = min(0.3 * gap, 0.045 * fw) * np.sqrt(np.clip(1 - np.square(side / 0.75), 0, 1))  # (h, w)
        tongue_alpha = np.clip(tongue_height - above_bottom + 0.5, 0, 1)[..., None]
        front = np.clip(1 - above_bottom / np.maximum(tongue_height, 1.0), 0, 1)
        tongue = self.tongue * (0.45 + 0.35 * front - 0.25 * side * side)[..., None]
        interior = interior * (1 - tongue_alpha) + tongue * tongue_alpha
        teeth_amount = float(code[MOTION_INDEX["teeth"]])
        # lower teeth: a thin band just behind the lower lip, only when the mouth is well open
        open_fw = gap / fw
        lower_height = min(0.012 * fw, 0.12 * gap) * np.clip((open_fw - 0.09) / 0.05, 0, 1) * (0.6 + 0.4 * teeth_amount)
        if lower_height > 0.3:
            band = lower_height * np.sqrt(np.clip(1 - np.square(side / 0.5), 0, 1))
            band_alpha = np.clip(band - above_bottom + 0.5, 0, 1)[..., None] * 0.9
            lower_teeth = self.teeth * (0.6 - 0.3 * side * side)[..., None]
            interior = interior * (1 - band_alpha) + lower_teeth * band_alpha
        # upper teeth under the upper lip: more with `teeth` and the opening, rounded edges, gaps between them
        upper_height = min((0.028 + 0.022 * teeth_amount) * fw, 0.45 * gap)
        arch = np.sqrt(np.clip(1 - np.square(side / 0.85), 0, 1))  # the row recedes towards the corners
        across_fw = np.abs(u) / fw
        nearest_edge = np.abs(across_fw[..., None] - _TOOTH_EDGES).min(-1) * fw  # pixels to the nearest tooth edge
        rounded = 1 - 0.12 * np.exp(-np.square(nearest_edge / max(0.8, 0.006 * fw)))
        tooth_height = upper_height * arch * rounded
        teeth_alpha = np.clip(tooth_height - below_top + 0.5, 0, 1)
        shade = (1 - 0.55 * side * side) * (1 - 0.22 * np.exp(-np.square(nearest_edge / max(0.6, 0.003 * fw))))
        shade *= 1 - 0.12 * np.clip(below_top / np.maximum(tooth_height, 1.0), 0, 1) ** 4  # the biting edge
        interior = interior * (1 - teeth_alpha[..., None]) + self.teeth * shade[..., None] * teeth_alpha[..., None]
        if self.photo_interior is not None:
            similarity, _ = cv2.estimateAffinePartial2D(self.upper_lip, local[list(lm.LIPS_INNER_UPPER)])
            if similarity is not None:
                similarity[:, 2] += similarity[:, :2] @ self.photo_interior_origin
                own = cv2.warpAffine(self.photo_interior, similarity, shape[::-1], flags=cv2.INTER_LINEAR)
                own_alpha = cv2.warpAffine(self.photo_interior_alpha, similarity, shape[::-1],
                                           flags=cv2.INTER_LINEAR)[..., None]
                interior = interior * (1 - own_alpha) + own * own_alpha
        # a thin shadow under the upper lip and along the lower lip's inner edge
        shadow = (1 - 0.45 * np.exp(-np.maximum(below_top, 0) / max(1.0, 0.01 * fw))) * (
            1 - 0.3 * np.exp(-np.maximum(above_bottom, 0) / max(0.7, 0.005 * fw)))
        interior *= shadow[..., None]
        # the lower lip's wet inner edge: lip to cavity over 1-2 px
        feather = max(1.0, min(2.0, 0.008 * fw))
        wet = np.clip(1 - above_bottom / feather, 0, 1)[..., None]
        interior = interior * (1 - wet) + self.lip * 0.7 * wet
        alpha = (np.clip(below_top + 0.5, 0, 1) * np.clip(above_bottom + 0.5, 0, 1)
                 * np.clip(half - np.abs(u) + 0.5, 0, 1))
        alpha = alpha[..., None] * fade
        region = frame[y0:y1, x0:x1]
        region[:] = np.clip(region * (1 - alpha) + interior * alpha + 0.5, 0, 255).astype(np.uint8)
