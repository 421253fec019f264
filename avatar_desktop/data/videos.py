"""`dataset videos`: real talking-head videos -> training clips in the synthetic clips' format.

Per video: probe the streams (ffmpeg), decode at 25 fps, detect the face in every frame with OpenCV's bundled
Haar cascades, bridge short misses, smooth the track into a steady square crop (median, then moving average),
decode again cropping each frame with a sub-pixel affine warp, resample the audio to 16 kHz mono, label each
frame speaking or idle with silero-vad, and cut clips of at most `seconds` along stretches where the face is
found. The head's roll, from the eyes (OpenCV's eye cascade), is smoothed the same way and undone by the crop,
and recorded; what a real video cannot tell (visemes, mouth opening, expression, yaw and pitch, blinks) is
recorded as unknown (-1 or NaN). The mouth box is the lower middle of the face box.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import imageio_ffmpeg
import numpy as np
from tqdm import tqdm

from avatar_desktop.audio.vad import speech_states
from avatar_desktop.config import EXPRESSION_COMPONENTS, SAMPLE_RATE, State
from avatar_desktop.data.synthetic import ROLL_RANGE_DEG
from avatar_desktop.data.clips import (FORMAT_VERSION, DatasetError, FrameWriter, open_output, publish_clip, write_json,
                                       write_record, write_wav)
from avatar_desktop.errors import InputFileError
from avatar_desktop.media import ffmpeg_input

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
FPS = 25
_DETECT_WIDTH = 480  # frames are downscaled to this width for detection
_MAX_GAP_FRAMES = 12  # missed detections bridged by interpolation (0.48 s)
_MIN_CLIP_FRAMES = FPS  # stretches shorter than one second are dropped
_MAX_ROLL_DEGREES = 25.0
_MIN_ROLL_FRACTION = 0.3  # eyes must be found in this share of the face frames, else the crop is not rotated


@dataclass(frozen=True)
class VideoConfig:
    """Crop size (pixels), longest clip (seconds), crop side as a multiple of the detected face box side."""

    size: int = 256
    seconds: float = 8.0
    crop_scale: float = 1.7

    def validate(self) -> None:
        if not 64 <= self.size <= 1024 or self.size % 16:
            raise DatasetError(f"--size must be a multiple of 16 in [64, 1024], got {self.size}")
        if not 1.0 <= self.seconds <= 600:
            raise DatasetError(f"--seconds must lie in [1, 600], got {self.seconds}")


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    has_audio: bool


def probe(path: Path) -> VideoInfo:
    """Stream facts from ffmpeg's description of the file; unreadable files raise InputFileError."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", ffmpeg_input(path)],
                            capture_output=True, text=True, errors="replace")
    video = re.search(r"Stream #\S+.*?: Video: .*?(\d{2,5})x(\d{2,5})", result.stderr)
    if video is None:
        reason = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "no output"
        raise InputFileError(f"{path}: cannot read a video stream ({reason})")
    return VideoInfo(width=int(video.group(1)), height=int(video.group(2)),
                     has_audio=re.search(r"Stream #\S+.*?: Audio: ", result.stderr) is not None)


def _frames(path: Path):
    """Yield uint8 (H, W, 3) RGB frames resampled to 25 fps."""
    reader = imageio_ffmpeg.read_frames(ffmpeg_input(path), pix_fmt="rgb24", output_params=["-vf", f"fps={FPS}"])
    try:
        width, height = next(reader)["size"]
        for chunk in reader:
            yield np.frombuffer(chunk, np.uint8).reshape(height, width, 3)
    finally:
        reader.close()


def read_audio(path: Path) -> np.ndarray:
    """The first audio track as float32 (N,) 16 kHz mono."""
    result = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", ffmpeg_input(path), "-vn",
                             "-ac", "1", "-ar", str(SAMPLE_RATE), "-f", "s16le", "-"], capture_output=True)
    if result.returncode != 0:
        raise InputFileError(f"{path}: cannot decode the audio ({result.stderr.decode(errors='replace').strip()})")
    return np.frombuffer(result.stdout, "<i2").astype(np.float32) / 32768.0


