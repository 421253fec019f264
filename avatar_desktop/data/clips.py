"""The training clip format (docs/DATA.md): one folder per clip, a manifest per data set. No pickle anywhere.

    <clip>/frames.mp4   lossless H.264 RGB (libx264rgb, qp 0), fps from clip.json; decodes to the exact pixels
    <clip>/audio.wav    16 kHz mono int16, the avatar's voice (frame f covers [f/fps, (f+1)/fps))
    <clip>/far_end.wav  16 kHz mono int16, the other party's voice (synthetic clips; silence when unknown)
    <clip>/record.npz   per-frame arrays (RECORD_FIELDS), loadable with np.load(allow_pickle=False)
    <clip>/clip.json    metadata: id, identity, voice, fps, frames, size, source
"""

from __future__ import annotations

import os
import shutil
import subprocess
import wave
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import imageio_ffmpeg
import numpy as np

from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.data.synthetic import FrameParams, Identity, render_frame
from avatar_desktop.errors import AvatarError, InputFileError
from avatar_desktop.files import read_json, write_json_atomic

FORMAT_VERSION = 1

RECORD_FIELDS: dict[str, str] = {
    "state": "int8 (T,): State id (0 speaking, 1 listening, 2 idle)",
    "viseme": "int8 (T,): Viseme id, -1 when unknown",
    "mouth_open": "float32 (T,): mouth opening in [0, 1], NaN when unknown",
    "mouth_shape": "float32 (T, 3): width, rounding in [-1, 1], teeth in [0, 1]; NaN when unknown",
    "expression": "float32 (T, 5): EXPRESSION_COMPONENTS in [-1, 1]; NaN when unknown",
    "head_pose": "float32 (T, 3): yaw, pitch, roll normalised to [-1, 1]; NaN when unknown",
    "blink": "float32 (T,): 0 eyes open .. 1 closed; NaN when unknown",
    "sway": "float32 (T, 2): head and body offset (dx, dy) in face units (synthetic clips); NaN when unknown",
    "face_box": "float32 (T, 4): x0, y0, x1, y1 in pixels of the clip's frames",
    "mouth_box": "float32 (T, 4): x0, y0, x1, y1 in pixels, a box that holds the mouth",
    "phoneme_start": "float32 (P,): seconds",
    "phoneme_end": "float32 (P,): seconds",
    "phoneme_viseme": "int8 (P,): Viseme id of each phoneme",
    "phoneme_name": "<U8 (P,): espeak-ng phoneme mnemonic",
}


class DatasetError(AvatarError):
    """Settings or an output folder that a data set cannot be built with."""


@dataclass
class Clip:
    """A loaded clip: frames uint8 (T, H, W, 3) RGB, audio float32 (N,) 16 kHz, record arrays, metadata."""

    path: Path
    frames: np.ndarray
    audio: np.ndarray
    far_audio: np.ndarray
    record: dict[str, np.ndarray]
    meta: dict[str, Any]

    @property
    def fps(self) -> int:
        return int(self.meta["fps"])

    def portrait(self) -> np.ndarray:
        """The portrait a model animates for this clip (H, W, 3) uint8: the identity's neutral render (synthetic
        clips), else the first frame (real videos)."""
        if "identity_seed" in self.meta:
            portrait, _ = render_frame(Identity.from_seed(int(self.meta["identity_seed"])), FrameParams(),
                                       self.frames.shape[1])
            return portrait
        return self.frames[0]


class FrameWriter:
    """Streams RGB frames (H, W, 3) uint8 into a lossless MP4 through the bundled ffmpeg. A context manager."""

    def __init__(self, path: Path, *, size: int, fps: int) -> None:
        self.path, self.size, self.frames = Path(path), size, 0
        self._process = subprocess.Popen(
            [imageio_ffmpeg.get_ffmpeg_exe(), "-y", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "rgb24",
             "-s", f"{size}x{size}", "-r", str(fps), "-i", "-", "-c:v", "libx264rgb", "-qp", "0",
             "-preset", "ultrafast", "-threads", "1", str(self.path)],
            stdin=subprocess.PIPE, stderr=subprocess.PIPE,
        )

    def write(self, frame: np.ndarray) -> None:
        if frame.shape != (self.size, self.size, 3) or frame.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 {(self.size, self.size, 3)}, got {frame.dtype} {frame.shape}")
        self._process.stdin.write(np.ascontiguousarray(frame).tobytes())
        self.frames += 1

    def close(self) -> None:
        if self._process.stdin and not self._process.stdin.closed:
            self._process.stdin.close()
        error = self._process.stderr.read().decode(errors="replace")
        if self._process.wait() != 0:
            raise RuntimeError(f"ffmpeg failed writing {self.path}: {error.strip()}")

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_frames(path: Path, size: int | None = None) -> np.ndarray:
    """Decode a video into uint8 (T, H, W, 3) RGB (square `size` when given, else the stream's own size)."""
    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    try:
        info = next(reader)
        width, height = info["size"]
        frames = [np.frombuffer(chunk, np.uint8).reshape(height, width, 3) for chunk in reader]
    finally:
        reader.close()
    if not frames:
        raise InputFileError(f"{path}: the video has no frames")
    stacked = np.stack(frames)
    if size is not None and stacked.shape[1:3] != (size, size):
        raise InputFileError(f"{path}: expected {size}x{size} frames, got {width}x{height}")
    return stacked


