"""Microphone capture with sounddevice into an AudioRing (16 kHz mono float32, on the mic's sample clock).

The PortAudio callback only copies: it mixes the block down to mono into a preallocated buffer and commits it to a
ring. When the device accepts 16 kHz (PulseAudio, CoreAudio and WASAPI shared mode all resample) the callback
writes the AudioRing directly; otherwise it writes a private ring at the device rate, and a pump thread resamples
into the AudioRing, a few milliseconds later.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from avatar_desktop.audio.capture import AudioDeviceError, CaptureConfig, resolve_device
from avatar_desktop.audio.resample import StreamingResampler
from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.runtime.rings import AudioReader, AudioRing


class MicCapture:
    """Records one input device into `ring` (16 kHz mono) until `close()`; the ring's slots should be made for
    `block_ms` blocks (AudioRing.create(block_samples=...)), or it holds less time than it was made for.

    Counters: `overflows` (blocks PortAudio reported as input overflow), `callbacks`; `last_callback` is the
    monotonic time of the newest block, so a supervisor can tell when a device stopped delivering.
    """

    def __init__(self, ring: AudioRing, config: CaptureConfig = CaptureConfig()):
        import sounddevice as sd

        self.ring = ring
        self.config = config
        info = resolve_device(config.device, "input")
        self.device_name = info["name"]
        self.overflows = 0
        self.callbacks = 0
        self.last_callback = 0.0
        self.first_block = threading.Event()
        self._pump: threading.Thread | None = None
        self._stop = threading.Event()
        rates = [config.device_rate] if config.device_rate else [SAMPLE_RATE, int(info["default_samplerate"])]
        self.stream = None
        errors = []
        for rate in rates:
            try:
                self._open(sd, rate)
                break
            except sd.PortAudioError as error:
                errors.append(f"{rate} Hz: {error}")
        if self.stream is None:
            raise AudioDeviceError(f"cannot open input device {self.device_name!r}: {'; '.join(errors)}")

    def _open(self, sd, rate: int) -> None:
        block = max(1, round(rate * self.config.block_ms / 1000))
        self.device_rate = rate
        self._mono = np.zeros(block, np.float32)
        if rate == SAMPLE_RATE:
            target = self.ring
        else:
            target = AudioRing.create(None, seconds=2.0, block_samples=block, sample_rate=rate)
            self._resampler = StreamingResampler(rate, SAMPLE_RATE)
            self._raw_reader = AudioReader(target)
        self._target = target
        self.stream = sd.InputStream(
            device=self.config.device, samplerate=rate, channels=1, dtype="float32", blocksize=block,
            callback=self._callback,
        )

    def _callback(self, indata: np.ndarray, frames: int, _time, status) -> None:
        """PortAudio thread: copy only (into preallocated buffers; no locks, no logging)."""
        if status.input_overflow:
            self.overflows += 1
        mono = self._mono[:frames]
        mono[:] = indata[:, 0]
        now = time.monotonic()
        self._target.write(mono, now)
        self.callbacks += 1
        self.last_callback = now
        self.first_block.set()

    def start(self) -> "MicCapture":
        if self._target is not self.ring:
            self._pump = threading.Thread(target=self._pump_loop, name="mic-resampler", daemon=True)
            self._pump.start()
        self.stream.start()
        return self

    def _pump_loop(self) -> None:
        """Resample device-rate blocks into the 16 kHz ring, keeping each block's capture time."""
        while not self._stop.wait(self.config.block_ms / 1000):  # one block per write: the ring's slot size
            raw = self._raw_reader.read()
            if raw.size:
                self.ring.write(self._resampler.process(raw), self.last_callback)

    def wait_first_block(self, timeout: float) -> bool:
        """Wait until the device delivered its first block (the first one can take a second)."""
        return self.first_block.wait(timeout)

    def close(self) -> None:
        self._stop.set()
        if self.stream is not None:
            try:
                self.stream.abort()
                self.stream.close()
            except Exception:  # a device that vanished cannot be closed cleanly: nothing left to release
                pass
        if self._pump is not None:
            self._pump.join(2.0)
