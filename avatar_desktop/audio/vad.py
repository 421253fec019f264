"""Voice activity: silero-vad speech probabilities with hysteresis, and the speaking / listening / idle decision.

silero-vad scores 512-sample windows (32 ms at 16 kHz). A stream becomes active after `onset_ms` of windows above
`threshold` and inactive after `hangover_ms` of windows below `threshold - 0.15` (two thresholds and two times, so a
pause between words does not flicker the state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_desktop.config import SAMPLE_RATE, State

WINDOW = 512
"""Samples per silero-vad window at 16 kHz."""


@dataclass(frozen=True)
class VadConfig:
    """threshold: speech probability in [0, 1]; onset_ms / hangover_ms: how long speech / silence must last (ms)."""

    threshold: float = 0.5
    onset_ms: float = 64.0
    hangover_ms: float = 600.0

    def __post_init__(self):
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"VAD threshold must lie in (0, 1), got {self.threshold}")
        if self.onset_ms < 0 or self.hangover_ms < 0:
            raise ValueError(f"VAD onset/hang-over must be >= 0 ms, got {self.onset_ms} / {self.hangover_ms}")


class Hysteresis:
    """Probability per window -> active flag, with onset and hang-over times."""

    def __init__(self, config: VadConfig, window_s: float = WINDOW / SAMPLE_RATE):
        self.config = config
        self.window_s = window_s
        self.active = False
        self._run_s = 0.0  # how long the evidence against the current flag has lasted

    def update(self, probability: float) -> bool:
        if self.active:
            against = probability < self.config.threshold - 0.15
            needed = self.config.hangover_ms / 1000
        else:
            against = probability >= self.config.threshold
            needed = self.config.onset_ms / 1000
        self._run_s = self._run_s + self.window_s if against else 0.0
        if against and self._run_s >= needed - 1e-9:
            self.active = not self.active
            self._run_s = 0.0
        return self.active


class VoiceActivity:
    """Streaming silero-vad on one 16 kHz stream: `feed(samples)` -> whether voice is active after them."""

    def __init__(self, config: VadConfig = VadConfig()):
        import torch
        from silero_vad import load_silero_vad

        self._torch = torch
        self._model = load_silero_vad()
        self._pending = np.zeros(0, np.float32)
        self.hysteresis = Hysteresis(config)
        self.probability = 0.0

    @property
    def active(self) -> bool:
        return self.hysteresis.active

    def feed(self, samples: np.ndarray) -> bool:
        """samples: float32 (N,) in [-1, 1] continuing the stream; scores every complete 512-sample window."""
        pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n_windows = pending.shape[0] // WINDOW
        with self._torch.inference_mode():
            for k in range(n_windows):
                window = self._torch.from_numpy(pending[k * WINDOW : (k + 1) * WINDOW].copy())
                self.probability = float(self._model(window, SAMPLE_RATE))
                self.hysteresis.update(self.probability)
        self._pending = pending[n_windows * WINDOW :]
        return self.active

    def reset(self) -> None:
        self._model.reset_states()
        self._pending = np.zeros(0, np.float32)
        self.hysteresis = Hysteresis(self.hysteresis.config)


def decide_state(*, mic_active: bool, far_end_active: bool, override: State | None) -> State:
    """The manual override wins; then the user's own voice (speaking), then the far end's (listening), else idle."""
    if override is not None:
        return override
    if mic_active:
        return State.SPEAKING
    if far_end_active:
        return State.LISTENING
    return State.IDLE


class OnsetDetector:
    """Finds speech onsets by level, to time mic-to-camera latency: the first sample above `level` after at least
    `quiet_s` of samples below it. `feed(samples, start)` returns the onset sample indices found in the block."""

    def __init__(self, level: float = 0.02, quiet_s: float = 0.4):
        self.level = level
        self.quiet_samples = int(quiet_s * SAMPLE_RATE)
        self._last_loud: int | None = None

    def feed(self, samples: np.ndarray, start: int) -> list[int]:
        loud = np.flatnonzero(np.abs(samples) > self.level) + start  # (K,) sample indices on the mic clock
        if loud.size == 0:
            return []
        previous = np.concatenate([[-np.inf if self._last_loud is None else self._last_loud], loud[:-1]])
        self._last_loud = int(loud[-1])
        return [int(i) for i in loud[(loud - previous) > self.quiet_samples]]
