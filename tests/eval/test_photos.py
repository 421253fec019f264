"""`eval --photos`: the measurements on arrays discriminate, the speech plan holds what the numbers need, bad input
gets a clear message, and the astronaut and its variants through the whole photo path meet issue 22's numbers."""

import json

import cv2
import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.config import State
from avatar_desktop.data.speech import Viseme
from avatar_desktop.eval import photos


def test_speech_plan_has_every_state_and_closures():
    speech = photos.photo_speech(6.0, seed=0)
    assert speech.frames == 150
    assert len(speech.audio) == 150 * 640
    assert set(np.unique(speech.states)) == {int(s) for s in State}
    windows = speech.closure_windows()
    assert windows and all(speech.viseme[a: b + 1].tolist().count(int(Viseme.CLOSED)) for a, b in windows)
    assert (speech.opening[speech.states != State.SPEAKING] == 0).all()
    pauses = speech.speech_pauses()
    assert (speech.states[pauses] == State.SPEAKING).all() and (speech.viseme[pauses] == Viseme.REST).all()
    again = photos.photo_speech(6.0, seed=0)  # seeded (espeak-ng's timings vary by a few samples between calls)
    assert np.array_equal(again.states, speech.states) and [p[0] for p in again.phonemes] == [p[0] for p in
                                                                                               speech.phonemes]
    looped = speech.looped(400)
    assert looped.frames == 400 and len(looped.audio) == 400 * 640
    assert np.array_equal(looped.states[150:300], speech.states)


def test_lip_sync_finds_the_lag_and_survives_missing_frames():
    truth = np.clip(np.sin(np.arange(200) / 3.0), 0, None)
    late = np.concatenate([np.zeros(2), truth[:-2]]) * 0.1 + 0.03  # face widths, 2 frames late
    late[[10, 50, 51]] = np.nan  # the mesh missed these
    result = photos.lip_sync(late, truth)
    assert result["lag_frames"] == 2 and result["r_at_lag"] > 0.99
    assert 0.3 < result["r"] < 0.95
    assert photos.lip_sync(np.full(200, np.nan), truth)["lag_frames"] is None


def test_closure_rate_against_chance():
    frames = 300
    windows = [(20, 21), (80, 82), (150, 150), (220, 221)]
    speech_frames = np.ones(frames, bool)
    closed = np.zeros(frames, bool)
    for a, _ in windows:
        closed[a] = True
    rate, chance = photos.closure(closed, windows, speech_frames)
    assert rate == 1.0 and chance < 0.05
    rate, chance = photos.closure(np.ones(frames, bool), windows, speech_frames)
    assert rate == 1.0 and chance == 1.0  # a mouth always closed closes by chance too
    rate, _ = photos.closure(np.roll(closed, 5), windows, speech_frames)
    assert rate == 0.0


def test_psnr_outside_the_dilated_head_and_ssim_inside():
    neutral = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    head = np.zeros((120, 160), bool)
    head[30:90, 50:110] = True
    region = photos.HeadRegion.from_mask(head)
    moved = neutral.copy()
    moved[32:88, 52:108] = 255 - moved[32:88, 52:108]  # a change inside the head only
    assert photos.psnr_from_error(*photos.squared_error_outside(moved, neutral, region)) == 100.0
    assert photos.ssim_inside(moved, neutral, region) < 0.5
    assert photos.ssim_inside(neutral, neutral, region) == pytest.approx(1.0)
    leaked = moved.copy()
    leaked[0:10] = np.clip(leaked[0:10].astype(int) + 20, 0, 255)  # the background changed
    assert photos.psnr_from_error(*photos.squared_error_outside(leaked, neutral, region)) < 40