class FaceTracker:
    """Largest frontal face per frame (OpenCV Haar cascade), preferring the one nearest the previous face, and the
    head's roll from the two eyes (OpenCV's eye cascade) when both are found."""

    def __init__(self) -> None:
        self._face = _cascade("haarcascade_frontalface_default.xml")
        self._eyes = _cascade("haarcascade_eye.xml")
        self._previous: np.ndarray | None = None

    def detect(self, frame: np.ndarray) -> np.ndarray | None:
        """RGB frame (H, W, 3) -> (cx, cy, side) of the face in pixels and its roll in degrees (NaN when the eyes
        are not both found), or None when there is no face."""
        scale = min(1.0, _DETECT_WIDTH / frame.shape[1])
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        min_side = max(24, int(0.12 * min(gray.shape)))
        boxes = self._face.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
        if len(boxes) == 0:
            return None
        faces = np.array([[x + w / 2, y + h / 2, (w + h) / 2] for x, y, w, h in boxes], np.float64) / scale
        if self._previous is None:
            index = int(np.argmax(faces[:, 2]))
        else:
            index = int(np.argmin(np.linalg.norm(faces[:, :2] - self._previous[:2], axis=1) - faces[:, 2]))
        self._previous = faces[index]
        return np.append(faces[index], self._roll(gray, boxes[index]))

    def _roll(self, gray: np.ndarray, box: np.ndarray) -> float:
        """Angle (degrees, clockwise in the image) of the line from the left eye to the right eye; NaN if unsure."""
        x, y, w, h = (int(v) for v in box)
        upper = gray[y: y + int(0.6 * h), x: x + w]
        eyes = self._eyes.detectMultiScale(upper, scaleFactor=1.1, minNeighbors=5, minSize=(w // 8, w // 8),
                                           maxSize=(w // 3, w // 3))
        centres = [(ex + ew / 2, ey + eh / 2, ew) for ex, ey, ew, eh in eyes]
        left = [c for c in centres if c[0] < w / 2]
        right = [c for c in centres if c[0] >= w / 2]
        if not left or not right:
            return float("nan")
        (lx, ly, _), (rx, ry, _) = max(left, key=lambda c: c[2]), max(right, key=lambda c: c[2])
        angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        return angle if abs(angle) <= _MAX_ROLL_DEGREES else float("nan")


def _cascade(name: str) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise InputFileError(f"OpenCV's cascade {path} is missing; reinstall opencv-python-headless<5")
    return cascade


def _stretches(found: np.ndarray) -> list[tuple[int, int]]:
    """Runs [start, end) of frames with a face, after bridging gaps of at most _MAX_GAP_FRAMES."""
    runs, start, gap = [], None, 0
    for index, ok in enumerate(found):
        if ok:
            if start is None:
                start = index
            gap = 0
        elif start is not None:
            gap += 1
            if gap > _MAX_GAP_FRAMES:
                runs.append((start, index - gap + 1))
                start, gap = None, 0
    if start is not None:
        runs.append((start, len(found) - gap))
    return runs


def smooth_track(boxes: np.ndarray, found: np.ndarray, window: int = 9) -> np.ndarray:
    """(T, K) per-frame measurements (face cx, cy, side; or roll) with misses -> a steady (T, K) track: misses
    interpolated, then a running median (removes detector jumps) and a running mean (removes jitter) of `window`
    frames."""
    t = np.arange(len(boxes))
    filled = np.stack([np.interp(t, t[found], boxes[found, k]) for k in range(boxes.shape[1])], axis=1)
    half = window // 2
    padded = np.pad(filled, ((half, half), (0, 0)), mode="edge")
    median = np.stack([np.median(padded[i:i + window], axis=0) for i in range(len(filled))])
    padded = np.pad(median, ((half, half), (0, 0)), mode="edge")
    kernel = np.ones(window) / window
    return np.stack([np.convolve(padded[:, k], kernel, mode="valid") for k in range(boxes.shape[1])], axis=1)


def crop_face(frame: np.ndarray, centre_x: float, centre_y: float, side: float, size: int,
              roll_degrees: float = 0.0) -> np.ndarray:
    """Square crop of `side` pixels centred on the point and turned by `roll_degrees` (so that a head rolled by
    that much comes out upright), resampled to (size, size, 3); edges replicate."""
    scale = size / side
    matrix = cv2.getRotationMatrix2D((centre_x, centre_y), roll_degrees, scale)
    matrix[:, 2] += np.array([size / 2 - centre_x, size / 2 - centre_y])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.warpAffine(frame, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)


def _unknown_record(frames: int) -> dict[str, np.ndarray]:
    nan = np.float32("nan")
    return {
        "viseme": np.full(frames, -1, np.int8),
        "mouth_open": np.full(frames, nan, np.float32),
        "mouth_shape": np.full((frames, 3), nan, np.float32),
        "expression": np.full((frames, len(EXPRESSION_COMPONENTS)), nan, np.float32),
        "blink": np.full(frames, nan, np.float32),
        "sway": np.full((frames, 2), nan, np.float32),
        "phoneme_start": np.zeros(0, np.float32),
        "phoneme_end": np.zeros(0, np.float32),
        "phoneme_viseme": np.zeros(0, np.int8),
        "phoneme_name": np.zeros(0, "<U8"),
    }


def _clip_name(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", path.stem).strip("-") or "video"


def process_video(path: Path, out: Path, config: VideoConfig) -> list[dict[str, Any]]:
    """Turn one video into clips under out/clips/; returns their manifest entries. Raises InputFileError for a
    video that cannot be read, has no audio track, or shows no face."""
    info = probe(path)
    if not info.has_audio:
        raise InputFileError(f"{path}: the video has no audio track (training clips need the voice)")
    tracker = FaceTracker()
    detections = [tracker.detect(frame) for frame in _frames(path)]
    if not detections:
        raise InputFileError(f"{path}: the video has no frames")
    found = np.array([d is not None for d in detections])
    if not found.any():
        raise InputFileError(f"{path}: no face found in any of its {len(found)} frames")
    measured = np.array([d if d is not None else (0.0, 0.0, 0.0, np.nan) for d in detections], np.float64)
    track = smooth_track(measured[:, :3], found)
    with_roll = np.isfinite(measured[:, 3])
    roll = (smooth_track(measured[:, 3:], with_roll)[:, 0] if with_roll.sum() >= _MIN_ROLL_FRACTION * found.sum()
            else np.zeros(len(found)))
    audio = read_audio(path)
    total = len(found)
    audio = np.pad(audio, (0, max(0, total * SAMPLE_RATE // FPS - len(audio))))[: total * SAMPLE_RATE // FPS]
    states = speech_states(audio, total, FPS)

    longest = int(config.seconds * FPS)
    spans = [(start, min(end, start + longest)) for begin, end in _stretches(found)
             for start in range(begin, end, longest) if min(end, start + longest) - start >= _MIN_CLIP_FRAMES]
    if not spans:
        raise InputFileError(f"{path}: the face is found in no stretch of at least one second")
    name = _clip_name(path)
    entries, writers = [], {}
    temporaries = {}
    for index, (start, end) in enumerate(spans):
        clip_id = f"{name}_{index:03d}"
        temporaries[clip_id] = out / "clips" / f".tmp-{clip_id}"
        temporaries[clip_id].mkdir(parents=True)
        writers[(start, end)] = (clip_id, FrameWriter(temporaries[clip_id] / "frames.mp4", size=config.size, fps=FPS))
    try:
        for frame_index, frame in enumerate(_frames(path)):
            for (start, end), (_, writer) in writers.items():
                if start <= frame_index < end:
                    cx, cy, side = track[frame_index]
                    writer.write(crop_face(frame, cx, cy, side * config.crop_scale, config.size, roll[frame_index]))
    finally:
        for _, writer in writers.values():
            writer.close()
    for (start, end), (clip_id, writer) in writers.items():
        frames = end - start
        if writer.frames != frames:
            raise InputFileError(f"{path}: decoded {writer.frames} frames for clip {clip_id}, expected {frames}")
        folder = temporaries[clip_id]
        per_frame = SAMPLE_RATE // FPS
        write_wav(folder / "audio.wav", audio[start * per_frame: end * per_frame])
        face_side = config.size / config.crop_scale
        low, high = (config.size - face_side) / 2, (config.size + face_side) / 2
        face_box = np.tile(np.array([low, low, high, high], np.float32), (frames, 1))
        mouth_box = np.tile(np.array([low + 0.22 * face_side, low + 0.6 * face_side, low + 0.78 * face_side,
                                      low + 0.98 * face_side], np.float32), (frames, 1))
        head_pose = np.full((frames, 3), np.nan, np.float32)
        head_pose[:, 2] = np.clip(roll[start:end] / ROLL_RANGE_DEG, -1, 1)
        write_record(folder / "record.npz", {"state": states[start:end], "face_box": face_box,
                                             "mouth_box": mouth_box, **_unknown_record(frames),
                                             "head_pose": head_pose})
        entry = {"id": clip_id, "path": f"clips/{clip_id}", "identity": name, "voice": name, "split": "train",
                 "frames": frames, "seconds": frames / FPS, "video": path.name, "start_seconds": start / FPS}
        write_json(folder / "clip.json", {**entry, "fps": FPS, "size": config.size, "source": "video",
                                          "detected_fraction": float(found[start:end].mean())})
        publish_clip(folder, out / "clips" / clip_id)
        entries.append(entry)
    return entries


def _list_videos(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise InputFileError(f"{source}: no such file or folder")
    videos = sorted(p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)
    if not videos:
        raise InputFileError(f"{source}: no videos found (looked for {', '.join(VIDEO_SUFFIXES)})")
    return videos


def build_from_videos(source: Path, out: Path, config: VideoConfig, *, progress: bool = True) -> dict[str, Any]:
    """Make clips from one video or a folder of them. A single bad video raises; in a folder, bad videos are
    skipped and listed in the manifest (`skipped`), unless none is usable. Resumes a run with the same settings
    (videos already done are kept)."""
    config.validate()
    source, out = Path(source), Path(out)
    videos = _list_videos(source)
    settings = {**asdict(config), "source": str(source.resolve()), "fps": FPS}
    previous = open_output(out, settings)
    done = {v["file"]: v for v in previous.get("videos", [])}
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, str]] = list(previous.get("skipped", []))
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for video in tqdm(videos, unit="video", desc="dataset videos", disable=not progress):
        key = str(video.relative_to(source)) if source.is_dir() else video.name
        if key in done:
            results.append(done[key])
            continue
        if any(s["file"] == key for s in skipped):
            continue
        try:
            entries = process_video(video, out, config)
        except InputFileError as error:
            if source.is_file():
                raise
            skipped.append({"file": key, "reason": str(error)})
            print(f"skipped: {error}")
            continue
        results.append({"file": key, "clips": entries})
        write_json(out / "manifest.json", _video_manifest(settings, results, skipped, complete=False))
    if not any(v["clips"] for v in results):
        reasons = "; ".join(s["reason"] for s in skipped)
        raise InputFileError(f"no usable video in {source}: {reasons}")
    manifest = _video_manifest(settings, results, skipped, complete=True)
    write_json(out / "manifest.json", manifest)
    return manifest


def _video_manifest(settings: dict[str, Any], videos: list[dict[str, Any]], skipped: list[dict[str, str]],
                    complete: bool) -> dict[str, Any]:
    return {"format_version": FORMAT_VERSION, "source": "video", "settings": settings, "fps": FPS,
            "size": settings["size"], "complete": complete,
            "states": {state.name.lower(): int(state) for state in State},
            "expression_components": list(EXPRESSION_COMPONENTS),
            "clips": [clip for video in videos for clip in video["clips"]], "videos": videos, "skipped": skipped}
