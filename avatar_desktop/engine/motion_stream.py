"""MotionStreamer: a stream of audio in, chunks of motion codes out (the photo path's generator stage).

The same streaming contract as engine/streaming.py StreamingGenerator: step() appends audio and, once the next
chunk's audio (with lookahead) has arrived, generates it; chunk lengths follow the model's ChunkPlanner (a short
first chunk, a short chunk after a state change). The model's last `context_frames` outputs (before the slider
offsets, lightly noised as in training) are its context for the next chunk, so a long stream continues itself
instead of drifting. The sliders are exact offsets (motion_code.slider_offsets) added after sampling; a slider
that moves is eased over `SLIDER_EASE_S`.

A photo's body does not move, and an idle face should look like the photo: the generated head motion (rotation and
translation, not the head sliders' offsets) is scaled by `HEAD_MOTION[state]`, the scale eased over `HEAD_EASE_S`
at a state change (at most 1 per HEAD_EASE_S). The context keeps the unscaled motion, so the model's own dynamics
are untouched.

The networks run on a backend (a torch MotionModel through engine/torch_motion.py, or an exported model through
engine/onnx_runtime.py); everything here is numpy, so the ONNX path imports no torch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from avatar_desktop.config import EngineConfig, State, expression_vector
from avatar_desktop.engine.audio_stream import AudioStream
from avatar_desktop.engine.planner import ChunkPlanner
from avatar_desktop.motion_code import MOTION_DIM, MOTION_INDEX, clip_code, slider_array, slider_offsets

SLIDER_EASE_S = 0.2
"""A slider's new value is reached linearly over this many seconds of video (0: at once)."""
HEAD_MOTION = {State.SPEAKING: 0.6, State.LISTENING: 0.6, State.IDLE: 0.1}
"""Scale of the generated head motion per state. A photo's body stays still, so its head moves less than the drawn
characters' did; idle keeps it nearly still. With the shipped model's 2-frame steady chunks (the 200 ms
mic-to-camera budget) its own head motion is about 1.5 times that of 4-frame chunks; measured on the astronaut
(eval --photos): an idle frame's SSIM against the photo is 0.93 at scale 0.2 and 0.97 at 0.1."""
HEAD_EASE_S = 0.4
"""The head-motion scale changes by at most 1 in this many seconds (idle to speaking: 0.32 s)."""
_HEAD = [MOTION_INDEX[name] for name in ("head_yaw", "head_pitch", "head_roll", "head_x", "head_y")]


@dataclass
class MotionChunk:
    """codes: float32 (T, D) motion codes, slider offsets added, clipped to the components' ranges; timestamps:
    float64 (T,) media seconds (frame f starts at f / fps); start_frame: index of codes[0] in the stream; label: the
    state it was generated with; stage_ms: wall time of each stage (audio, motion)."""

    codes: np.ndarray
    timestamps: np.ndarray
    start_frame: int
    label: State
    stage_ms: dict[str, float] = field(default_factory=dict)


def _sliders(expression: Mapping[str, float]) -> np.ndarray:
    """Named sliders -> float32 (E,); unknown names raise ValueError naming the known ones."""
    return np.array(expression_vector(expression), np.float32)


def motion_network(model, config: EngineConfig):
    """The backend that runs `model`: an exported model (engine/onnx_runtime.py ExportedFolder) on onnxruntime or
    TensorRT, a torch MotionModel on torch (imported only then, so that the ONNX path never imports torch)."""
    from avatar_desktop.engine.onnx_runtime import ExportedFolder

    if isinstance(model, ExportedFolder):
        return model.motion_network(config)
    from avatar_desktop.engine.torch_motion import TorchMotionNetwork

    return TorchMotionNetwork(model, config)


