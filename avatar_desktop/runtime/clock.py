"""The media clock: the microphone's sample counter, read as seconds and mapped to `time.monotonic()`."""

from __future__ import annotations

import time
from collections import deque

from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.runtime.rings import AudioRing


class MicClock:
    """Mic-clock seconds (`samples / 16000`) now, between blocks too.

    Each block's meta holds the monotonic time it was copied in; `offset = copy time - end sample / 16000`. Blocks
    arrive late by a jittering amount, never early, so the smallest offset of the last `window_s` seconds is the
    best estimate (the window follows the slow drift between the sound card's clock and the system's).
    """

    def __init__(self, ring: AudioRing, *, window_s: float = 3.0):
        self.ring = ring
        self.window_s = window_s
        self._offsets: deque[tuple[float, float]] = deque()  # (copy time, offset), offsets increasing
        self._last_index = -1

    def _update(self) -> None:
        newest = self.ring.newest()
        if newest is None or newest.index == self._last_index:
            return
        self._last_index = newest.index
        offset = newest.t0 - (newest.a + newest.b) / SAMPLE_RATE
        while self._offsets and self._offsets[-1][1] >= offset:
            self._offsets.pop()
        self._offsets.append((newest.t0, offset))
        while self._offsets[0][0] < newest.t0 - self.window_s:
            self._offsets.popleft()

    def offset(self) -> float | None:
        """monotonic seconds - mic seconds, or None before the first block."""
        self._update()
        return self._offsets[0][1] if self._offsets else None

    def now(self, monotonic: float | None = None) -> float | None:
        """Mic-clock seconds at `monotonic` (default: now); None before the first block."""
        offset = self.offset()
        if offset is None:
            return None
        return (time.monotonic() if monotonic is None else monotonic) - offset

    def to_monotonic(self, mic_seconds: float) -> float | None:
        offset = self.offset()
        return None if offset is None else mic_seconds + offset
