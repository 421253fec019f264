"""What the latent model's two backends share (engine/streaming.py on torch, engine/onnx_runtime.py on
onnxruntime): the Chunk they return, LatentStream, the streaming bookkeeping around a backend's `_queue` and
`_collect`, and DecodeThread, on which a CPU backend decodes one chunk while the next is sampled. Imports no torch."""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, EngineConfig, ModelConfig, State
from avatar_desktop.engine.audio_stream import AudioStream
from avatar_desktop.engine.planner import ChunkPlanner
from avatar_desktop.engine.slider_warp import warp

LATENT_PATH = "latent model"
"""What the status and `live` call this path."""


@dataclass
class Chunk:
    """frames: uint8 (T, H, W, 3) RGB; timestamps: float64 (T,) media seconds (frame f starts at f / fps);
    start_frame: index of frames[0] in the stream; label: the state it was generated with;
    stage_ms: wall time of each stage for this chunk (audio, denoise, decode; decode includes the head re-posing);
    codes: the photo path's motion codes float32 (T, D) the frames were rendered from (None on the latent path)."""

    frames: np.ndarray
    timestamps: np.ndarray
    start_frame: int
    label: State
    stage_ms: dict[str, float] = field(default_factory=dict)
    codes: np.ndarray | None = None


class DecodeThread:
    """One background thread for decoding: `submit(decode, *args)` returns a Future of its result. With
    EngineConfig.overlap_decode on the CPU, a chunk decodes here while the calling thread samples the next one; both
    run in native code (torch, onnxruntime) that releases the GIL, so the two use two cores."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")

    def submit(self, decode: Callable, *args) -> Future:
        return self._pool.submit(decode, *args)


class LatentStream:
    """step() / push_audio() of a latent generator: audio in, and the next chunk once its audio is there.
    A backend calls `_init_stream` in its constructor and implements `prepare`, `reset` (calling `_reset_stream`),
    `set_expression`, `_queue(frames, label)` (start the next chunk and advance the stream past it; what it
    returns has `start`, the chunk's first frame) and `_collect(queued) -> Chunk` (its frames, waiting for them if
    they are still being made)."""

    path = LATENT_PATH
    notice = None  # the photo path's note on the portrait; the latent path has none

    def _init_stream(self, mc: ModelConfig, config: EngineConfig) -> None:
        self.config = config
        self.fps = mc.fps
        self.resolution = mc.autoencoder.image_size
        self.audio = AudioStream(mc.audio, mc.fps)
        self.samples_per_frame = self.audio.samples_per_frame
        self.lookahead_s = self.audio.lookahead_samples / (self.samples_per_frame * self.fps)
        sampling = mc.sampling
        self.audio_guidance = sampling.audio_guidance if config.audio_guidance is None else config.audio_guidance
        self.slider_speed = sampling.slider_speed if config.slider_speed is None else config.slider_speed
        self._warped = [EXPRESSION_COMPONENTS.index(name) for name in sampling.warped_sliders]  # slider positions
        self.planner = ChunkPlanner(mc.chunks, max_frames=mc.denoiser.max_chunk_frames, fixed=config.fixed_chunk)

    def _reset_stream(self) -> None:
        """Frame 0, no audio, no previous state, the chunk plan from its start."""
        self.frame_index = 0
        self.audio.clear()
        self._last_label: State | None = None
        self._queued: Any = None  # with overlap_decode: the chunk queued ahead, collected by the next step()
        self.planner.reset()

    def _warm_up_lengths(self) -> list[int]:
        """The chunk lengths prepare() warms up: each the plan uses (or the fixed one)."""
        plan = self.planner.plan
        fixed = self.config.fixed_chunk
        return sorted({fixed} if fixed else {plan.first, plan.after_state_change, plan.steady})

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames step() returns."""
        return self.resolution, self.resolution

    @property
    def samples_received(self) -> int:
        return self.audio.received

    def step(
        self,
        audio: np.ndarray | None,
        label: State | int = State.SPEAKING,
        expression: Mapping[str, float] | None = None,
        *,
        end_of_stream: bool = False,
    ) -> Chunk | None:
        """Append `audio` (float32 (N,) 16 kHz mono, may be empty) and generate the next chunk if its audio is there.

        Returns None when more audio is needed (or, with end_of_stream, when every frame has been generated).
        With end_of_stream the stream is taken as complete: it has round(samples / samples_per_frame) frames,
        and the lookahead past its end is silence.
        """
        if not self._prepared:
            raise RuntimeError("call prepare(portrait) before step()")
        if audio is not None:
            self.push_audio(audio)
        if expression is not None:
            self.set_expression(expression)
        return self._next_chunk(State(label), end_of_stream)

    def _next_chunk(self, label: State, end_of_stream: bool) -> Chunk | None:
        """The next chunk, generated with `label`, or None while its audio has not all arrived.

        With overlap_decode, the chunk after a queued one is queued too (when its audio is there) before the first
        one's frames are collected, so that its sampling runs while the first one decodes (on a second CUDA stream,
        or on the CPU on the DecodeThread). The stream's first chunk never waits for another; frames come out in
        order, the same as without overlap. A chunk queued early gets the label and sliders of the step() that
        queued it."""
        if not self.config.overlap_decode:
            length = self._plan_next(label, end_of_stream)
            return None if length is None else self._generate(length, label)
        queued = self._queued
        if queued is None:
            length = self._plan_next(label, end_of_stream)
            if length is None:
                return None
            queued = self._queue(length, label)
            if queued.start == 0:
                return self._collect(queued)
        length = self._plan_next(label, end_of_stream)
        self._queued = None if length is None else self._queue(length, label)
        return self._collect(queued)

    def _generate(self, frames: int, label: State) -> Chunk:
        """The next chunk of `frames` frames, generated with `label`, start to end."""
        return self._collect(self._queue(frames, label))

    def _plan_next(self, label: State, end_of_stream: bool) -> int | None:
        """Frames in the next chunk (committed to the chunk plan), or None while its audio has not all arrived."""
        state_changed = self._last_label is not None and label != self._last_label
        planned = self.planner.length(state_changed=state_changed)
        length = self.audio.chunk_length(planned, self.frame_index, end_of_stream=end_of_stream)
        if length is not None:
            self.planner.commit()
        return length

    def push_audio(self, audio: np.ndarray) -> None:
        """Append float32 (N,) 16 kHz mono samples to the stream without generating anything."""
        self.audio.push(audio)

    def _advance_stream(self, frames: int, label: State) -> None:
        """The next chunk starts `frames` frames later and follows one of `label`; audio no window needs is dropped."""
        self.frame_index += frames
        self._last_label = label
        self.audio.trim(self.frame_index)

    def _chunk_at(self, start: int, frames_rgb: np.ndarray, warped_sliders: np.ndarray, label: State,
                  stage_ms: dict[str, float]) -> Chunk:
        """The Chunk of decoded frames uint8 (T, H, W, 3) from frame `start` on, re-posed by the sliders the engine
        warps (float32 (E,) values of all sliders; only the warped ones are read)."""
        if self._warped:
            values = np.zeros(len(EXPRESSION_COMPONENTS), np.float32)
            values[self._warped] = warped_sliders[self._warped]
            frames_rgb = warp(frames_rgb, values)
        timestamps = np.arange(start, start + len(frames_rgb), dtype=np.float64) / self.fps
        return Chunk(frames_rgb, timestamps, start, label, stage_ms)
