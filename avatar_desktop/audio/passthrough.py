"""Delayed passthrough: the microphone, delayed by the video's target delay, played to an output device.

Sent to a virtual cable that the call application uses as its microphone, it keeps lips and voice in sync at the
far end: the video is shown `delay` after the mic, and so is the voice.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from avatar_desktop.audio.capture import AudioDeviceError, resolve_device
from avatar_desktop.config import SAMPLE_RATE


class DelayLine:
    """Sample-indexed circular buffer of 16 kHz audio: sample s lives at s % capacity.

    One writer (`write`, in order) and one reader (`read`, any position); positions not written, or already
    overwritten, read as silence.
    """

    def __init__(self, seconds: float = 4.0):
        self.capacity = int(seconds * SAMPLE_RATE)
        self._buffer = np.zeros(self.capacity, np.float32)
        self.end = 0  # one past the newest sample written

    def write(self, samples: np.ndarray, start: int) -> None:
        """samples: float32 (N,) whose first sample has index `start` (>= end; a gap is filled with silence)."""
        if start > self.end:
            self._fill(self.end, np.zeros(min(start - self.end, self.capacity), np.float32))
        self._fill(start, samples[-self.capacity :] if samples.size > self.capacity else samples)
        self.end = start + samples.size

    def _fill(self, start: int, samples: np.ndarray) -> None:
        offset = start % self.capacity
        first = min(samples.size, self.capacity - offset)
        self._buffer[offset : offset + first] = samples[:first]
        self._buffer[: samples.size - first] = samples[first:]

    def read(self, start: int, out: np.ndarray) -> None:
        """Copy samples [start, start + len(out)) into `out` (no allocation); unavailable ones are 0."""
        n = out.shape[0]
        lo, hi = max(start, self.end - self.capacity), min(start + n, self.end)
        out[:] = 0.0
        if hi <= lo:
            return
        offset = lo % self.capacity
        first = min(hi - lo, self.capacity - offset)
        out[lo - start : lo - start + first] = self._buffer[offset : offset + first]
        out[lo - start + first : hi - start] = self._buffer[: hi - lo - first]


class Passthrough:
    """Plays `line` to output `device` at 16 kHz, `delay_s()` behind the newest mic sample, as heard: the output's
    own latency (PortAudio's DAC time of each block) is taken off the delay.

    The output callback only copies. Its cursor advances with the output device's clock; when it drifts more than
    `resync_ms` from `end - delay` (clock drift, or the delay changed), it jumps, and `resyncs` counts it.
    """

    def __init__(self, line: DelayLine, device, delay_s: Callable[[], float], *, block_ms: float = 20.0,
                 resync_ms: float = 40.0):
        import sounddevice as sd

        self.line = line
        self.delay_s = delay_s
        info = resolve_device(device, "output")
        self.device_name = info["name"]
        self.resyncs = 0
        self.underflows = 0
        self._cursor: int | None = None
        self._resync = int(resync_ms * SAMPLE_RATE / 1000)
        try:
            self.stream = sd.OutputStream(
                device=device, samplerate=SAMPLE_RATE, channels=1, dtype="float32",
                blocksize=int(block_ms * SAMPLE_RATE / 1000), callback=self._callback,
            )
        except sd.PortAudioError as error:
            raise AudioDeviceError(f"cannot open output device {self.device_name!r} at 16 kHz: {error}") from None

    def _callback(self, outdata: np.ndarray, frames: int, times, status) -> None:
        if status.output_underflow:
            self.underflows += 1
        lead = times.outputBufferDacTime - times.currentTime  # s until this block is heard
        if not 0.0 <= lead < 1.0:  # the host API does not report it
            lead = frames / SAMPLE_RATE
        target = self.line.end - int((self.delay_s() - lead) * SAMPLE_RATE)
        if self._cursor is None or abs(self._cursor - target) > self._resync:
            self.resyncs += self._cursor is not None
            self._cursor = target
        self.line.read(self._cursor, outdata[:, 0])
        self._cursor += frames

    def start(self) -> "Passthrough":
        self.stream.start()
        return self

    def close(self) -> None:
        try:
            self.stream.abort()
            self.stream.close()
        except Exception:  # a device that vanished cannot be closed cleanly: nothing left to release
            pass
