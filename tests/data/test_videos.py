"""`dataset videos` on MP4s made here from a real photograph (scikit-image's astronaut) and real espeak speech."""

import subprocess
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
from skimage import data as skimage_data

from avatar_desktop.cli import main
from avatar_desktop.config import SAMPLE_RATE, State
from avatar_desktop.data.clips import DatasetError, load_clip, load_manifest, write_wav
from avatar_desktop.data.speech import Voice, speak
from avatar_desktop.data.synthetic import ROLL_RANGE_DEG
from avatar_desktop.data.videos import VideoConfig, build_from_videos, probe, smooth_track
from avatar_desktop.errors import InputFileError

FPS = 25


def ROLL_DEGREES(frame: int) -> float:  # noqa: N802  (a constant of the test video, as a function of the frame)
    """Counter-clockwise turn of the photo in the test video."""
    return 7.0 * np.sin(frame / 20)

SPEECH = ((1.0, "Maybe Bob will bring a blue umbrella."), (4.6, "Paula paints the purple boat."))


def _speech_track(seconds: float) -> np.ndarray:
    audio = np.zeros(int(seconds * SAMPLE_RATE), np.float32)
    for start, text in SPEECH:
        voice = speak(text, Voice("en-us+m3", rate=170)).audio
        first = int(start * SAMPLE_RATE)
        audio[first:first + len(voice)] = voice[: len(audio) - first]
    return audio


def _frames(seconds: float, loud: np.ndarray | None) -> np.ndarray:
    """The astronaut on a 640x480 canvas, drifting a few pixels from frame to frame; brighter in frames whose
    audio is loud (a visual mark of the sound, to check alignment after cropping)."""
    photo = skimage_data.astronaut()
    count = int(seconds * FPS)
    frames = np.empty((count, 480, 640, 3), np.uint8)
    for index in range(count):
        dx, dy = 6 * np.sin(index / 9), 4 * np.cos(index / 13)
        matrix = cv2.getRotationMatrix2D((256, 200), float(ROLL_DEGREES(index)), 0.85)
        matrix[:, 2] += (40 + dx, 20 + dy)
        frame = cv2.warpAffine(photo, matrix, (640, 480), borderValue=(90, 90, 110))
        gain = 1.0 if loud is None or loud[index] else 0.7
        frames[index] = np.clip(frame * gain, 0, 255).astype(np.uint8)
    return frames


def _mux(path: Path, frames: np.ndarray, audio: np.ndarray | None, tmp: Path) -> Path:
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
               "-s", f"{frames.shape[2]}x{frames.shape[1]}", "-r", str(FPS), "-i", "-"]
    if audio is not None:
        wav = tmp / f"{path.stem}.wav"
        write_wav(wav, audio)
        command += ["-i", str(wav), "-c:a", "aac", "-b:a", "96k"]
    command += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", "18", "-preset", "veryfast", "-shortest", str(path)]
    subprocess.run(command, input=frames.tobytes(), check=True)
    return path


