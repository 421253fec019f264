"""What a live session measures, in bounded memory (sessions run for hours), and its JSON form."""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np


class Histogram:
    """Millisecond values in fixed 1 ms bins up to `max_ms` (larger values land in the last bin): percentiles in
    constant memory."""

    def __init__(self, max_ms: int = 10_000):
        self.counts = np.zeros(max_ms + 1, np.int64)
        self.total = 0
        self.max = 0.0

    def add(self, values_ms) -> None:
        values = np.asarray(values_ms, np.float64).reshape(-1)
        if values.size == 0:
            return
        bins = np.clip(np.round(values), 0, self.counts.size - 1).astype(np.int64)
        np.add.at(self.counts, bins, 1)
        self.total += values.size
        self.max = max(self.max, float(values.max()))

    def percentile(self, q: float) -> float | None:
        if self.total == 0:
            return None
        cumulative = np.cumsum(self.counts)
        return float(np.searchsorted(cumulative, q / 100 * self.total))

    def summary(self) -> dict:
        return {
            "count": self.total,
            **{f"p{q}": self.percentile(q) for q in (50, 95, 99)},
            "max": round(self.max, 1) if self.total else None,
        }


class SessionStats:
    """Counters updated by the camera, listener and supervisor threads (under one lock), read by `snapshot()`.
    What happened, as against how much, is the session's EventLog (runtime/events.py)."""

    def __init__(self):
        self._lock = threading.Lock()
        self.started = time.monotonic()
        self.ticks = 0
        self.fresh = 0
        self.repeated_after_first = 0
        self._first_frame_at: float | None = None
        self._first_frame_unix: float | None = None  # wall clock (s since the epoch): compared with a process start
        self._last_tick: float | None = None
        self.tick_interval_ms = Histogram(2000)
        self.generation_latency_ms = Histogram()
        self.chunk_compute_ms = Histogram()
        self.mic_to_camera_ms: deque[float] = deque(maxlen=1000)
        self.mic_to_camera_count = 0
        self.state_changes: deque[dict] = deque(maxlen=1000)
        self.state_change_count = 0
        self.worker_restarts = 0
        self.worker_fps: float | None = None
        self.worker_skips = 0
        self.audio_ring_overruns = 0
        self._first_tick: float | None = None

    def tick(self, sent_at: float, fresh: bool) -> None:
        with self._lock:
            self.ticks += 1
            if self._first_tick is None:
                self._first_tick = sent_at
            if self._last_tick is not None:
                self.tick_interval_ms.add([(sent_at - self._last_tick) * 1000])
            self._last_tick = sent_at
            if fresh:
                self.fresh += 1
                if self._first_frame_at is None:
                    self._first_frame_at = sent_at
                    self._first_frame_unix = time.time()
            elif self._first_frame_at is not None:
                self.repeated_after_first += 1

    def state_change(self, state_name: str, mic_seconds: float | None) -> None:
        with self._lock:
            self.state_change_count += 1
            self.state_changes.append({
                "t": round(time.monotonic() - self.started, 3), "state": state_name,
                "mic_s": None if mic_seconds is None else round(mic_seconds, 3),
            })

    def worker_status(self, report: dict) -> None:
        with self._lock:
            self.generation_latency_ms.add(report["latency_ms"])
            self.chunk_compute_ms.add(report["chunk_ms"])
            self.worker_fps = report["fps"]
            self.worker_skips += report["skips"]
            self.audio_ring_overruns += report["overruns"]

    def mic_to_camera(self, latency_ms: float) -> None:
        with self._lock:
            self.mic_to_camera_ms.append(latency_ms)
            self.mic_to_camera_count += 1

    def snapshot(self, **extra) -> dict:
        """The stats as plain JSON data; `extra` (counters owned elsewhere) is merged in."""
        with self._lock:
            elapsed = time.monotonic() - self.started
            since_first = None if self._first_frame_at is None else time.monotonic() - self._first_frame_at
            shown_since_first = self.fresh + self.repeated_after_first
            mic = np.array(self.mic_to_camera_ms) if self.mic_to_camera_ms else None
            first_frame_s = None if self._first_frame_at is None else round(self._first_frame_at - self.started, 3)
            return {
                "seconds": round(elapsed, 3),
                "delivered_fps": (
                    round((self.ticks - 1) / (self._last_tick - self._first_tick), 3) if self.ticks > 1 else None
                ),
                "frames_sent": self.ticks,
                "new_frames": self.fresh,
                "first_frame_s": first_frame_s,  # session start -> first generated frame sent
                "first_frame_unix": None if self._first_frame_unix is None else round(self._first_frame_unix, 3),
                "new_frames_fps": round(self.fresh / since_first, 3) if since_first else None,
                "repeated_frames": self.repeated_after_first,
                "repeated_ratio": round(self.repeated_after_first / shown_since_first, 4) if shown_since_first else None,
                "tick_interval_ms": self.tick_interval_ms.summary(),
                "generation_latency_ms": self.generation_latency_ms.summary(),
                "chunk_compute_ms": self.chunk_compute_ms.summary(),
                "worker_fps": self.worker_fps,
                "worker_skips": self.worker_skips,
                "audio_ring_overruns": self.audio_ring_overruns,
                "mic_to_camera_ms": {
                    "what": "speech onset at the mic (first loud sample after silence) -> camera send time of the"
                    " first frame whose media time covers it",
                    "count": self.mic_to_camera_count,
                    "p50": None if mic is None else round(float(np.median(mic)), 1),
                    "max": None if mic is None else round(float(mic.max()), 1),
                    "values": [round(v, 1) for v in list(self.mic_to_camera_ms)[-50:]],
                },
                "state_change_count": self.state_change_count,
                "state_changes": list(self.state_changes)[-200:],
                "worker_restarts": self.worker_restarts,
                **extra,
            }
