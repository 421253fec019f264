"""The deformation model: a motion code moves the portrait's face mesh (468 points with depth) and its irises.

Amplitudes are in face widths (fw, FaceMesh.width) along the face's own axes: u across (from the subject's right
eye to the left one, the image's right in an unmirrored photo) and v down (perpendicular to u). A component at its
range limit moves the points by:

- mouth_open: the inner lips' gap at the middle is mouth_open x (g0 + A) fw, g0 the photo's own gap and
  A = max(0.22 - g0, 0.10): 0 closes the lips (a photo with parted lips closes them at rest, as in p, b, m and in
  the synthetic records the generator learnt from), 1 opens a closed mouth to 0.22 fw (a wide "ah"). Of that, the
  photo's own gap closes by 1 - mouth_open, and A opens by mouth_open. The lower lip and jaw drop by 0.85 A (the
  chin and jaw follow below the mouth with falloff: 1 at the chin, 0.15 at the jaw's corners), the upper inner lip
  rises by 0.15 A (the outer upper lip 0.08 A), the mouth corners drop by 0.35 of the lower lip and come in by 0.08 A.
- mouth_width +1 / -1: the corners move out 0.06 fw / in 0.05 fw each, the lips in proportion, the cheeks next to
  the corners with a Gaussian falloff of 0.08 fw.
- mouth_round +1: the corners come in 0.035 fw (further, the face mesh no longer reads the opening: the photo's
  creases at the old corners keep its mouth wide), the lips come 0.05 fw forward (nearer the camera) and their
  middles 0.012 fw apart (a rounder opening); -1: the corners go out 0.04 fw.
- smile +1: the corners go up 0.05 fw and out 0.03 fw, the cheeks with them (falloff 0.10 fw), the lips' middles up
  0.01 fw; -1: the corners go down 0.04 fw (falloff 0.08 fw).
- lip_press 1: the inner lips meet at their midline (whatever mouth_open made of the gap) and each lip thins by 30 %:
  the gap is (1 - lip_press) x mouth_open x (g0 + A).
- upper_lip_raise 1: the upper lip's middle rises 0.035 fw (less towards the corners), the skin above it with it.
- blink_* 1: the upper lid moves 0.85 and the lower lid 0.15 of the way to each other (closed); -0.3: the upper lid
  rises 0.24 of the opening and the lower lid drops 0.03. The skin between lid and brow follows with 0.4 of the
  lid's move (falloff 0.05 fw).
- gaze_x 1: the irises move 0.35 eye widths towards the subject's left; gaze_y 1: 0.35 eye heights up.
- brow +1 / -1: the brows go up 0.05 fw / down 0.035 fw, the forehead above with them (falloff 0.12 fw), the lid
  skin below a little (falloff 0.03 fw).
- head_yaw / head_pitch / head_roll 1: 25 / 20 / 15 degrees of rotation of the 3-D mesh about a pivot on the face's
  centre line, 0.15 fw behind the cheeks' outline (yaw turns to the subject's left, pitch lifts the chin, roll turns
  clockwise in the image), seen in orthographic projection. The depth within 0.12 fw of the outline is eased to
  the outline's, so the rim turns as one band (no fold over the hair). The points within 0.25 fw inside the outline
  never pass their outline point: along its outward normal a point keeps at least 0.35 of its neutral distance to
  the outline, so the far cheek of a turn (or the chin of a pitch) is squeezed against the outline instead of
  folding over it (a fold there would show the background's edge torn along the coarse warp grid).
- head_x / head_y: translation by that many face widths (+ the image's right / down).

The per-vertex displacement of every component is computed once per portrait (`FaceDeformer`); a frame is one
small matrix product and a rotation.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from avatar_desktop.face import landmarks as lm
from avatar_desktop.motion_code import MOTION_DIM, MOTION_INDEX, clip_code

YAW_DEGREES, PITCH_DEGREES, ROLL_DEGREES = 25.0, 20.0, 15.0
OPEN_GAP_FW = 0.22  # the inner-lip gap of mouth_open = 1 for a closed mouth, face widths
MIN_OPEN_FW = 0.10  # the least that mouth_open = 1 adds to the photo's gap
RIM_BAND_FW = 0.25  # points this far inside the outline (face widths) are kept from passing it
RIM_KEEP = 0.35  # of a rim point's neutral distance to the outline that it keeps on a turn
RIM_SLOPE = 1.5  # the steepest the depth may rise from the outline inwards (depth per pixel inside)
GAZE_EYE_FRACTION = 0.35

_LIPS = sorted(set(lm.LIPS_OUTER) | set(lm.LIPS_INNER))
_LOWER_LIP = sorted(set(lm.LIPS_INNER_LOWER[1:-1]) | set(lm.LIPS_OUTER_LOWER[1:-1]))
_CORNERS = (61, 291, 78, 308)


@dataclass(frozen=True)
class MovedFace:
    """A frame's face, output pixels: points float32 (468, 3), irises float32 (2, 5, 2), and head_only float32
    (468, 3), the photo's mesh moved by the head's rotation and translation alone."""

    points: np.ndarray
    irises: np.ndarray
    head_only: np.ndarray


def _gaussian(distance: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-np.square(distance / sigma))


def _smoothstep(low: float, high: float, value: np.ndarray) -> np.ndarray:
    t = np.clip((value - low) / (high - low), 0.0, 1.0)
    return t * t * (3 - 2 * t)


class FaceDeformer:
    """Moves a portrait's mesh by motion codes.

    points: float32 (468, 3) and irises float32 (2, 5, 2) in the output's pixels (the renderer scales the FaceMesh).
    """

    def __init__(self, points: np.ndarray, irises: np.ndarray):
        self.points = np.asarray(points, np.float32)  # (N, 3)
        self.irises = np.asarray(irises, np.float32)  # (2, 5, 2)
        xy = self.points[:, :2]
        self.face_width = float(np.linalg.norm(xy[lm.CHEEK_IMAGE_RIGHT] - xy[lm.CHEEK_IMAGE_LEFT]))
        right_eye = xy[list(lm.RIGHT_EYE)].mean(0)
        left_eye = xy[list(lm.LEFT_EYE)].mean(0)
        across = (left_eye - right_eye) / np.linalg.norm(left_eye - right_eye)
        self.axes = np.stack([across, [-across[1], across[0]]]).astype(np.float32)  # (2, 2): rows u, v in pixels
        mouth = (xy[78] + xy[308]) / 2
        uv = (xy - mouth) @ self.axes.T / self.face_width  # (N, 2) in fw, about the mouth
        basis = np.zeros((2 * MOTION_DIM + 2, len(xy), 3), np.float32)  # (F, N, 3): u, v in fw, z in fw
        self._fill_mouth(basis, uv)
        self._fill_eyes_and_brows(basis, uv)
        self._follow_lip_outlines(basis, uv)
        # u, v (fw) -> image pixels; z (fw) -> pixels
        to_pixels = np.zeros((3, 3), np.float32)
        to_pixels[:2, :2] = self.axes * self.face_width
        to_pixels[2, 2] = self.face_width
        self._basis = (basis @ to_pixels).reshape(len(basis), -1)  # (F, N * 3) pixels
        self._iris_basis = self._gaze_basis()  # (2, 2, 2): component (x, y), eye, pixels
        oval = self.points[list(lm.FACE_OVAL)]
        self._prepare_rim(oval)
        self.points = self._flatten_rim(self.points, oval)
        cheek_depth = self.points[[lm.CHEEK_IMAGE_LEFT, lm.CHEEK_IMAGE_RIGHT], 2].mean()
        self.pivot = np.array([*oval[:, :2].mean(0), cheek_depth + 0.15 * self.face_width], np.float32)
        self.eye_depth = self.points[list(lm.RIGHT_EYE) + list(lm.LEFT_EYE), 2].mean()

    def _prepare_rim(self, oval: np.ndarray) -> None:
        """The rim points (within RIM_BAND_FW inside the outline, not on it), the outline point nearest each and
        the distance each keeps from it on a turn (pixels)."""
        polygon = oval[:, :2].astype(np.float32)
        inside = np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x, y in self.points[:, :2]])
        rim = (inside > 0) & (inside < RIM_BAND_FW * self.face_width)
        rim[list(lm.FACE_OVAL)] = False
        self._rim = np.nonzero(rim)[0]  # (K,) mesh indices
        nearest = np.linalg.norm(self.points[self._rim, None, :2] - polygon[None], axis=2).argmin(1)
        self._rim_owner = nearest  # (K,) positions in FACE_OVAL
        self._rim_keep = (RIM_KEEP * inside[self._rim]).astype(np.float32)  # (K,) pixels

    def _keep_rim_inside(self, points: np.ndarray) -> np.ndarray:
        """Moved points float32 (N, 3) -> the same with each rim point pulled back inside its outline point (along
        the moved outline's outward normal) by what it passed beyond its kept distance."""
        oval = points[list(lm.FACE_OVAL), :2]  # (O, 2), a closed loop
        tangent = np.roll(oval, -1, 0) - np.roll(oval, 1, 0)
        normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1)
        normal *= np.sign(np.sum(normal * (oval - oval.mean(0)), 1, keepdims=True))
        normal /= np.maximum(np.linalg.norm(normal, axis=1, keepdims=True), 1e-6)  # outward, unit
        owner_normal = normal[self._rim_owner]
        inside = np.sum((oval[self._rim_owner] - points[self._rim, :2]) * owner_normal, 1)  # (K,) pixels
        push = np.maximum(self._rim_keep - inside, 0)[:, None]
        points[self._rim, :2] -= push * owner_normal
        return points

    def _flatten_rim(self, points: np.ndarray, oval: np.ndarray) -> np.ndarray:
        """The depth of points near the face's outline limited to RIM_SLOPE times their distance inside it (nearer
        the camera than the outline's depth by at most that), so that the rim is never steeper than a turn of 25
        degrees can show without folding: the far cheek is squeezed, not folded over the hair."""
        polygon = oval[:, :2].astype(np.float32)
        inside = np.array([cv2.pointPolygonTest(polygon, (float(x), float(y)), True) for x, y in points[:, :2]])
        nearest = np.linalg.norm(points[:, None, :2] - polygon[None], axis=2).argmin(1)
        flattened = points.copy()
        flattened[:, 2] = np.maximum(points[:, 2], oval[nearest, 2] - RIM_SLOPE * np.maximum(inside, 0))
        return flattened

    # --- bases, all in face widths, per unit of the component on its positive (row k) and negative (row D + k) side
    def _row(self, name: str, negative: bool = False) -> int:
        return MOTION_INDEX[name] + (MOTION_DIM if negative else 0)

    def _fill_mouth(self, basis: np.ndarray, uv: np.ndarray) -> None:
        xy = self.points[:, :2]
        half_width = abs(uv[308, 0] - uv[78, 0]) / 2 + 1e-6
        gap0 = float(np.dot(xy[14] - xy[13], self.axes[1]) / self.face_width)
        amplitude = max(OPEN_GAP_FW - max(gap0, 0.0), MIN_OPEN_FW)
        lateral = np.clip(1 - 0.6 * np.square(uv[:, 0] / half_width), 0.4, 1.0)  # lips: 1 at the middle
        lips = np.zeros(len(uv), bool)
        lips[_LIPS] = True
        # mouth_open: the jaw below the mouth, the lower lip, the upper lip a little, corners down and in
        jaw = _smoothstep(-0.02, 0.10, uv[:, 1]) * np.clip(1 - np.square(uv[:, 0] / 0.6), 0.15, 1.0)
        jaw[lips] = 0.0
        jaw[_LOWER_LIP] = lateral[_LOWER_LIP]
        jaw[list(_CORNERS)] = 0.35
        row = basis[self._row("mouth_open")]
        row[:, 1] = 0.85 * amplitude * jaw
        row[list(lm.LIPS_INNER_UPPER[1:-1]), 1] = -0.15 * amplitude * lateral[list(lm.LIPS_INNER_UPPER[1:-1])]
        row[list(lm.LIPS_OUTER_UPPER[1:-1]), 1] = -0.08 * amplitude * lateral[list(lm.LIPS_OUTER_UPPER[1:-1])]
        row[lips, 0] = -0.08 * amplitude * uv[lips, 0] / half_width
        # the corners' neighbourhood: lips in proportion to u, cheeks by distance to the nearer corner
        corner_u = np.where(uv[:, 0] < 0, uv[78, 0], uv[308, 0])
        to_corner = np.minimum(np.linalg.norm(uv - uv[61], axis=1), np.linalg.norm(uv - uv[291], axis=1))
        side = np.sign(uv[:, 0])
        spread = np.where(lips, np.clip(uv[:, 0] / abs(corner_u), -1, 1), side * _gaussian(to_corner, 0.08))
        basis[self._row("mouth_width"), :, 0] = 0.06 * spread
        basis[self._row("mouth_width", True), :, 0] = -0.05 * spread
        middle = lips * np.clip(1 - np.abs(uv[:, 0]) / half_width, 0, 1)
        upper = np.isin(np.arange(len(uv)), lm.LIPS_OUTER_UPPER + lm.LIPS_INNER_UPPER)
        basis[self._row("mouth_round"), :, 0] = -0.035 * spread
        basis[self._row("mouth_round"), :, 1] = 0.012 * middle * np.where(upper, -1, 1)
        basis[self._row("mouth_round"), :, 2] = -0.05 * np.where(lips, 1.0, _gaussian(to_corner, 0.06) * 0.3)
        basis[self._row("mouth_round", True), :, 0] = 0.04 * spread
        cheeks = np.where(lips, 1.0, _gaussian(to_corner, 0.10))
        corner_weight = np.where(lips, np.abs(spread), 1.0) * cheeks
        basis[self._row("smile"), :, 0] = 0.03 * spread
        basis[self._row("smile"), :, 1] = -0.05 * corner_weight - 0.01 * middle
        basis[self._row("smile", True), :, 1] = 0.04 * np.where(lips, np.abs(spread), _gaussian(to_corner, 0.08))
        # the photo's own gap closes (row 2 D + 1, weight 1 - (1 - lip_press) mouth_open); the gap mouth_open adds
        # closes with lip_press x mouth_open (row 2 D); lip_press thins the lips (its own row)
        press, press_open, close_gap = basis[self._row("lip_press")], basis[2 * MOTION_DIM], basis[2 * MOTION_DIM + 1]
        for upper_index, lower_index in zip(lm.LIPS_INNER_UPPER[1:-1], lm.LIPS_INNER_LOWER[1:-1]):
            half_gap = (uv[lower_index] - uv[upper_index]) / 2
            close_gap[upper_index, :2] = half_gap
            close_gap[lower_index, :2] = -half_gap
            open_half = (basis[self._row("mouth_open"), lower_index] - basis[self._row("mouth_open"), upper_index]) / 2
            press_open[upper_index] = open_half
            press_open[lower_index] = -open_half
        for outer, inner in ((lm.LIPS_OUTER_UPPER, lm.LIPS_INNER_UPPER), (lm.LIPS_OUTER_LOWER, lm.LIPS_INNER_LOWER)):
            for outer_index, inner_index in zip(outer[1:-1], inner[1:-1]):
                press[outer_index, :2] = 0.3 * (uv[inner_index] - uv[outer_index])
        # upper_lip_raise: the upper lip, most at the middle, and the skin just above it
        upper_outer = uv[list(lm.LIPS_OUTER_UPPER)]
        to_upper = np.linalg.norm(uv[:, None] - upper_outer[None], axis=2).min(1)
        above = (uv[:, 1] < 0) & ~lips
        raise_weight = np.where(above, 0.5 * _gaussian(to_upper, 0.05), 0.0)
        raise_weight[list(lm.LIPS_OUTER_UPPER + lm.LIPS_INNER_UPPER)] = lateral[
            list(lm.LIPS_OUTER_UPPER + lm.LIPS_INNER_UPPER)
        ]
        raise_weight[list(_CORNERS)] = 0.2
        basis[self._row("upper_lip_raise"), :, 1] = -0.035 * raise_weight

    def _follow_lip_outlines(self, basis: np.ndarray, uv: np.ndarray) -> None:
        """The mesh points inside a lip (between its outer and inner outline) move as the outlines around them."""
        outer = uv[list(lm.LIPS_OUTER)].astype(np.float32)
        inner_upper, inner_lower = uv[list(lm.LIPS_INNER_UPPER)], uv[list(lm.LIPS_INNER_LOWER)]
        outlines = set(lm.LIPS_OUTER) | set(lm.LIPS_INNER)
        for index in range(len(uv)):
            if index in outlines or cv2.pointPolygonTest(outer, (float(uv[index, 0]), float(uv[index, 1])), False) < 0:
                continue
            midline = (np.interp(uv[index, 0], inner_upper[:, 0], inner_upper[:, 1])
                       + np.interp(uv[index, 0], inner_lower[:, 0], inner_lower[:, 1])) / 2
            upper = uv[index, 1] < midline
            keys = list(lm.LIPS_OUTER_UPPER + lm.LIPS_INNER_UPPER if upper
                        else lm.LIPS_OUTER_LOWER + lm.LIPS_INNER_LOWER)
            weights = 1 / (np.linalg.norm(uv[keys] - uv[index], axis=1) + 1e-3) ** 2
            basis[:, index] = np.tensordot(basis[:, keys], weights / weights.sum(), axes=([1], [0]))

    def _fill_eyes_and_brows(self, basis: np.ndarray, uv: np.ndarray) -> None:
        eye_points = set(lm.RIGHT_EYE) | set(lm.LEFT_EYE)
        for name, upper, lower, brow in (
            ("blink_right", lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER, lm.RIGHT_BROW),
            ("blink_left", lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER, lm.LEFT_BROW),
        ):
            closing, opening = basis[self._row(name)], basis[self._row(name, True)]
            for upper_index, lower_index in zip(upper[1:-1], lower[1:-1]):
                gap = uv[lower_index] - uv[upper_index]
                closing[upper_index, :2], closing[lower_index, :2] = 0.85 * gap, -0.15 * gap
                opening[upper_index, :2], opening[lower_index, :2] = -0.8 * gap, 0.1 * gap
            lid = uv[list(upper[1:-1])]
            distance = np.linalg.norm(uv[:, None] - lid[None], axis=2)
            nearest = np.array(upper[1:-1])[distance.argmin(1)]
            lid_line = np.interp(uv[:, 0], *zip(*sorted(zip(lid[:, 0], lid[:, 1]))))
            brow_line = uv[list(brow), 1].max()
            skin = (uv[:, 1] < lid_line) & (uv[:, 1] > brow_line) & (distance.min(1) < 0.15)
            skin[list(eye_points)] = False
            follow = 0.4 * _gaussian(distance.min(1), 0.05) * skin
            closing[skin, :2] = follow[skin, None] * closing[nearest[skin], :2]
            opening[skin, :2] = follow[skin, None] * opening[nearest[skin], :2]
        brows = uv[list(lm.RIGHT_BROW + lm.LEFT_BROW)]
        to_brow = np.linalg.norm(uv[:, None] - brows[None], axis=2).min(1)
        above_brow = uv[:, 1] < brows[:, 1].min()
        weight = np.where(above_brow, _gaussian(to_brow, 0.12), _gaussian(to_brow, 0.03))
        weight[list(lm.RIGHT_BROW + lm.LEFT_BROW)] = 1.0
        weight[list(eye_points)] = 0.0
        basis[self._row("brow"), :, 1] = -0.05 * weight
        basis[self._row("brow", True), :, 1] = 0.035 * weight

    def _gaze_basis(self) -> np.ndarray:
        xy = self.points[:, :2]
        shifts = np.zeros((2, 2, 2), np.float32)
        for eye, (upper, lower) in enumerate(((lm.RIGHT_EYE_UPPER, lm.RIGHT_EYE_LOWER),
                                              (lm.LEFT_EYE_UPPER, lm.LEFT_EYE_LOWER))):
            width = np.linalg.norm(xy[upper[-1]] - xy[upper[0]])
            height = max(float(np.mean((xy[list(lower[1:-1])] - xy[list(upper[1:-1])]) @ self.axes[1])), 0.25 * width)
            shifts[0, eye] = GAZE_EYE_FRACTION * width * self.axes[0]
            shifts[1, eye] = -GAZE_EYE_FRACTION * height * self.axes[1]
        return shifts

    def features(self, code: np.ndarray) -> np.ndarray:
        """Code (D,) -> the basis weights float32 (2 D + 2,): positive sides, negative sides, press x open, and how
        much of the photo's own lip gap closes."""
        code = clip_code(np.asarray(code, np.float32).reshape(MOTION_DIM))
        press, opening = code[MOTION_INDEX["lip_press"]], code[MOTION_INDEX["mouth_open"]]
        close_gap = 1 - (1 - press) * opening
        return np.concatenate([np.maximum(code, 0), np.maximum(-code, 0), [press * opening, close_gap]]).astype(
            np.float32)

    def rotation(self, code: np.ndarray) -> np.ndarray:
        """Code (D,) -> float32 (3, 3) rotation of (x, y, z) points, image axes (y down, z away from the camera)."""
        yaw, pitch, roll = np.radians(
            [YAW_DEGREES * code[MOTION_INDEX["head_yaw"]], PITCH_DEGREES * code[MOTION_INDEX["head_pitch"]],
             ROLL_DEGREES * code[MOTION_INDEX["head_roll"]]])
        cy, sy, cp, sp, cr, sr = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
        yaw_matrix = np.array([[cy, 0, -sy], [0, 1, 0], [sy, 0, cy]])  # nose (z < 0) to +x
        pitch_matrix = np.array([[1, 0, 0], [0, cp, sp], [0, -sp, cp]])  # nose (z < 0) up
        roll_matrix = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])  # +x to +y: clockwise on screen
        return (roll_matrix @ pitch_matrix @ yaw_matrix).astype(np.float32)

    def move(self, code: np.ndarray) -> MovedFace:
        """Code float32 (D,) -> the moved mesh and irises (output pixels)."""
        code = clip_code(np.asarray(code, np.float32).reshape(MOTION_DIM))
        expression = (self.features(code) @ self._basis).reshape(-1, 3)  # (N, 3) pixels
        points = self.points + expression
        gaze = code[MOTION_INDEX["gaze_x"]] * self._iris_basis[0] + code[MOTION_INDEX["gaze_y"]] * self._iris_basis[1]
        irises = self.irises + gaze[:, None, :]  # (2, 5, 2)
        iris_points = np.concatenate([irises.reshape(-1, 2), np.full((10, 1), self.eye_depth, np.float32)], 1)
        rotation = self.rotation(code)
        shift = np.array([code[MOTION_INDEX["head_x"]], code[MOTION_INDEX["head_y"]], 0], np.float32) * self.face_width
        everything = (np.concatenate([points, iris_points, self.points]) - self.pivot) @ rotation.T + self.pivot + shift
        count = len(points)
        return MovedFace(self._keep_rim_inside(everything[:count].astype(np.float32)),
                         everything[count: count + 10, :2].reshape(2, 5, 2).astype(np.float32),
                         everything[count + 10:].astype(np.float32))