class MotionStreamer:
    """Generates one stream of motion codes at a time, float32: `model` a torch MotionModel (run on
    `config.device`) or an exported motion model (engine/onnx_runtime.py)."""

    def __init__(self, model, config: EngineConfig = EngineConfig()):
        self.config = config
        self.network = motion_network(model, config)
        mc = self.model_config = self.network.config
        self.fps = mc.fps
        self.audio = AudioStream(mc.audio, mc.fps)
        self.samples_per_frame = self.audio.samples_per_frame
        self.lookahead_s = self.audio.lookahead_samples / (self.samples_per_frame * self.fps)
        self.sampler_name, self.steps = self.network.sampler_name, self.network.steps
        self.context_frames = mc.denoiser.context_frames
        self.planner = ChunkPlanner(mc.chunks, max_frames=mc.denoiser.max_chunk_frames, fixed=config.fixed_chunk)
        self._ease_frames = max(1, round(SLIDER_EASE_S * self.fps))
        self.noise = self.network.noise_source(config.seed)
        self._code_mean = np.array(mc.code_mean or (0.0,) * MOTION_DIM, np.float32)  # (D,) MotionModel.normalise
        self._code_std = np.array(mc.code_std or (1.0,) * MOTION_DIM, np.float32)
        self._neutral = self._normalise(np.zeros(MOTION_DIM, np.float32))  # (D,) the photo's own face
        self._target = slider_array(None)  # (E,) the sliders set
        self.reset()

    # ----------------------------------------------------------------- setup
    def prepare(self, expression: Mapping[str, float] | None = None, *, warmup: bool = True) -> None:
        """Set the sliders (held from the first frame, not eased) and, with `warmup`, generate one chunk of each
        planned length and throw it away. Starts a new stream (reset())."""
        if expression is not None:
            self._target = _sliders(expression)
        if warmup:
            plan = self.model_config.chunks
            fixed = self.config.fixed_chunk
            for length in sorted({fixed} if fixed else {plan.first, plan.after_state_change, plan.steady}):
                self.reset()
                self.audio.push(np.zeros(length * self.samples_per_frame + self.audio.lookahead_samples, np.float32))
                self._generate(length, State.SPEAKING)
        self.reset()

    def reset(self) -> None:
        """Start a new stream at frame 0: audio history and context cleared, the sliders held where they are set."""
        self.frame_index = 0
        self.audio.clear()
        self._context = np.tile(self._neutral, (1, self.context_frames, 1))  # (1, M, D)
        self._sliders = self._target.copy()  # (E,) the sliders of the last frame made
        self._ease_from = self._target.copy()
        self._eased = self._ease_frames  # frames since the last slider change (eased when >= _ease_frames)
        self._last_label: State | None = None
        self._head_scale = HEAD_MOTION[State.IDLE]  # a stream starts from the still photo
        self.planner.reset()
        self.noise.seed(self.config.seed)

    def set_expression(self, expression: Mapping[str, float]) -> None:
        """Named sliders in [-1, 1] (config.EXPRESSION_COMPONENTS); missing ones are 0. A change is eased over
        SLIDER_EASE_S, except before a stream's first frame, where the sliders hold from the start."""
        target = _sliders(expression)
        if self.frame_index == 0:
            self._target, self._sliders, self._ease_from = target, target.copy(), target.copy()
            self._eased = self._ease_frames
        elif not np.array_equal(target, self._target):
            self._ease_from = self._sliders.copy()
            self._target = target
            self._eased = 0

    @property
    def samples_received(self) -> int:
        return self.audio.received

    # ----------------------------------------------------------------- streaming
    def push_audio(self, audio: np.ndarray) -> None:
        """Append float32 (N,) 16 kHz mono samples to the stream without generating anything."""
        self.audio.push(audio)

    def step(
        self,
        audio: np.ndarray | None,
        label: State | int = State.SPEAKING,
        expression: Mapping[str, float] | None = None,
        *,
        end_of_stream: bool = False,
    ) -> MotionChunk | None:
        """Append `audio` (float32 (N,) 16 kHz mono, may be empty) and generate the next chunk if its audio is there.

        Returns None when more audio is needed (or, with end_of_stream, when every frame has been generated).
        With end_of_stream the stream is taken as complete: it has round(samples / samples_per_frame) frames,
        and the lookahead past its end is silence.
        """
        if audio is not None:
            self.push_audio(audio)
        if expression is not None:
            self.set_expression(expression)
        label = State(label)
        changed = self._last_label is not None and label != self._last_label
        planned = self.planner.length(state_changed=changed)
        length = self.audio.chunk_length(planned, self.frame_index, end_of_stream=end_of_stream)
        if length is None:
            return None
        self.planner.commit()
        return self._generate(length, label)

    def _generate(self, frames: int, label: State) -> MotionChunk:
        stage_ms: dict[str, float] = {}
        start = self.frame_index
        clock = time.perf_counter()
        tokens = self.network.audio_tokens(self.audio.windows(start, frames))  # (1, T, N, A)
        stage_ms["audio"] = (time.perf_counter() - clock) * 1000

        clock = time.perf_counter()
        sliders = self._slider_frames(frames)  # (T, E)
        context = self._context + self.model_config.context_noise_sigma * self.noise.normal(self._context.shape)
        noise = [self.noise.normal((1, frames, MOTION_DIM)) for _ in range(1 + self.network.fresh_draws)]
        labels = np.full((1, frames), int(label), np.int64)
        residual = self.network.sample(tokens, context, labels, sliders[None], noise)  # (T, D) code units
        self._context = np.concatenate([self._context, self._normalise(residual)[None]], axis=1)[
            :, -self.context_frames :]
        motion = residual.copy()
        motion[:, _HEAD] *= self._head_scales(frames, label)[:, None]
        codes = clip_code(motion + slider_offsets(sliders))  # (T, D)
        stage_ms["motion"] = (time.perf_counter() - clock) * 1000

        self.frame_index += frames
        self._last_label = label
        self.audio.trim(self.frame_index)
        timestamps = np.arange(start, start + frames, dtype=np.float64) / self.fps
        return MotionChunk(codes, timestamps, start, label, stage_ms)

    def _head_scales(self, frames: int, label: State) -> np.ndarray:
        """The head-motion scale (T,) of the next `frames` frames: HEAD_MOTION[label], reached from the last frame's
        scale by at most 1 / (HEAD_EASE_S * fps) a frame."""
        step = 1.0 / max(1.0, HEAD_EASE_S * self.fps)
        target = HEAD_MOTION[State(label)]
        moved = self._head_scale + np.clip(target - self._head_scale, -step, step) * np.arange(1, frames + 1)
        scales = np.where(target >= self._head_scale, np.minimum(moved, target), np.maximum(moved, target))
        self._head_scale = float(scales[-1])
        return scales.astype(np.float32)

    def _slider_frames(self, frames: int) -> np.ndarray:
        """The sliders (T, E) of the next `frames` frames: a change set by set_expression is reached linearly over
        SLIDER_EASE_S from the value shown when it was set."""
        progress = np.minimum(1.0, (self._eased + 1 + np.arange(frames)) / self._ease_frames)[:, None]
        values = (self._ease_from + progress * (self._target - self._ease_from)).astype(np.float32)
        self._eased += frames
        self._sliders = values[-1].copy()
        return values

    def _normalise(self, code: np.ndarray) -> np.ndarray:
        """Codes (..., D) in code units -> the denoiser's units (MotionModel.normalise)."""
        return (code - self._code_mean) / self._code_std