@pytest.fixture(scope="module")
def talking_video(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("videos")
    seconds = 7.0
    audio = _speech_track(seconds)
    per_frame = SAMPLE_RATE // FPS
    rms = np.sqrt((audio.reshape(-1, per_frame) ** 2).mean(axis=1))
    folder = tmp / "in"
    folder.mkdir()
    _mux(folder / "astronaut talk.mp4", _frames(seconds, rms > 0.02), audio, tmp)
    return folder / "astronaut talk.mp4"


@pytest.mark.slow
def test_video_becomes_aligned_face_clips(talking_video, tmp_path):
    manifest = build_from_videos(talking_video.parent, tmp_path / "out", VideoConfig(size=128, seconds=4.0),
                                 progress=False)
    assert manifest == load_manifest(tmp_path / "out")
    assert [v["file"] for v in manifest["videos"]] == ["astronaut talk.mp4"] and not manifest["skipped"]
    clips = [load_clip(tmp_path / "out" / entry["path"]) for entry in manifest["clips"]]
    assert [c.frames.shape[0] for c in clips] == [100, 75]  # 7 s at 25 fps, cut at 4 s
    frames = np.concatenate([c.frames for c in clips])
    audio = np.concatenate([c.audio for c in clips])
    states = np.concatenate([c.record["state"] for c in clips])
    assert len(audio) == len(frames) * SAMPLE_RATE // FPS
    assert all(c.meta["detected_fraction"] == 1.0 for c in clips)  # the face is found in every frame

    # the crop holds the face steadily: the astronaut's face stays near the centre of every frame
    detector = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
    centres = []
    for frame in frames[::10]:
        boxes = detector.detectMultiScale(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1.1, 4, minSize=(40, 40))
        assert len(boxes) >= 1
        x, y, w, h = max(boxes, key=lambda b: b[2])
        centres.append((x + w / 2, y + h / 2))
    assert np.abs(np.array(centres) - 64).max() < 14

    # sound and picture stay aligned: frames were made brighter exactly where the audio is loud
    rms = np.sqrt((audio.reshape(len(frames), -1) ** 2).mean(axis=1))
    brightness = frames.reshape(len(frames), -1).mean(axis=1)
    loud = rms > 0.02
    assert brightness[loud].mean() > brightness[~loud].mean() + 15
    agreement = {lag: np.mean((np.roll(brightness, -lag) > brightness.mean()) == loud) for lag in range(-3, 4)}
    assert max(agreement, key=agreement.get) == 0 and agreement[0] > 0.9

    # voice activity: speaking during the two sentences, idle in the silences around them
    t = np.arange(len(states)) / FPS
    assert (states[(t > 1.3) & (t < 2.5)] == State.SPEAKING).mean() > 0.9
    assert (states[t < 0.8] == State.IDLE).all() and (states[(t > 3.6) & (t < 4.4)] == State.IDLE).all()
    assert np.isnan(clips[0].record["mouth_open"]).all() and (clips[0].record["viseme"] == -1).all()

    # the head's roll is measured (a counter-clockwise turn of the photo is a negative roll; the astronaut's own
    # head is tilted by a couple of degrees, hence the means are compared apart) and undone by the crop
    roll = np.concatenate([c.record["head_pose"][:, 2] for c in clips]) * ROLL_RANGE_DEG
    applied = -np.array([ROLL_DEGREES(f) for f in range(len(roll))])
    assert np.corrcoef(roll, applied)[0, 1] > 0.85
    assert np.abs((roll - roll.mean()) - (applied - applied.mean())).mean() < 2.0

    # the same command again resumes: the video is done, nothing is rewritten
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("frames.mp4")}
    again = build_from_videos(talking_video.parent, tmp_path / "out", VideoConfig(size=128, seconds=4.0),
                              progress=False)
    assert again["clips"] == manifest["clips"]
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "out").rglob("frames.mp4")} == written


def test_video_without_audio_is_refused(tmp_path):
    video = _mux(tmp_path / "silent.mp4", _frames(1.5, None), None, tmp_path)
    assert not probe(video).has_audio
    with pytest.raises(InputFileError, match="no audio track"):
        build_from_videos(video, tmp_path / "out", VideoConfig(size=64), progress=False)


def test_video_without_a_face_is_refused(tmp_path):
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(0, 255, (1, 240, 320, 3), dtype=np.uint8), 30, axis=0)
    video = _mux(tmp_path / "wall.mp4", frames, np.zeros(int(1.2 * SAMPLE_RATE), np.float32) + 0.01, tmp_path)
    with pytest.raises(InputFileError, match="no face found in any of its 30 frames"):
        build_from_videos(video, tmp_path / "out", VideoConfig(size=64), progress=False)


def test_unreadable_file_and_empty_folder_are_refused(tmp_path, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00not a video at all" * 100)
    with pytest.raises(InputFileError, match="cannot read a video stream"):
        build_from_videos(broken, tmp_path / "out", VideoConfig(size=64), progress=False)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["dataset", "videos", "--in", str(empty), "--out", str(tmp_path / "o2")]) == 2
    assert "no videos found" in capsys.readouterr().err
    # in a folder, bad videos are skipped with their reason; a folder with nothing usable is an error
    assert main(["dataset", "videos", "--in", str(tmp_path), "--out", str(tmp_path / "o3"), "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert "no usable video" in captured.err and "broken.mp4: cannot read a video stream" in captured.err
    assert "skipped:" in captured.out


def test_output_folder_of_something_else_is_refused(talking_video, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not an unfinished data set"):
        build_from_videos(talking_video, tmp_path, VideoConfig(size=64), progress=False)


def test_track_smoothing_bridges_misses_and_removes_jumps():
    t = np.arange(60)
    boxes = np.stack([100 + 0.5 * t, 80 + 0 * t, 50 + 0 * t], 1).astype(float)
    found = np.ones(60, bool)
    found[20:25] = False
    boxes[40] = (300, 300, 200)  # one wild detection
    track = smooth_track(boxes, found)
    assert np.abs(track[:, 0] - (100 + 0.5 * t))[5:-5].max() < 0.6
    assert np.abs(track[:, 2] - 50).max() < 1e-9
