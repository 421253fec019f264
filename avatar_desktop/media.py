"""Audio decoding and MP4 writing through the ffmpeg binary that ships inside the imageio-ffmpeg wheel."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import imageio_ffmpeg
import numpy as np

from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.errors import InputFileError, OutputError
from avatar_desktop.files import prepare_output_folder


def ffmpeg_input(path: str | Path) -> str:
    """A path as ffmpeg's input, through its `file:` protocol: a file name can never select another protocol."""
    return f"file:{Path(path)}"


def decode_audio(path: str | Path, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Any audio file ffmpeg reads (WAV at any rate, stereo, MP3, FLAC, a video's audio track) -> float32 (N,) mono.

    Channels are averaged and the rate converted to `sample_rate`. Raises InputFileError for missing or unreadable
    files and for files holding samples that are not finite numbers (NaN or infinity: a damaged float WAV); an
    empty result is returned as an empty array (callers decide whether that is an error).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"audio file {path} does not exist: choose an existing WAV (or other audio) file")
    command = [
        imageio_ffmpeg.get_ffmpeg_exe(), "-nostdin", "-v", "error", "-i", ffmpeg_input(path),
        "-vn", "-ac", "1", "-ar", str(sample_rate), "-f", "f32le", "-",
    ]
    result = subprocess.run(command, capture_output=True, check=False)
    if result.returncode != 0:
        reason = result.stderr.decode(errors="replace").strip().splitlines()
        raise InputFileError(f"audio file {path} could not be decoded ({reason[-1] if reason else 'unknown error'})")
    samples = np.frombuffer(result.stdout, dtype=np.float32).copy()
    broken = int(np.count_nonzero(~np.isfinite(samples)))
    if broken:
        raise InputFileError(f"audio file {path} holds {broken} of {len(samples)} samples that are not numbers (NaN or "
                             "infinity): repair or export it again, e.g. as 16-bit PCM WAV")
    return samples


def check_video_output(path: Path, *, overwrite: bool) -> None:
    """Refuse an output video path that cannot be written, before any work: not .mp4, an existing file when not
    `overwrite` (the message names --force), or a folder that cannot be created or written (OutputError)."""
    if path.suffix.lower() != ".mp4":
        raise OutputError(f"output {path} must end in .mp4")
    if path.is_dir():
        raise OutputError(f"output {path} is a folder: give a file name ending in .mp4")
    if path.exists() and not overwrite:
        raise OutputError(f"output {path} already exists: add --force to overwrite it, or choose another --out")
    prepare_output_folder(path.parent, "--out")


class Mp4Writer:
    """Write RGB frames to an H.264 MP4 with an audio track muxed in, atomically.

    Frames go to a hidden temporary file next to `path`, renamed into place only when the writer closes without
    error; on error (or Ctrl-C) the temporary file is deleted, so no half-written video is ever left behind.
    Use as a context manager; `write(frames)` takes uint8 (T, H, W, 3) or (H, W, 3).
    """

    def __init__(self, path: str | Path, *, size: tuple[int, int], fps: int, audio_path: str | Path | None = None):
        self.path = Path(path)
        check_video_output(self.path, overwrite=True)
        self.size = size
        self.frames_written = 0
        self._temp = self.path.with_name(f".{self.path.stem}.partial-{os.getpid()}.mp4")
        self._writer = imageio_ffmpeg.write_frames(
            str(self._temp), size, fps=fps, codec="libx264", quality=7, macro_block_size=1,
            audio_path=None if audio_path is None else ffmpeg_input(audio_path), audio_codec="aac",
            output_params=["-movflags", "+faststart"],
        )
        self._writer.send(None)

    def write(self, frames: np.ndarray) -> None:
        frames = frames[None] if frames.ndim == 3 else frames
        if frames.shape[1:] != (self.size[1], self.size[0], 3) or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (T, {self.size[1]}, {self.size[0]}, 3), got {frames.dtype} {frames.shape}")
        for frame in frames:
            self._writer.send(np.ascontiguousarray(frame))
        self.frames_written += len(frames)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        completed = False
        try:
            self._writer.close()
            completed = exc_type is None and self._temp.is_file()
        finally:
            if completed:
                os.replace(self._temp, self.path)
            else:
                self._temp.unlink(missing_ok=True)