def test_empty_folder_and_conflicting_options(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("not a photo")
    assert main(["eval", "--photos", str(tmp_path)]) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["eval", "--photos", str(tmp_path / "missing")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert main(["eval", "--photos", str(tmp_path), "--data", str(tmp_path)]) == 2
    assert "not both" in capsys.readouterr().err
    assert main(["eval", "--clips", "2"]) == 2
    assert "--photos" in capsys.readouterr().err


def astronaut_variants() -> dict[str, np.ndarray]:
    """skimage's astronaut (512 px, the face about 94 px wide) and the variants issue 22 names."""
    from skimage import data

    astronaut = data.astronaut()  # uint8 (512, 512, 3) RGB
    rotation = cv2.getRotationMatrix2D((256, 256), 15, 1.0)
    return {
        "astronaut.png": astronaut,
        "mirrored.png": np.ascontiguousarray(astronaut[:, ::-1]),
        "rotated15.png": cv2.warpAffine(astronaut, rotation, (512, 512), borderMode=cv2.BORDER_REFLECT),
        "face200.png": cv2.resize(astronaut, (1096, 1096), interpolation=cv2.INTER_CUBIC),  # face about 200 px
        "cropped.png": astronaut[20:420, 100:500],  # the face near the left edge, not centred
        "uhd3840.png": cv2.resize(astronaut, (3840, 3840), interpolation=cv2.INTER_CUBIC),
    }


def write_photos(folder, photos: dict[str, np.ndarray]):
    folder.mkdir()
    for name, image in photos.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


@pytest.mark.slow
def test_closed_rule_on_the_true_opening_of_a_photo_with_parted_lips():
    """The astronaut's lips are parted in the photo. Rendered from the plan's true opening and measured by the mesh,
    every p/b/m closes, the pauses and quiet states read closed, and random speech frames read closed about as often
    as the true opening below 0.05 does (the rule once built on the photo's own gap gave a chance of 0.96 here)."""
    from avatar_desktop.face import FaceFinder, find_face
    from avatar_desktop.motion_code import MOTION_INDEX, neutral_code
    from avatar_desktop.render import PhotoRenderer

    photo = astronaut_variants()["astronaut.png"]
    renderer = PhotoRenderer(photo, find_face(photo))
    speech = photos.photo_speech(12.0, seed=0)
    finder = FaceFinder()
    try:
        gauge = photos.LipGauge(renderer, finder)
        opening, closed_below = np.full(speech.frames, np.nan), np.full(speech.frames, np.nan)
        for index, true_opening in enumerate(speech.opening):
            code = neutral_code()[0]
            code[MOTION_INDEX["mouth_open"]] = true_opening
            opening[index], closed_below[index] = gauge(renderer.render(code), code)
        half_open = neutral_code()[0]
        half_open[MOTION_INDEX["mouth_open"]] = 0.4
        gap, below = photos.LipGauge(renderer, finder)(renderer.render(half_open), half_open)
    finally:
        finder.close()
    assert np.isfinite(opening).all()
    closed = opening < closed_below
    speech_frames = speech.viseme != int(Viseme.REST)
    rate, chance = photos.closure(closed, speech.closure_windows(), speech_frames)
    true_rate, true_chance = photos.closure(speech.opening < 0.05, speech.closure_windows(), speech_frames)
    assert rate == true_rate == 1.0
    assert abs(chance - true_chance) < 0.1 and chance < 0.6
    quiet = speech.speech_pauses() | (speech.states != State.SPEAKING)
    assert closed[quiet].all()
    assert gap > below  # a half-open mouth is open


@pytest.mark.slow
def test_pipeline_reports_every_photo_and_its_errors(tmp_path, capsys):
    """The whole path with a tiny random motion model: what does not depend on the model's quality holds (the face
    is found in every frame, nothing outside the head changes), bad photos are reported and the rest evaluated."""
    from avatar_desktop.models.motion import build_motion_model
    from avatar_desktop.models.store import save_motion_model

    model = save_motion_model(build_motion_model(seed=0), tmp_path / "motion")
    folder = write_photos(tmp_path / "photos", {"face200.png": astronaut_variants()["face200.png"],
                                                "grey.png": np.full((300, 300, 3), 128, np.uint8)})
    (folder / "broken.jpg").write_bytes(b"not an image")
    plot = tmp_path / "mouth.png"
    code = main(["eval", "--photos", str(folder), "--model", str(model), "--seconds", "4", "--minutes", "0.05",
                 "--json", "--plot", str(plot)])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    rows = {row["photo"]: row for row in report["photos"]}
    assert "not a readable image" in rows["broken.jpg"]["error"]
    assert "no face found" in rows["grey.png"]["error"]
    row = rows["face200.png"]
    assert row["frame_size"] == [1096, 1096] and row["frames"] == 100
    assert row["checks"]["face_found"]["pass"] and row["checks"]["psnr_outside_head"]["pass"]
    assert set(row["checks"]) == set(photos.THRESHOLDS) and report["mean"]["passed"]["face_found"] == "1/1"
    assert row["drift"]["window_seconds"] == pytest.approx(1.48)
    assert plot.stat().st_size > 1000
    table = photos.format_report(report)  # what the command prints without --json
    assert "face200.png" in table and "grey.png: not evaluated" in table and "mean" in table


@pytest.mark.slow
def test_astronaut_and_variants_meet_the_issue_thresholds(tmp_path, capsys):
    """Issue 22's must-show numbers on the astronaut and its variants with the shipped motion model."""
    folder = write_photos(tmp_path / "photos", astronaut_variants())
    assert main(["eval", "--photos", str(folder), "--seconds", "8", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    errors = [f"{row['photo']}: {row['error']}" for row in report["photos"] if "error" in row]
    failures = [f"{row['photo']} {name} {entry['value']} (needs {entry['threshold']})"
                for row in report["photos"] if "checks" in row for name, entry in row["checks"].items()
                if not entry["pass"]]
    assert not errors and not failures, "; ".join(errors + failures)
