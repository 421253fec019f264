"""Streaming sample-rate conversion of mono float32 audio (any rate -> any rate), windowed-sinc interpolation."""

from __future__ import annotations

import numpy as np


class StreamingResampler:
    """Convert a mono stream block by block; the output is the same as converting the whole stream at once.

    Each output sample is a Hann-windowed sinc interpolation of `2 * half_width` input samples, low-passed at
    `0.95 * min(in_rate, out_rate) / 2` (no aliasing when going down). Latency: `half_width` input samples.
    """

    def __init__(self, in_rate: int, out_rate: int, *, half_width: int = 16):
        if in_rate <= 0 or out_rate <= 0:
            raise ValueError(f"sample rates must be positive, got {in_rate} -> {out_rate} Hz")
        self.in_rate, self.out_rate = in_rate, out_rate
        self._step = in_rate / out_rate  # input samples per output sample
        self._cutoff = 0.95 * min(1.0, out_rate / in_rate)  # in units of the input Nyquist rate
        self._taps = np.arange(-half_width + 1, half_width + 1)  # (2W,)
        self._half_width = half_width
        self._history = np.zeros(half_width, np.float32)  # leading zeros: the stream starts at input index W
        self._next = float(half_width)  # position of the next output sample in `_history` coordinates

    def process(self, samples: np.ndarray) -> np.ndarray:
        """float32 (N,) input samples -> float32 (M,) output samples, M ~= N * out_rate / in_rate."""
        buf = np.concatenate([self._history, np.asarray(samples, np.float32).reshape(-1)])
        last = buf.shape[0] - self._half_width  # need W samples after each output position
        count = int(np.ceil((last - self._next) / self._step)) if last > self._next else 0
        times = self._next + self._step * np.arange(count)  # (M,)
        base = np.floor(times).astype(np.int64)
        index = base[:, None] + self._taps[None, :]  # (M, 2W)
        offset = times[:, None] - index
        window = 0.5 + 0.5 * np.cos(np.pi * offset / (self._half_width + 1))
        kernel = self._cutoff * np.sinc(self._cutoff * offset) * window
        out = (buf[index] * kernel).sum(axis=1).astype(np.float32)
        self._next += self._step * count
        keep_from = max(0, int(np.floor(self._next)) - self._half_width)
        self._history = buf[keep_from:]
        self._next -= keep_from
        return out
