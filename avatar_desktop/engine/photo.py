"""PhotoStreamingGenerator: the photo path (DESIGN.md 5b). A photo plus a stream of audio in, chunks of frames out.

prepare() finds the face mesh once and prepares the renderer; step() runs the motion generator (audio -> motion
codes, engine/motion_stream.py) and the renderer (motion code + face mesh -> the photo with its face moved, at the
photo's own resolution or fitted to the camera). The same contract as engine/streaming.py StreamingGenerator, so
the worker, `render`, `bench` and `eval` drive either without knowing which.

The motion model runs at its own rate (25 codes a second); frames can come out at another (the camera's, 30 fps):
output frame j shows the motion track interpolated at its centre time (j + 0.5) / fps. A frame whose centre lies
past the newest motion frame waits for it, except at a chunk's end, where it holds the last code rather than add a
motion frame of latency.
"""

from __future__ import annotations

import time
from typing import Mapping

import numpy as np

from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State
from avatar_desktop.engine.motion_stream import MotionStreamer
from avatar_desktop.engine.portrait import check_rgb
from avatar_desktop.engine.latent_stream import Chunk
from avatar_desktop.face import FaceMesh, find_face
from avatar_desktop.motion_code import MOTION_DIM, neutral_code
from avatar_desktop.render import PhotoRenderer, camera_frame_size, fit_to_camera

PHOTO_PATH = "photo renderer"
"""What the status and `live` call this path."""


