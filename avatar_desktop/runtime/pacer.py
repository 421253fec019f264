"""Pacing: which generated frame the camera shows at each tick, and the thread that sends it at the camera fps.

Frame f (media time m, mic-clock seconds) is due at `m + delay` on the mic clock. At each tick the pacer shows the
newest due frame; when none is newer than the one on screen it repeats that one (the generator is late), so the
camera never waits for the generator. `delay` follows the frames' generation latency (`ready - media`, p95 of the
last few seconds) plus a margin: it rises at once when that p95 does, and falls slowly. A single late chunk is
shown late (the camera repeats a frame or two) instead of delaying every frame of the next seconds.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from avatar_desktop.output.camera import Canvas
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.rings import FrameRing


@dataclass(frozen=True)
class PacerConfig:
    """Target delay (ms) of the video behind the mic: starts at `initial_delay_ms`, kept within
    [min_delay_ms, max_delay_ms] as `p95(generation latency of the last latency_window frames) + margin_ms` (the
    largest latency until `settle_frames` frames were seen); falls by at most `fall_ms_per_s`."""

    initial_delay_ms: float = 250.0
    min_delay_ms: float = 40.0
    max_delay_ms: float = 1500.0
    margin_ms: float = 30.0
    fall_ms_per_s: float = 20.0
    latency_window: int = 125
    settle_frames: int = 10


class Pacer:
    """Picks frames from a FrameRing on the mic clock. Single-threaded: used by the camera sender only."""

    def __init__(self, frames: FrameRing, clock: MicClock, config: PacerConfig = PacerConfig()):
        self.frames = frames
        self.clock = clock
        self.config = config
        self.delay_s = config.initial_delay_ms / 1000
        self._next = frames.ring.count  # first ring index not yet considered
        self._latencies: deque[float] = deque(maxlen=config.latency_window)
        self.current: np.ndarray | None = None  # uint8 (H, W, 3) on screen
        self.current_media = float("-inf")
        self.skipped = 0  # frames never shown: due together with a newer one, overwritten, or torn
        self._last_relax: float | None = None

    def pick(self, monotonic: float) -> bool:
        """Advance to the newest due frame; True when the frame on screen changed."""
        mic_now = self.clock.now(monotonic)
        if mic_now is None:
            return False
        ring = self.frames.ring
        due = None
        while self._next < ring.count:
            meta = ring.read(self._next, 0)
            if meta is None:  # overwritten before we looked, or torn by a writer that died: never shown
                self.skipped += 1
                self._next += 1
                continue
            if meta.t0 <= self.current_media:  # an older stream's leftovers after a restart: never go back
                self._next += 1
                continue
            self._observe(meta.t1 - meta.t0)
            if meta.t0 + self.delay_s > mic_now:
                break
            if due is not None:
                self.skipped += 1
            due = self._next
            self._next += 1
        self._relax(monotonic)
        if due is None:
            return False
        got = self.frames.read(due)
        if got is None:
            self.skipped += 1
            return False
        self.current, self.current_media, _ = got
        return True

    def _target(self) -> float:
        """The delay (s) the recent latencies ask for: their p95 (their maximum while few) plus the margin."""
        latencies = self._latencies
        recent = max(latencies) if len(latencies) < self.config.settle_frames else float(np.percentile(latencies, 95))
        return max(recent + self.config.margin_ms / 1000, self.config.min_delay_ms / 1000)

    def _observe(self, latency: float) -> None:
        self._latencies.append(latency)
        wanted = self._target()
        if wanted > self.delay_s:
            self.delay_s = min(wanted, self.config.max_delay_ms / 1000)

    def _relax(self, monotonic: float) -> None:
        """Let the delay fall towards the target, at `fall_ms_per_s`."""
        last, self._last_relax = self._last_relax, monotonic
        if last is None or len(self._latencies) < self.config.settle_frames:
            return
        target = self._target()
        if target < self.delay_s:
            self.delay_s = max(target, self.delay_s - (monotonic - last) * self.config.fall_ms_per_s / 1000)


def _raise_thread_priority(nice: int = -10) -> None:
    """Ask the OS to run this thread before ordinary work (Linux: per-thread nice value). Without the privilege
    (an ordinary user may only lower priority) it stays as it is: on a machine that is not overloaded that is fine."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except (AttributeError, OSError):  # not Linux, or not allowed
        pass


class Sink(Protocol):
    name: str

    def send(self, canvas: np.ndarray, media_time: float) -> None: ...

    def close(self) -> None: ...


class CameraSender(threading.Thread):
    """Sends a canvas to every sink at `fps`, on an absolute schedule (no drift), until `stop()`.

    Per tick: `pacer.pick`, compose, send, then `on_tick(sent_at, fresh, media_time)`. Before the first
    generated frame it shows `placeholder` (the portrait). A sink that raises is dropped and reported through
    `on_sink_error(sink, error)`; the others go on.
    """

    def __init__(
        self,
        pacer: Pacer,
        canvas: Canvas,
        sinks: list[Sink],
        *,
        fps: float,
        placeholder: np.ndarray,
        on_tick: Callable[[float, bool, float], None],
        on_sink_error: Callable[[Sink, Exception], None],
    ):
        super().__init__(name="camera-sender", daemon=True)
        self.pacer = pacer
        self.canvas = canvas
        self.sinks = list(sinks)
        self.period = 1.0 / fps
        self._placeholder = placeholder
        self._on_tick = on_tick
        self._on_sink_error = on_sink_error
        self._stop_event = threading.Event()
        self.late_ticks = 0

    def run(self) -> None:
        _raise_thread_priority()
        image = self.canvas.compose(self._placeholder)
        start = time.monotonic()
        tick = 0
        while not self._stop_event.is_set():
            deadline = start + tick * self.period
            wait = deadline - time.monotonic()
            if wait > 0 and self._stop_event.wait(wait):
                break
            if time.monotonic() - deadline > 1.0:  # stalled (machine suspended?): restart the schedule
                self.late_ticks += 1
                start, tick = time.monotonic(), 0
            fresh = self.pacer.pick(time.monotonic())
            if fresh:
                image = self.canvas.compose(self.pacer.current)
            media = self.pacer.current_media
            for sink in list(self.sinks):
                try:
                    sink.send(image, media)
                except Exception as error:  # a camera that went away must not stop the others
                    self.sinks.remove(sink)
                    self._on_sink_error(sink, error)
            self._on_tick(time.monotonic(), fresh, media)
            tick += 1

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5.0)
