"""The procedural renderer and the per-frame tracks of a clip."""

import cv2
import numpy as np
import pytest

from avatar_desktop.config import EXPRESSION_COMPONENTS, State
from avatar_desktop.data.speech import Viseme, Voice
from avatar_desktop.data.synthetic import HAIR_STYLES, FrameParams, Identity, mouth_box, render_frame
from avatar_desktop.data.timeline import coarticulate, make_clip_tracks, record_frame_params, viseme_frames
from avatar_desktop.drawn_face import expression_pose


def _inside(box, shape):
    x0, y0, x1, y1 = box
    ys, xs = np.mgrid[: shape[0], : shape[1]]
    return (xs >= np.floor(x0)) & (xs < np.ceil(x1)) & (ys >= np.floor(y0)) & (ys < np.ceil(y1))


def test_identities_are_deterministic_and_varied():
    assert Identity.from_seed(5) == Identity.from_seed(5)
    identities = [Identity.from_seed(seed) for seed in range(60)]
    assert len({i.skin for i in identities}) > 40
    assert {i.hair_style for i in identities} == set(HAIR_STYLES)
    assert {i.glasses for i in identities} == {"none", "round", "square"}
    first, second = (render_frame(Identity.from_seed(s), FrameParams(), 128)[0] for s in (1, 2))
    assert np.abs(first.astype(int) - second).mean() > 10


def test_frame_is_rgb_uint8_and_anti_aliased():
    frame, geometry = render_frame(Identity.from_seed(3), FrameParams(mouth_opening=0.6), 256)
    assert frame.shape == (256, 256, 3) and frame.dtype == np.uint8
    x0, y0, x1, y1 = geometry.face_box
    assert 40 < x1 - x0 < 200 and 0 <= x0 < x1 <= 256
    # anti-aliasing: edges blend, so there are far more colours than the dozen flat fills
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 300


def test_mouth_opening_changes_only_the_mouth_box():
    identity = Identity.from_seed(11)
    params = FrameParams(head_yaw=0.4, head_pitch=-0.3, head_roll=0.5, sway=(0.05, -0.02))
    closed, _ = render_frame(identity, params, 256)
    params.mouth_opening, params.teeth = 1.0, 1.0
    opened, geometry = render_frame(identity, params, 256)
    changed = np.abs(opened.astype(int) - closed).max(axis=2) > 0
    assert changed.sum() > 150
    assert not changed[~_inside(geometry.mouth_box, changed.shape)].any()
    assert geometry.mouth_box == mouth_box(identity, params, 256)


def _render_with_slider(identity, name: str, value: float) -> tuple[np.ndarray, object]:
    """A 128 px frame with one slider set, the head turned as the timelines turn it for that slider."""
    sliders = np.zeros(len(EXPRESSION_COMPONENTS), np.float32)
    sliders[EXPRESSION_COMPONENTS.index(name)] = value
    yaw, pitch = expression_pose(sliders)
    return render_frame(identity, FrameParams(expression=sliders, head_yaw=float(yaw), head_pitch=float(pitch)), 128)


@pytest.mark.parametrize("name", ["smile", "brow", "eye_open"])
def test_each_face_slider_changes_its_own_part_of_the_face_both_ways(name):
    identity = Identity.from_seed(4)
    neutral, geometry = render_frame(identity, FrameParams(), 128)
    lowered, _ = _render_with_slider(identity, name, -1.0)
    raised, _ = _render_with_slider(identity, name, 1.0)
    changed = [np.abs(image.astype(int) - neutral).max(axis=2) > 0 for image in (lowered, raised)]
    assert all(mask.sum() > 20 for mask in changed)
    assert (np.abs(raised.astype(int) - lowered).max(axis=2) > 0).sum() > 20  # the sign matters
    face_x0, face_y0, face_x1, _ = geometry.face_box
    above_the_mouth = (face_x0, face_y0, face_x1, geometry.mouth_box[1])
    where = geometry.mouth_box if name == "smile" else above_the_mouth
    assert not (changed[0] | changed[1])[~_inside(where, neutral.shape)].any()


def test_the_brow_slider_acts_above_the_eye_slider():
    identity = Identity.from_seed(4)
    neutral, _ = render_frame(identity, FrameParams(), 128)

    def mean_changed_row(name: str) -> float:
        image, _ = _render_with_slider(identity, name, 1.0)
        return float(np.nonzero(np.abs(image.astype(int) - neutral).max(axis=2))[0].mean())

    assert mean_changed_row("brow") < mean_changed_row("eye_open") - 2


def test_head_sliders_turn_the_head_their_way():
    """head_yaw +1 turns the face to the frame's right, head_pitch +1 lifts it (drawn_face.expression_pose)."""
    identity = Identity.from_seed(4)
    _, neutral = render_frame(identity, FrameParams(), 128)
    (_, left), (_, right) = (_render_with_slider(identity, "head_yaw", v) for v in (-1.0, 1.0))
    assert left.face_box[0] < neutral.face_box[0] - 1 and right.face_box[0] > neutral.face_box[0] + 1
    (_, down), (_, up) = (_render_with_slider(identity, "head_pitch", v) for v in (-1.0, 1.0))
    assert up.face_box[1] < neutral.face_box[1] - 1 and down.face_box[1] > neutral.face_box[1] + 1


