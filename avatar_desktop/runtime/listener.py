"""The listener thread of a live session: voice activity -> speaking / listening / idle; speech onsets, timed when
the camera shows them (mic-to-camera latency).

Voice activity runs here, in the main process, and the worker gets the state as a command: one decision serves the
active worker and the standby alike, the far end's ring lives in this process, and a manual override wins at once.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Callable, Iterable

from avatar_desktop.audio.passthrough import DelayLine
from avatar_desktop.audio.vad import OnsetDetector, VadConfig, VoiceActivity, decide_state
from avatar_desktop.config import SAMPLE_RATE, State
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.rings import AudioReader, AudioRing
from avatar_desktop.runtime.stats import SessionStats


class OnsetLatency:
    """Speech onsets (mic sample positions), each timed when the camera sends the first generated frame that covers
    it: the mic-to-camera latency (ms) goes to `stats`. Onsets from before the first generated frame (the session was
    still starting: nothing could show them) are dropped. `heard` runs on the listener thread, `frame_sent` on the
    camera thread (a deque: appends and pops from two threads need no lock)."""

    def __init__(self, clock: MicClock, fps: float, stats: SessionStats):
        self.clock = clock
        self.frame_s = 1.0 / fps
        self.stats = stats
        self._pending: deque[int] = deque()
        self._first_media_time: float | None = None  # media time (s) of the first generated frame the camera sent

    def heard(self, onsets: Iterable[int]) -> None:
        self._pending.extend(onsets)

    def frame_sent(self, sent_at: float, fresh: bool, media_time: float) -> None:
        """sent_at: monotonic send time (s); fresh: a newly generated frame (not a repeat); media_time: its mic time
        (s)."""
        if not fresh:
            return
        if self._first_media_time is None:
            self._first_media_time = media_time
        frame_end = media_time + self.frame_s
        while self._pending and self._pending[0] / SAMPLE_RATE < frame_end:
            onset = self._pending.popleft() / SAMPLE_RATE
            if onset < self._first_media_time:
                continue
            captured_at = self.clock.to_monotonic(onset)
            if captured_at is not None:
                self.stats.mic_to_camera((sent_at - captured_at) * 1000)


class Listener:
    """Thread 'listener': reads the mic ring (and the far end's) every 10 ms; voice activity on each decides the
    state (`override` wins when set), and `on_state(state, mic_seconds)` hears of every change; the mic's samples go
    on to the passthrough's `delay_line`, its speech onsets to `onsets`."""

    def __init__(self, mic: AudioRing, far_end: AudioRing | None, vad: VadConfig, *, onsets: OnsetLatency,
                 delay_line: DelayLine | None, on_state: Callable[[State, float], None]):
        self.state = State.IDLE
        self.override: State | None = None
        self._mic, self._far_end, self._vad = mic, far_end, vad
        self._onsets, self._delay_line, self._on_state = onsets, delay_line, on_state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="listener", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        mic_reader = AudioReader(self._mic)
        far_reader = AudioReader(self._far_end) if self._far_end is not None else None
        mic_vad = VoiceActivity(self._vad)
        far_vad = VoiceActivity(self._vad) if far_reader is not None else None
        onsets = OnsetDetector()
        while not self._stop.wait(0.01):
            samples = mic_reader.read()
            if samples.size:
                start = mic_reader.position - samples.size
                if self._delay_line is not None:
                    self._delay_line.write(samples, start)
                mic_vad.feed(samples)
                self._onsets.heard(onsets.feed(samples, start))
            if far_reader is not None:
                far_vad.feed(far_reader.read())
            state = decide_state(
                mic_active=mic_vad.active, far_end_active=bool(far_vad and far_vad.active), override=self.override
            )
            if state != self.state:
                self.state = state
                self._on_state(state, mic_reader.position / SAMPLE_RATE)
