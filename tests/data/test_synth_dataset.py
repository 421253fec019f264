"""`dataset synth`: files and format, determinism, resuming, the split, viseme/audio alignment, bad input."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.config import SAMPLE_RATE, State
from avatar_desktop.data.clips import RECORD_FIELDS, load_clip, load_manifest, read_wav
from avatar_desktop.data.speech import SpeechError, Viseme
from avatar_desktop.data.synth_dataset import DatasetError, SynthConfig, build_synthetic, plan_clips

CONFIG = SynthConfig(identities=2, clips_per_identity=2, seconds=6.0, seed=3, size=128)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "data"
    build_synthetic(out, CONFIG, workers=2, progress=False)
    return out


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_every_clip_has_frames_audio_and_a_record(dataset):
    manifest = load_manifest(dataset)
    assert manifest["complete"] and len(manifest["clips"]) == 4
    for entry in manifest["clips"]:
        clip = load_clip(dataset / entry["path"])
        frames = clip.frames
        assert frames.shape == (150, 128, 128, 3) and frames.dtype == np.uint8
        assert len(clip.audio) == 150 * SAMPLE_RATE // 25 == len(clip.far_audio)
        assert set(clip.record) == set(RECORD_FIELDS)
        for name in ("state", "viseme", "mouth_open", "blink"):
            assert clip.record[name].shape == (150,)
        assert clip.record["expression"].shape == (150, 5) and clip.record["head_pose"].shape == (150, 3)
        assert (0 <= clip.record["mouth_open"]).all() and (clip.record["mouth_open"] <= 1).all()
        assert len(set(clip.record["state"].tolist())) >= 2  # state changes inside clips
        assert entry["split"] in ("train", "heldout")


def test_frames_are_the_record_rendered_losslessly(dataset):
    """The record holds every rendering parameter: re-rendering it gives the stored frames, bit for bit."""
    from avatar_desktop.data.synthetic import Identity, render_frame
    from avatar_desktop.data.timeline import record_frame_params

    clip = load_clip(dataset / "clips" / "id0001_c00")
    identity = Identity.from_seed(clip.meta["identity_seed"])
    for index in (0, 37, 149):
        params = record_frame_params(clip.record, index)
        frame, geometry = render_frame(identity, params, 128)
        np.testing.assert_array_equal(frame, clip.frames[index])
        np.testing.assert_allclose(geometry.mouth_box, clip.record["mouth_box"][index], rtol=1e-6)


def test_visemes_line_up_with_the_phonemes_in_the_audio(dataset):
    """Every p/b/m closes the mouth in the frames it covers, and those frames carry the speech."""
    checked = 0
    for folder in sorted((dataset / "clips").iterdir()):
        clip = load_clip(folder, with_frames=False)
        record = clip.record
        for start, end, viseme in zip(record["phoneme_start"], record["phoneme_end"], record["phoneme_viseme"]):
            if viseme != Viseme.CLOSED:
                continue
            first, last = int(np.floor(start * 25)), int(np.ceil(end * 25)) - 1
            window = range(first, min(last, 149) + 1)
            assert any(record["viseme"][f] == Viseme.CLOSED and record["mouth_open"][f] == 0 for f in window)
            assert all(record["state"][f] == State.SPEAKING for f in window)
            checked += 1
        speaking = np.repeat(record["state"] == State.SPEAKING, SAMPLE_RATE // 25)
        assert np.abs(clip.audio[~speaking]).max() == 0
        if speaking.any():
            assert np.abs(clip.audio[speaking]).max() > 0.05
        opened = record["mouth_open"] > 0.3
        assert (record["state"][opened] == State.SPEAKING).all()
    assert checked >= 5


def test_split_holds_out_identities_and_voices():
    plans = plan_clips(SynthConfig(identities=20, clips_per_identity=3, seconds=8, seed=0))
    heldout_ids = {p.identity for p in plans if p.heldout_identity}
    assert heldout_ids == {18, 19}
    assert all(p.split == "heldout" for p in plans if p.heldout_identity or p.heldout_voice)
    train_voices = {p.voice.name for p in plans if p.split == "train"}
    heldout_voices = {p.voice.name for p in plans if p.heldout_voice}
    assert heldout_voices and not train_voices & heldout_voices
    assert plans == plan_clips(SynthConfig(identities=20, clips_per_identity=3, seconds=8, seed=0))


@pytest.mark.slow
def test_same_seed_same_bytes_and_resume_makes_only_what_is_missing(dataset, tmp_path):
    again = tmp_path / "again"
    build_synthetic(again, CONFIG, workers=1, progress=False)
    assert _digest(again / "clips") == _digest(dataset / "clips")
    before = {p: p.stat().st_mtime_ns for p in (again / "clips").rglob("*.mp4")}
    missing = again / "clips" / "id0001_c01"
    for path in missing.iterdir():
        path.unlink()
    missing.rmdir()
    manifest = build_synthetic(again, CONFIG, workers=1, progress=False)
    assert manifest["complete"] and len(manifest["clips"]) == 4
    after = {p: p.stat().st_mtime_ns for p in (again / "clips").rglob("*.mp4")}
    assert [p for p in after if before.get(p) != after[p]] == [missing / "frames.mp4"]
    assert _digest(again / "clips") == _digest(dataset / "clips")


def test_existing_output_is_resumed_or_refused_never_overwritten(dataset, tmp_path):
    with pytest.raises(DatasetError, match="other settings"):
        build_synthetic(dataset, SynthConfig(identities=3, clips_per_identity=2, seconds=6.0, seed=3, size=128),
                        progress=False)
    foreign = tmp_path / "photos"
    foreign.mkdir()
    (foreign / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(DatasetError, match="not an unfinished data set"):
        build_synthetic(foreign, CONFIG, progress=False)
    assert (foreign / "holiday.jpg").read_bytes() == b"not ours"
    assert json.loads((dataset / "manifest.json").read_text())["settings"]["identities"] == 2


@pytest.mark.parametrize("config, message", [
    (SynthConfig(identities=0, clips_per_identity=1, seconds=4), "--identities must be at least 1, got 0"),
    (SynthConfig(identities=1, clips_per_identity=0, seconds=4), "--clips-per-identity"),
    (SynthConfig(identities=1, clips_per_identity=1, seconds=0), "--seconds"),
    (SynthConfig(identities=1, clips_per_identity=1, seconds=4, size=100), "--size"),
])
def test_bad_settings_are_refused(config, message, tmp_path):
    with pytest.raises(DatasetError, match=message):
        build_synthetic(tmp_path / "out", config, progress=False)
    assert not (tmp_path / "out").exists()


def test_unknown_voice_is_refused(tmp_path):
    config = SynthConfig(identities=1, clips_per_identity=1, seconds=4, voices=("en-us+f2", "klingon+m9"))
    with pytest.raises(SpeechError, match="klingon"):
        build_synthetic(tmp_path / "out", config, progress=False)


def test_cli_reports_bad_input_as_one_line(tmp_path, capsys):
    assert main(["dataset", "synth", "--out", str(tmp_path / "o"), "--identities", "0"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "avatar-desktop dataset: --identities must be at least 1, got 0"
    assert main(["dataset", "synth", "--out", str(tmp_path / "o"), "--identities", "1",
                 "--voices", "en-us+f2,nope+x"]) == 2
    assert "unknown espeak-ng voice 'nope+x'" in capsys.readouterr().err


def test_cli_makes_a_small_data_set(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["dataset", "synth", "--out", str(out), "--identities", "1", "--clips-per-identity", "1",
                 "--seconds", "2", "--size", "64", "--no-progress", "--voices", "en-us+f2,en+m3"]) == 0
    assert "1 clips" in capsys.readouterr().out
    clip = load_clip(out / "clips" / "id0000_c00")
    assert clip.frames.shape == (50, 64, 64, 3)
    assert clip.meta["voice"]["name"] in ("en-us+f2", "en+m3")


def test_assets_are_portraits_and_speech(tmp_path, capsys):
    import cv2

    assert main(["dataset", "assets", "--out", str(tmp_path)]) == 0
    portraits = sorted(tmp_path.glob("portrait_*.png"))
    assert len(portraits) == 4
    image = cv2.imread(str(portraits[0]))
    assert image.shape == (512, 512, 3)
    speech = read_wav(tmp_path / "sample_speech.wav")
    assert 3 * SAMPLE_RATE < len(speech) < 20 * SAMPLE_RATE and np.abs(speech).max() > 0.5
