"""Voice activity: silero-vad speech probabilities with hysteresis, and the speaking / listening / idle decision.

silero-vad scores 512-sample windows (32 ms at 16 kHz). Its ONNX model, shipped inside the silero-vad package, runs
on onnxruntime (no torch): each call reads the window after the previous window's last 64 samples, and carries a
recurrent state (2, 1, 128) from call to call. A stream becomes active after `onset_ms` of windows above
`threshold` and inactive after `hangover_ms` of windows below `threshold - 0.15` (two thresholds and two times, so a
pause between words does not flicker the state).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from avatar_desktop.config import SAMPLE_RATE, State
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import app_root

WINDOW = 512
"""Samples per silero-vad window at 16 kHz."""
CONTEXT = 64
"""Samples of the previous window that the model reads before each window."""


def silero_model_file() -> Path:
    """The silero-vad ONNX model: inside the installed silero-vad package, found without importing it (its Python
    side imports torch), or in the installed app's bundle (packaging/avatar-desktop.spec puts it at the same place
    under files.app_root()). AvatarError saying what to install when it is missing."""
    spec = importlib.util.find_spec("silero_vad")
    folders = [Path(folder) for folder in (spec.submodule_search_locations or [])] if spec is not None else []
    for folder in folders + [app_root() / "silero_vad"]:
        model_file = folder / "data" / "silero_vad.onnx"
        if model_file.is_file():
            return model_file
    raise AvatarError("voice activity needs silero-vad's model (silero_vad/data/silero_vad.onnx), which is missing: "
                      "`pip install --no-deps silero-vad`")


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
        try:
            import onnxruntime
        except ImportError:
            raise AvatarError("voice activity needs the onnxruntime package, which is not installed: "
                              "`pip install onnxruntime`") from None
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = options.inter_op_num_threads = 1  # 32 ms windows: one thread is plenty
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(str(silero_model_file()), options,
                                                     providers=["CPUExecutionProvider"])
        self._sample_rate = np.array(SAMPLE_RATE, np.int64)
        self._pending = np.zeros(0, np.float32)
        self.hysteresis = Hysteresis(config)
        self.probability = 0.0
        self._reset_model()

    @property
    def active(self) -> bool:
        return self.hysteresis.active

    def feed(self, samples: np.ndarray) -> bool:
        """samples: float32 (N,) in [-1, 1] continuing the stream; scores every complete 512-sample window."""
        pending = np.concatenate([self._pending, samples.astype(np.float32, copy=False)])
        n_windows = pending.shape[0] // WINDOW
        for k in range(n_windows):
            window = pending[k * WINDOW : (k + 1) * WINDOW]
            model_input = np.concatenate([self._context, window])[None]  # (1, CONTEXT + WINDOW)
            probability, self._state = self._session.run(
                None, {"input": model_input, "state": self._state, "sr": self._sample_rate})
            self._context = window[-CONTEXT:].copy()
            self.probability = float(probability[0, 0])
            self.hysteresis.update(self.probability)
        self._pending = pending[n_windows * WINDOW :]
        return self.active

    def reset(self) -> None:
        self._reset_model()
        self._pending = np.zeros(0, np.float32)
        self.hysteresis = Hysteresis(self.hysteresis.config)

    def _reset_model(self) -> None:
        self._state = np.zeros((2, 1, 128), np.float32)
        self._context = np.zeros(CONTEXT, np.float32)


def speech_probabilities(audio: np.ndarray) -> np.ndarray:
    """silero-vad's speech probability (K,) float32 of each whole 512-sample window of 16 kHz `audio` (N,)."""
    activity = VoiceActivity()
    probabilities = np.zeros(len(audio) // WINDOW, np.float32)
    for k in range(len(probabilities)):
        activity.feed(audio[k * WINDOW : (k + 1) * WINDOW])
        probabilities[k] = activity.probability
    return probabilities


def speech_mask(audio: np.ndarray, *, threshold: float = 0.5, min_silence_s: float = 0.1,
                min_speech_s: float = 0.25, pad_s: float = 0.03) -> np.ndarray:
    """Which samples of a whole 16 kHz recording (N,) are speech, bool (N,), decided offline: a span starts at a
    window scoring `threshold` or more and ends where `min_silence_s` of windows score below `threshold - 0.15`;
    spans shorter than `min_speech_s` are dropped, the rest widened by `pad_s` on each side."""
    probabilities = speech_probabilities(audio)
    silence_windows = max(1, round(min_silence_s * SAMPLE_RATE / WINDOW))
    spans, start, quiet = [], None, 0
    for k, probability in enumerate(probabilities):
        if start is None:
            if probability >= threshold:
                start, quiet = k, 0
            continue
        quiet = quiet + 1 if probability < threshold - 0.15 else 0
        if quiet == silence_windows:
            spans.append((start, k + 1 - quiet))
            start = None
    if start is not None:
        spans.append((start, len(probabilities)))
    mask = np.zeros(len(audio), bool)
    pad = int(pad_s * SAMPLE_RATE)
    for first, end in spans:
        if (end - first) * WINDOW >= min_speech_s * SAMPLE_RATE:
            mask[max(0, first * WINDOW - pad) : end * WINDOW + pad] = True
    return mask


def speech_states(audio: np.ndarray, frames: int, fps: float) -> np.ndarray:
    """Per-frame State (frames,) int8 of a whole 16 kHz recording (N,) at `fps` frames a second: SPEAKING where
    speech_mask covers at least half the frame, else IDLE (a single recording cannot tell listening from idle)."""
    bounds = np.round(np.arange(frames + 1) * SAMPLE_RATE / fps).astype(np.int64)  # frame k: [bounds[k], bounds[k+1])
    speech = np.zeros(bounds[-1], bool)
    found = speech_mask(audio)[: len(speech)]
    speech[: len(found)] = found
    covered = np.add.reduceat(speech, bounds[:-1]) / np.diff(bounds) if frames else np.zeros(0)
    return np.where(covered >= 0.5, int(State.SPEAKING), int(State.IDLE)).astype(np.int8)


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
