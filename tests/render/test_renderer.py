"""The photo renderer on the astronaut (skimage), its mesh found by the real face models."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage.data import astronaut
from skimage.metrics import structural_similarity

from avatar_desktop.errors import AvatarError
from avatar_desktop.face import find_face
from avatar_desktop.face import landmarks as lm
from avatar_desktop.motion_code import MOTION_DIM, MOTION_HIGH, MOTION_INDEX, MOTION_LOW
from avatar_desktop.render import PhotoRenderer, camera_frame_size, default_output_size, fit_to_camera
from avatar_desktop.render.deform import MIN_OPEN_FW, OPEN_GAP_FW


def code(**components: float) -> np.ndarray:
    values = np.zeros(MOTION_DIM, np.float32)
    for name, value in components.items():
        values[MOTION_INDEX[name]] = value
    return values


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut at 1024x1024 (its face about 190 px wide)."""
    return cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def face(photo):
    return find_face(photo)


@pytest.fixture(scope="module")
def renderer(photo, face) -> PhotoRenderer:
    return PhotoRenderer(photo, face)


def polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return mask.astype(bool)


def test_neutral_code_gives_the_photo(renderer, photo):
    frame = renderer.render(code())
    assert frame.shape == photo.shape and frame.dtype == np.uint8
    assert np.array_equal(frame[~renderer.head_mask], renderer.neutral[~renderer.head_mask])
    ys, xs = np.nonzero(renderer.head_mask)
    box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
    assert structural_similarity(frame[box], renderer.neutral[box], channel_axis=2) >= 0.98


def test_frames_differ_only_inside_the_head_mask(renderer):
    frame = renderer.render(code(mouth_open=1, head_yaw=1, head_pitch=-1, head_x=0.3, blink_left=1, smile=1))
    outside = ~renderer.head_mask
    assert np.array_equal(frame[outside], renderer.neutral[outside])
    assert np.abs(frame.astype(int) - renderer.neutral).sum(2)[renderer.head_mask].mean() > 3


def test_head_mask_is_false_at_the_border_and_covers_the_face(renderer, face):
    mask = renderer.head_mask
    assert not mask[0].any() and not mask[-1].any() and not mask[:, 0].any() and not mask[:, -1].any()
    for index in (lm.NOSE_TIP, lm.CHIN, lm.FOREHEAD, lm.CHEEK_IMAGE_LEFT, lm.CHEEK_IMAGE_RIGHT):
        x, y = np.round(face.points[index, :2]).astype(int)
        assert mask[y, x]


def test_mouth_open_moves_the_lower_lip_down_by_the_documented_amount(renderer, face):
    deformer = renderer.deformer
    down = deformer.axes[1]
    neutral_gap = float(np.dot(deformer.points[14, :2] - deformer.points[13, :2], down))
    moved = deformer.move(code(mouth_open=1)).points
    gap = float(np.dot(moved[14, :2] - moved[13, :2], down))
    expected = max(OPEN_GAP_FW - neutral_gap / face.width, MIN_OPEN_FW) * face.width
    assert gap - neutral_gap == pytest.approx(expected, rel=0.02)
    lower_lip_drop = float(np.dot(moved[14, :2] - deformer.points[14, :2], down))
    assert lower_lip_drop == pytest.approx(0.85 * expected, rel=0.02)
    # the gap is mouth_open x the full gap: half open is half of it, and 0 closes even the photo's parted lips
    half = deformer.move(code(mouth_open=0.5)).points
    assert np.dot(half[14, :2] - half[13, :2], down) == pytest.approx((neutral_gap + expected) / 2, rel=0.02)
    assert neutral_gap > 0.05 * face.width  # the astronaut smiles with parted lips
    closed = deformer.move(code()).points
    assert abs(np.dot(closed[14, :2] - closed[13, :2], down)) < 0.01 * face.width
    # lip press closes the gap again
    pressed = deformer.move(code(mouth_open=1, lip_press=1)).points
    assert abs(np.dot(pressed[14, :2] - pressed[13, :2], down)) < 0.01 * face.width


def test_open_mouth_is_dark_inside(renderer):
    moved = renderer.deformer.move(code(mouth_open=1)).points
    opening = polygon_mask(renderer.neutral.shape[:2], moved[list(lm.LIPS_INNER), :2])
    opening &= ~polygon_mask(renderer.neutral.shape[:2], renderer.deformer.points[list(lm.LIPS_INNER), :2])
    frame = renderer.render(code(mouth_open=1))
    luma_open = frame[opening].mean()
    luma_neutral = renderer.neutral[opening].mean()
    assert opening.sum() > 200
    assert luma_open < 0.6 * luma_neutral
    # a mouth, not a grey box: the cavity is reddish
    red, green, blue = frame[opening].reshape(-1, 3).mean(0)
    assert red > green and red > blue


