"""A video-file sink: records what the camera shows (H.264 through the ffmpeg binary of imageio-ffmpeg)."""

from __future__ import annotations

import queue
import threading
from pathlib import Path

import numpy as np

from avatar_desktop.errors import AvatarError


class VideoFileSink:
    """Encodes canvases to `path` in its own thread; `send` only copies into a bounded queue (never blocks the
    camera): when the encoder falls `max_queue` frames behind, frames are dropped and counted in `dropped`."""

    def __init__(self, path: Path, *, fps: float, max_queue: int = 50):
        if path.suffix.lower() not in (".mp4", ".mkv", ".mov"):
            raise AvatarError(f"record file {path}: expected a .mp4, .mkv or .mov name")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.name = f"recording {path}"
        self.fps = fps
        self.dropped = 0
        self.frames = 0
        self._queue: queue.Queue[np.ndarray | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self.error: Exception | None = None

    def send(self, canvas: np.ndarray, media_time: float) -> None:
        """canvas: uint8 (H, W, 3) RGB; the size of the first canvas fixes the video's size."""
        if self.error is not None:
            raise self.error
        if self._thread is None:
            self._thread = threading.Thread(target=self._encode, args=canvas.shape[:2], name="video-file", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait(canvas.copy())
        except queue.Full:
            self.dropped += 1

    def _encode(self, height: int, width: int) -> None:
        import imageio_ffmpeg

        writer = imageio_ffmpeg.write_frames(
            str(self.path), (width, height), fps=self.fps, codec="libx264", pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p", output_params=["-preset", "ultrafast"], macro_block_size=1,
        )
        try:
            writer.send(None)  # start ffmpeg
            while (canvas := self._queue.get()) is not None:
                writer.send(canvas)
                self.frames += 1
        except Exception as error:  # disk full, ffmpeg gone: the next send() reports it and the sink is dropped
            self.error = error
        finally:
            writer.close()

    def close(self) -> None:
        """Finish the file (waits for the queued frames to be encoded)."""
        if self._thread is not None and self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(60)
