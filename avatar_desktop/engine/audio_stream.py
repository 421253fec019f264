"""AudioStream: the audio a streaming generator has received, and which of its video frames that audio allows.

Both generators (engine/streaming.py for the latent path, engine/motion_stream.py for the photo path) take audio in
pieces of any length and make a chunk of frames once the chunk's audio, with the encoder's lookahead, is there.
Video frame f covers samples [f * samples_per_frame, (f + 1) * samples_per_frame) of the stream.
"""

from __future__ import annotations

import numpy as np

from avatar_desktop.audio.windows import frame_windows, window_geometry
from avatar_desktop.config import AudioConfig


class AudioStream:
    """float32 16 kHz mono samples of one stream; keeps only what a future frame's window can still reach."""

    def __init__(self, config: AudioConfig, fps: int):
        self.config = config
        self.fps = fps
        self.samples_per_frame, self.past_samples, self.lookahead_samples = window_geometry(config, fps)
        self.clear()

    def clear(self) -> None:
        """A new stream: nothing received."""
        self._samples = np.zeros(0, np.float32)
        self._start = 0  # stream sample index of self._samples[0]

    @property
    def received(self) -> int:
        """Samples received since the stream began."""
        return self._start + len(self._samples)

    def push(self, audio: np.ndarray) -> None:
        """Append float32 (N,) samples."""
        samples = np.asarray(audio, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"audio must be mono, shape (N,); got shape {samples.shape}")
        if len(samples):
            self._samples = np.concatenate([self._samples, samples])

    def chunk_length(self, planned: int, next_frame: int, *, end_of_stream: bool) -> int | None:
        """Frames of the next chunk, from `next_frame`: `planned` once their audio and lookahead are there, else None.
        With end_of_stream the stream is complete (round(received / samples_per_frame) frames; silence past its
        end): the chunk is cut at the last frame, None once every frame is made."""
        if end_of_stream:
            length = min(planned, round(self.received / self.samples_per_frame) - next_frame)
            return length if length > 0 else None
        ready = (self.received - self.lookahead_samples) // self.samples_per_frame
        return planned if ready - next_frame >= planned else None

    def windows(self, first_frame: int, frames: int) -> np.ndarray:
        """Each frame's audio window float32 (1, T, W) for frames first_frame..first_frame+T-1, audio past the
        received end taken as silence."""
        needed_end = (first_frame + frames) * self.samples_per_frame + self.lookahead_samples
        samples = self._samples
        if self.received < needed_end:
            samples = np.concatenate([samples, np.zeros(needed_end - self.received, np.float32)])
        return frame_windows(samples, self._start, first_frame, frames, self.config, self.fps)

    def trim(self, next_frame: int) -> None:
        """Drop the samples that no window from `next_frame` on reaches (keeps long streams bounded)."""
        keep_from = next_frame * self.samples_per_frame - self.past_samples
        drop = min(max(0, keep_from - self._start), len(self._samples))
        if drop:
            self._samples = self._samples[drop:]
            self._start += drop