def test_blink_closes_the_eyes():
    identity = Identity.from_seed(8)
    open_eyes, _ = render_frame(identity, FrameParams(), 256)
    closed_eyes, _ = render_frame(identity, FrameParams(blink=1.0), 256)
    white = lambda image: ((image > 235).all(axis=2)).sum()  # noqa: E731  (eye whites)
    assert white(closed_eyes) < 0.3 * white(open_eyes)


def test_bilabials_always_get_a_closed_frame():
    # a 30 ms 'm' inside one frame, surrounded by open vowels
    phonemes = [("a", 0.0, 0.105, int(Viseme.OPEN)), ("m", 0.105, 0.135, int(Viseme.CLOSED)),
                ("a", 0.135, 0.4, int(Viseme.OPEN))]
    visemes = viseme_frames(phonemes, 10, 25)
    assert visemes[2] == Viseme.CLOSED and visemes[1] == Viseme.OPEN and visemes[4] == Viseme.OPEN
    mouth = coarticulate(visemes)
    assert mouth[2, 0] == 0.0
    assert 0 < mouth[1, 0] < 1.0 and mouth[5, 0] == 1.0  # blended next to the closure, full open away from it


def test_clip_tracks_have_states_speech_and_motion():
    tracks = make_clip_tracks(np.random.default_rng(2), 10.0, Voice("en-us+f2"), Voice("en+m3"))
    frames = tracks.frames
    assert frames == 250 and len(tracks.audio) == 250 * 640 == len(tracks.far_audio)
    assert len(set(tracks.state.tolist())) >= 2 and (np.diff(tracks.state) != 0).any()
    speaking = tracks.state == State.SPEAKING
    assert speaking.any()
    assert (tracks.mouth[~speaking, 0] == 0).all() and (tracks.viseme[~speaking] == Viseme.REST).all()
    assert tracks.mouth[speaking, 0].max() > 0.5
    assert np.abs(tracks.audio[np.repeat(~speaking, 640)]).max() == 0  # the avatar is silent when not speaking
    listening = np.repeat(tracks.state == State.LISTENING, 640)
    if listening.any():
        assert np.abs(tracks.far_audio[listening]).max() > 0.05
    assert tracks.blink.max() == 1.0
    assert tracks.head_pose.shape == (frames, 3) and np.abs(tracks.head_pose).max() <= 1.0
    assert tracks.head_pose.std(axis=0).min() > 0.01
    assert tracks.expression.shape == (frames, len(EXPRESSION_COMPONENTS))
    image, _ = render_frame(Identity.from_seed(1), tracks.frame_params(frames // 2), 64)
    assert image.shape == (64, 64, 3)


def test_a_record_frame_redrawn_with_other_sliders_changes_only_the_expression_and_its_head_pose():
    tracks = make_clip_tracks(np.random.default_rng(3), 2.0, Voice("en-us+f2"), Voice("en+m3"))
    record = {"mouth_open": tracks.mouth[:, 0], "mouth_shape": tracks.mouth[:, 1:], "blink": tracks.blink,
              "expression": tracks.expression, "head_pose": tracks.head_pose, "sway": tracks.sway}
    index = 20
    natural = tracks.frame_params(index)
    same = record_frame_params(record, index)
    np.testing.assert_array_equal(same.expression, natural.expression)
    assert (same.mouth_opening, same.blink, same.head_yaw, same.head_pitch, same.sway) == (
        natural.mouth_opening, natural.blink, natural.head_yaw, natural.head_pitch, natural.sway)
    sliders = np.array([0.9, -0.5, 0.3, 0.5, -0.25], np.float32)  # smile, brow, eye_open, head_yaw, head_pitch
    moved = record_frame_params(record, index, sliders)
    np.testing.assert_array_equal(moved.expression, sliders)
    shift = 0.6 * (sliders[3:] - tracks.expression[index, 3:])
    assert moved.head_yaw == pytest.approx(np.clip(natural.head_yaw + shift[0], -1, 1), abs=1e-6)
    assert moved.head_pitch == pytest.approx(np.clip(natural.head_pitch + shift[1], -1, 1), abs=1e-6)
    assert (moved.mouth_opening, moved.blink, moved.head_roll, moved.sway) == (
        natural.mouth_opening, natural.blink, natural.head_roll, natural.sway)
    identity = Identity.from_seed(4)
    assert not np.array_equal(render_frame(identity, moved, 64)[0], render_frame(identity, natural, 64)[0])


def test_sample_portrait_looks_like_a_face():
    """OpenCV's own face detector finds the rendered characters (the real-video builder relies on it too)."""
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    found = 0
    for seed in range(6):
        frame, _ = render_frame(Identity.from_seed(seed), FrameParams(), 256)
        gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
        found += len(detector.detectMultiScale(gray, 1.1, 3, minSize=(60, 60))) > 0
    assert found >= 3


def test_clips_of_any_seed_and_length_can_be_planned():
    """Segments cut short by the clip's end (even before their speech starts) are handled."""
    for seed in range(24):
        tracks = make_clip_tracks(np.random.default_rng(seed), 0.5 + seed * 0.1, Voice("en-us+m2", rate=190),
                                  Voice("en+f3", rate=190))
        assert tracks.frames == round((0.5 + seed * 0.1) * 25)
        assert all(0 <= start < end <= tracks.frames / 25 + 1e-6 for _, start, end, _ in tracks.phonemes)