def test_blink_closes_the_lids_with_skin(renderer, face):
    neutral = renderer.neutral.astype(np.float32)
    frame = renderer.render(code(blink_left=1, blink_right=1)).astype(np.float32)
    for outline, upper in ((lm.RIGHT_EYE, lm.RIGHT_EYE_UPPER), (lm.LEFT_EYE, lm.LEFT_EYE_UPPER)):
        # the lid's skin in the photo: just above the middle of the upper lid
        x, y = np.round(face.points[upper[4], :2] - [0, 0.05 * face.width]).astype(int)
        skin = np.median(neutral[y - 2: y + 3, x - 4: x + 5].reshape(-1, 3), 0)
        eye = polygon_mask(neutral.shape[:2], face.points[list(outline), :2])
        eye = cv2.erode(eye.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        before = np.linalg.norm(neutral[eye] - skin, axis=1)
        after = np.linalg.norm(frame[eye] - skin, axis=1)
        assert np.median(after) < 0.5 * np.median(before)
        assert (frame[eye].mean(1) < 70).mean() < 0.05  # the dark iris is gone


def test_gaze_moves_the_irises(renderer, face):
    moved = renderer.deformer.move(code(gaze_x=1, gaze_y=1)).irises
    shift = moved[:, 0] - face.irises[:, 0]
    assert (shift[:, 0] > 0).all() and (shift[:, 1] < 0).all()
    frame = renderer.render(code(gaze_x=1))
    eye = polygon_mask(frame.shape[:2], face.points[list(lm.LEFT_EYE), :2])
    assert np.abs(frame[eye].astype(int) - renderer.neutral[eye]).mean() > 5


def test_head_yaw_moves_the_nose_more_than_the_outline(renderer):
    points = renderer.deformer.points
    for sign in (1, -1):
        moved = renderer.deformer.move(code(head_yaw=sign)).points
        nose = moved[lm.NOSE_TIP, 0] - points[lm.NOSE_TIP, 0]
        outline = (moved[list(lm.FACE_OVAL), 0] - points[list(lm.FACE_OVAL), 0]).mean()
        assert sign * nose > 0
        assert abs(nose) > abs(outline) + 0.05 * renderer.deformer.face_width


def test_every_range_limit_renders(renderer):
    limits = [MOTION_LOW, MOTION_HIGH]
    for index in range(MOTION_DIM):
        for limit in limits:
            values = np.zeros(MOTION_DIM, np.float32)
            values[index] = limit[index]
            moved = renderer.deformer.move(values)
            assert np.isfinite(moved.points).all() and np.isfinite(moved.irises).all()
            frame = renderer.render(values)
            assert frame.shape == renderer.neutral.shape and frame.dtype == np.uint8
    for values in (MOTION_LOW, MOTION_HIGH, np.full(MOTION_DIM, np.nan, np.float32), 5 * MOTION_HIGH):
        frame = renderer.render(values.astype(np.float32))
        assert frame.shape == renderer.neutral.shape
        assert np.array_equal(frame[~renderer.head_mask], renderer.neutral[~renderer.head_mask])


def test_a_4k_photo_renders_at_1920(photo, face):
    large = cv2.resize(photo, (3840, 3840), interpolation=cv2.INTER_LINEAR)
    renderer = PhotoRenderer(large, face.scaled(3.75))
    assert renderer.frame_size == (1920, 1920)
    frame = renderer.render(code(mouth_open=1, head_yaw=0.5))
    assert frame.shape == (1920, 1920, 3)
    assert default_output_size((3840, 2160)) == (1920, 1080)
    assert default_output_size((1001, 667)) == (1002, 668)


def test_output_size_option_and_bad_input(photo, face):
    renderer = PhotoRenderer(photo, face, output_size=(640, 640))
    assert renderer.render(code(mouth_open=0.5)).shape == (640, 640, 3)
    with pytest.raises(AvatarError, match="17 components"):
        renderer.render(np.zeros(5, np.float32))
    with pytest.raises(AvatarError, match="find the face on this photo"):
        PhotoRenderer(photo[:512], face)
    with pytest.raises(AvatarError, match="uint8"):
        PhotoRenderer(photo.astype(np.float32), face)


def test_fit_to_camera_fills_the_sides_with_the_photo(photo):
    assert camera_frame_size((1024, 1024)) == (720, 720)
    assert camera_frame_size((1920, 1080)) == (1280, 720)
    assert camera_frame_size((1080, 1920)) == (406, 720)
    framed = fit_to_camera(photo)
    assert framed.shape == (720, 1280, 3) and framed.dtype == np.uint8
    middle = framed[:, 280:1000]
    expected = cv2.resize(photo, (720, 720), interpolation=cv2.INTER_AREA)
    assert np.abs(middle.astype(int) - expected).mean() < 1
    sides = np.concatenate([framed[:, :280], framed[:, 1000:]], 1)
    assert sides.mean() > 30  # no black bars
    assert sides.mean() < expected.mean()  # darkened
    wide = fit_to_camera(cv2.resize(photo, (1280, 720)))
    assert np.array_equal(wide, cv2.resize(photo, (1280, 720)))


def outline_overshoot(points: np.ndarray) -> float:
    """How far (pixels) the mesh point furthest outside the face outline lies beyond it (float32 (468, 3) mesh)."""
    outline = points[list(lm.FACE_OVAL), :2].astype(np.float32)
    others = sorted(set(range(len(points))) - set(lm.FACE_OVAL))
    return -min(0.0, min(cv2.pointPolygonTest(outline, (float(x), float(y)), True) for x, y in points[others, :2]))


def test_a_turn_squeezes_the_far_cheek_without_folding_it_over_the_hair(renderer):
    deformer, warp = renderer.deformer, renderer.warp
    neutral_overshoot = outline_overshoot(deformer.move(code()).points)
    oval = np.isin(warp.triangles, lm.FACE_OVAL).any(1)
    for yaw in (0.15, 0.6, -0.6, 1, -1):
        moved = deformer.move(code(head_yaw=yaw))
        assert outline_overshoot(moved.points) < neutral_overshoot + 0.01 * deformer.face_width
        if abs(yaw) <= 0.6:  # the slider's full turn: no triangle at the outline turned over (a torn edge)
            corners = warp.control_points(moved.points, moved.head_only)[0][warp.triangles]  # (T, 3, 2)
            determinant = np.linalg.det(np.concatenate([corners, np.ones((len(corners), 3, 1))], 2))
            assert not (oval & (np.sign(determinant) != warp._orientation)).any()


def test_the_neck_stretches_below_a_nodding_chin_and_the_collar_stays(renderer):
    deformer, warp = renderer.deformer, renderer.warp
    neutral_points, _ = warp.control_points(deformer.points, deformer.points)
    below_chin = len(deformer.points) + np.nonzero(warp.ring_owner == lm.CHIN)[0]  # ring points under the chin
    assert len(below_chin) == 3
    for components in (dict(head_pitch=1), dict(head_pitch=-1), dict(mouth_open=1)):
        moved = deformer.move(code(**components))
        points, _ = warp.control_points(moved.points, moved.head_only)
        chin_move = np.linalg.norm(moved.points[lm.CHIN, :2] - deformer.points[lm.CHIN, :2])
        inner_ring = below_chin[0]
        ring_move = np.linalg.norm(points[inner_ring] - neutral_points[inner_ring])
        if components.get("head_pitch") == 1:  # chin up: the collar below the chin stays nearly still
            assert ring_move < 0.25 * chin_move
        # and the chin never reaches the ring below it: the neck between them is squeezed, not folded
        gap = points[inner_ring, 1] - moved.points[lm.CHIN, 1]
        neutral_gap = neutral_points[inner_ring, 1] - deformer.points[lm.CHIN, 1]
        assert gap > 0.35 * neutral_gap


def test_closing_parted_lips_draws_where_they_meet(renderer):
    """The astronaut smiles with her teeth showing: closed (mouth_open 0), no bright teeth between the lips."""
    moved = renderer.deformer.move(code()).points
    meeting = (moved[list(lm.LIPS_INNER_UPPER[2:-2]), :2] + moved[list(lm.LIPS_INNER_LOWER[2:-2]), :2]) / 2
    frame = renderer.render(code())
    x, y = np.round(meeting).astype(int).T
    lips = renderer.neutral[np.round(moved[[0, 17], 1]).astype(int), np.round(moved[[0, 17], 0]).astype(int)]
    assert frame[y, x].mean() < 0.8 * lips.mean()