class PhotoStreamingGenerator:
    """Motion generator + photo renderer. `frame_limit` (width, height): frames are that size (the camera's in a
    live session), the photo fitted inside and the sides filled with a blurred, darkened copy of it
    (render.fit_to_camera, made once); None: the photo's own size, capped at 1920 on the long side. `fps`: frames a
    second out (the camera's rate in a live session); None: the motion model's."""

    path = PHOTO_PATH

    def __init__(self, motion_model, config: EngineConfig = EngineConfig(), *,
                 frame_limit: tuple[int, int] | None = None, fps: int | None = None):
        self.config = config
        self.motion = MotionStreamer(motion_model, config)
        self.planner = self.motion.planner
        self.fps = fps or self.motion.fps
        self.samples_per_frame = SAMPLE_RATE / self.fps  # audio samples per output frame (fractional when resampled)
        self.lookahead_s = self.motion.lookahead_s
        self.frame_limit = frame_limit
        self.renderer: PhotoRenderer | None = None
        self._backdrop: np.ndarray | None = None  # uint8 (H, W, 3) at frame_limit: the sides around the photo
        self.face: FaceMesh | None = None
        self.notice: str | None = None  # what the user should know about the portrait (several faces)
        self.reset()

    # ----------------------------------------------------------------- setup
    def prepare(self, portrait: np.ndarray, expression: Mapping[str, float] | None = None, *, warmup: bool = True,
                face: FaceMesh | None = None, source: str = "portrait") -> None:
        """Find the face (unless `face` is given: a mesh found on this very image) and prepare the renderer.
        portrait: uint8 (H, W, 3) RGB, as load_portrait returns it. Raises avatar_desktop.face.NoFaceError when the
        photo has no usable face; the generator then keeps its previous portrait. Starts a new stream."""
        check_rgb(portrait, source=source)
        face = face if face is not None else find_face(portrait, source=source)
        height, width = portrait.shape[:2]
        output_size = camera_frame_size((width, height), self.frame_limit) if self.frame_limit else None
        renderer = PhotoRenderer(portrait, face, output_size=output_size)
        if warmup:
            renderer.render(neutral_code()[0])
        self.renderer, self.face = renderer, face
        self._backdrop = fit_to_camera(renderer.neutral, self.frame_limit) if self.frame_limit else None
        self.notice = (f"{face.faces_found} faces in {source}: the largest is animated" if face.faces_found > 1
                       else None)
        self.motion.prepare(expression, warmup=warmup)
        self.reset()

    def describe(self) -> dict:
        """What runs, for benchmark reports: the motion generator's sampler and chunk plan, the photo's size."""
        plan = self.planner.plan
        return {
            "preset": "motion",
            "sampler": self.motion.sampler_name,
            "steps": self.motion.steps,
            "chunk_plan": {"first": plan.first, "after_state_change": plan.after_state_change,
                           "steady": self.config.fixed_chunk or plan.steady},
            "photo_size": "x".join(str(v) for v in self.face.image_size),
        }

    @property
    def frame_size(self) -> tuple[int, int]:
        """(width, height) of the frames step() returns."""
        if self.renderer is None:
            raise RuntimeError("call prepare(portrait) before asking for the frame size")
        return self.frame_limit or self.renderer.frame_size

    @property
    def resolution(self) -> str:
        width, height = self.frame_size
        return f"{width}x{height}"

    @property
    def samples_received(self) -> int:
        return self.motion.samples_received

    def set_expression(self, expression: Mapping[str, float]) -> None:
        """Named sliders in [-1, 1] (config.EXPRESSION_COMPONENTS); missing ones are neutral (0)."""
        self.motion.set_expression(expression)

    def reset(self) -> None:
        """Start a new stream at frame 0 with the same photo."""
        self.motion.reset()
        self.frame_index = 0  # output frames made
        self._track = np.zeros((0, MOTION_DIM), np.float32)  # (M, D) motion codes from motion frame _track_start
        self._track_start = 0

    def push_audio(self, audio: np.ndarray) -> None:
        """Append float32 (N,) 16 kHz mono samples without generating anything."""
        self.motion.push_audio(audio)

    # ----------------------------------------------------------------- streaming
    def step(self, audio: np.ndarray | None, label: State | int = State.SPEAKING,
             expression: Mapping[str, float] | None = None, *, end_of_stream: bool = False) -> Chunk | None:
        """As StreamingGenerator.step: append audio, and return the next chunk once its audio (with lookahead) is
        there. Chunk.frames: uint8 (T, H, W, 3) at frame_size; stage_ms: audio, motion, render."""
        if self.renderer is None:
            raise RuntimeError("call prepare(portrait) before step()")
        stage_ms: dict[str, float] = {}
        while True:  # at other rates a short motion chunk may hold no output frame's centre yet
            motion = self.motion.step(audio, label, expression, end_of_stream=end_of_stream)
            audio = expression = None
            if motion is not None:
                for stage, ms in motion.stage_ms.items():
                    stage_ms[stage] = stage_ms.get(stage, 0.0) + ms
                label = motion.label
                self._track = np.concatenate([self._track, motion.codes])
            codes = self._output_codes(final=motion is None and end_of_stream)
            if len(codes):
                break
            if motion is None:
                return None
        clock = time.perf_counter()
        frames = self._frames(codes)
        stage_ms["render"] = (time.perf_counter() - clock) * 1000
        start = self.frame_index
        self.frame_index += len(codes)
        timestamps = np.arange(start, self.frame_index, dtype=np.float64) / self.fps
        return Chunk(frames, timestamps, start, State(label), stage_ms, codes)

    def _frames(self, codes: np.ndarray) -> np.ndarray:
        """Codes (T, D) -> frames uint8 (T, H, W, 3) at frame_size: rendered, and placed on the backdrop."""
        if self._backdrop is None:
            return np.stack([self.renderer.render(code) for code in codes])
        width, height = self.renderer.frame_size
        x0, y0 = (self._backdrop.shape[1] - width) // 2, (self._backdrop.shape[0] - height) // 2
        frames = np.repeat(self._backdrop[None], len(codes), axis=0)
        for frame, code in zip(frames, codes):
            frame[y0 : y0 + height, x0 : x0 + width] = self.renderer.render(code)
        return frames

    def _output_codes(self, *, final: bool) -> np.ndarray:
        """Codes (T, D) of the output frames whose centre the motion track now covers (with `final`: every frame
        the stream has left), interpolated linearly in time; drops the track frames no later frame needs."""
        generated = self._track_start + len(self._track)  # motion frames made so far
        if final:
            end = round(self.samples_received / self.samples_per_frame)
        else:
            end = int(np.ceil(generated / self.motion.fps * self.fps - 0.5))  # frames j with centre < generated
        if end <= self.frame_index or not len(self._track):
            return np.zeros((0, MOTION_DIM), np.float32)
        centres = (np.arange(self.frame_index, end) + 0.5) / self.fps * self.motion.fps - 0.5  # in motion frames
        position = np.clip(centres, 0, generated - 1) - self._track_start
        before = np.floor(position).astype(int)
        after = np.minimum(before + 1, len(self._track) - 1)
        weight = (position - before)[:, None].astype(np.float32)
        codes = (1 - weight) * self._track[before] + weight * self._track[after]
        keep_from = max(0, int(before[-1]) - 1)
        self._track = self._track[keep_from:]
        self._track_start += keep_from
        return codes