def write_wav(path: Path, audio: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """float32 (N,) in [-1, 1] -> 16-bit mono WAV."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes(pcm.tobytes())


def read_wav(path: Path) -> np.ndarray:
    """16-bit mono 16 kHz WAV -> float32 (N,) in [-1, 1]; anything else raises InputFileError."""
    try:
        with wave.open(str(path), "rb") as file:
            if (file.getnchannels(), file.getsampwidth(), file.getframerate()) != (1, 2, SAMPLE_RATE):
                raise InputFileError(
                    f"{path}: expected 16-bit mono {SAMPLE_RATE} Hz WAV, got {file.getsampwidth() * 8}-bit "
                    f"{file.getnchannels()} channel(s) at {file.getframerate()} Hz"
                )
            data = file.readframes(file.getnframes())
    except (wave.Error, EOFError) as error:
        raise InputFileError(f"{path}: not a readable WAV file ({error})") from None
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (temp file, then rename)."""
    write_json_atomic(path, data, indent=1)


def write_record(path: Path, record: dict[str, np.ndarray]) -> None:
    unknown = set(record) - set(RECORD_FIELDS)
    if unknown:
        raise ValueError(f"unknown record fields {sorted(unknown)}; known: {sorted(RECORD_FIELDS)}")
    np.savez_compressed(path, **record)


def publish_clip(temporary: Path, final: Path) -> None:
    """Move a fully written clip folder into place (a clip folder exists only once complete)."""
    if final.exists():
        shutil.rmtree(final)
    os.replace(temporary, final)


def load_clip(path: Path, *, with_frames: bool = True) -> Clip:
    """Read one clip folder (frames are decoded only when asked); InputFileError naming the clip when a file of it
    is missing or damaged."""
    path = Path(path)
    meta_path = path / "clip.json"
    if not meta_path.is_file():
        raise InputFileError(f"{path}: not a clip folder (no clip.json)")
    meta = read_json(meta_path, "clip description", InputFileError)
    try:
        with np.load(path / "record.npz", allow_pickle=False) as data:
            record = {name: data[name] for name in data.files}
        frames = read_frames(path / "frames.mp4") if with_frames else np.zeros((0, 0, 0, 3), np.uint8)
        far = path / "far_end.wav"
        audio = read_wav(path / "audio.wav")
        far_audio = read_wav(far) if far.exists() else np.zeros_like(audio)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, RuntimeError) as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[-1]  # ffmpeg's log: its last line
        raise InputFileError(f"clip {path} is damaged ({reason}): build the data set again with "
                             "`avatar-desktop dataset`") from None
    return Clip(path=path, frames=frames, audio=audio, far_audio=far_audio, record=record, meta=meta)


def load_manifest(root: Path) -> dict[str, Any]:
    """The data set's manifest.json; a clear error when `root` is not a data set or the manifest is damaged (not
    JSON, not an object, clips that are not a list of {"path": ...})."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        raise InputFileError(f"{root}: not a data set folder (no manifest.json); make one with `avatar-desktop dataset`")
    manifest = read_json(path, "data-set manifest", InputFileError)
    rebuild = "build the data set again with `avatar-desktop dataset`"
    if not isinstance(manifest, dict):
        raise InputFileError(f"data-set manifest {path} holds a {type(manifest).__name__}, not an object: {rebuild}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise InputFileError(f"{path}: format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    clips = manifest.get("clips", [])
    if not isinstance(clips, list) or not all(
            isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("split", ""), str)
            for entry in clips):
        raise InputFileError(f'data-set manifest {path}: "clips" must be a list of objects with a "path" and a '
                             f'"split": {rebuild}')
    return manifest


def open_output(out: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """Make `out` ready for a data set built with `settings`: a new or empty folder (returns {}), or one holding a
    run with the same settings, to resume (returns its manifest; half-written clips are removed). Anything else
    is refused, so nothing is ever overwritten silently."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DatasetError(f"{out} exists and is not a folder")
    previous: dict[str, Any] = {}
    if out.exists() and any(out.iterdir()):
        manifest_path = out / "manifest.json"
        if not manifest_path.is_file():
            raise DatasetError(f"{out} exists and is not an unfinished data set (no manifest.json): "
                               "choose a new folder or empty this one")
        previous = read_json(manifest_path, "data-set manifest", DatasetError)
        found = previous.get("settings") if isinstance(previous, dict) else None
        if found != settings:
            raise DatasetError(f"{out} holds a data set made with other settings ({found}); "
                               "resume with the same settings or choose a new folder")
    (out / "clips").mkdir(parents=True, exist_ok=True)
    for stale in (out / "clips").glob(".tmp-*"):
        shutil.rmtree(stale)
    return previous
