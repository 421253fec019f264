"""The headless live session: microphone -> generator worker -> virtual camera, supervised.

Threads of the main process:
    PortAudio callback   copies mic blocks into the AudioRing (runtime/mic.py)
    listener             voice activity -> speaking / listening / idle -> `set_state`; speech onsets for latency
                         (runtime/listener.py)
    camera-sender        paces frames from the FrameRing to the sinks at the camera fps (runtime/pacer.py)
    supervisor           worker reports -> stats; restarts a dead worker; reopens a microphone that stopped
                         (runtime/supervisor.py)
The worker process generates (runtime/worker.py). The session makes the rings and the devices, starts those
threads, and holds what the user set (the expression it reads from the ExpressionState it is given); `stop()` (or
leaving the `with` block) ends everything and unlinks the shared memory on every exit path.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from avatar_desktop.audio.capture import CaptureConfig
from avatar_desktop.audio.passthrough import DelayLine, Passthrough
from avatar_desktop.audio.vad import VadConfig
from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.output.camera import CameraConfig, CameraUnavailableError, Canvas, VirtualCameraSink
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.events import EventKind, EventLog
from avatar_desktop.runtime.expression import ExpressionState
from avatar_desktop.runtime.listener import Listener, OnsetLatency
from avatar_desktop.runtime.mic import MicCapture
from avatar_desktop.runtime.pacer import CameraSender, Pacer, PacerConfig, Sink
from avatar_desktop.runtime.rings import (
    AudioRing,
    FrameRing,
    clean_stale_segments,
    new_session_token,
    segment_name,
)
from avatar_desktop.runtime.stats import SessionStats
from avatar_desktop.runtime.supervisor import Supervisor
from avatar_desktop.runtime.worker import WorkerHandle, WorkerSpec, default_threads


@dataclass(frozen=True)
class RuntimeConfig:
    """How the session runs. frame_slots: FrameRing capacity in frames (each as large as the camera canvas, or
    512 x 512 when that is larger: the latent models' frames);
    worker_threads: the model's threads in the worker (None: all cores but one); standby_worker: keep a second worker
    loaded and waiting, promoted at once when the active one dies (a fresh one needs seconds to import torch);
    mic_stall_s: a microphone silent (no callbacks) this long is reported gone and reopened every `mic_retry_s`."""

    pacer: PacerConfig = PacerConfig()
    frame_slots: int = 32
    audio_ring_seconds: float = 10.0
    worker_threads: int | None = None
    standby_worker: bool = True
    restart_backoff_s: float = 0.5
    mic_stall_s: float = 3.0
    mic_retry_s: float = 2.0


@dataclass(frozen=True)
class SessionConfig:
    """One live session, composed by the CLI or the GUI. camera=None: preview only (no virtual camera);
    audio_out: output device (index or name) for the delayed mic passthrough, None = no passthrough."""

    model: ModelSpec
    engine: EngineConfig = EngineConfig()
    mic: CaptureConfig = CaptureConfig()
    far_end: CaptureConfig | None = None
    vad: VadConfig = VadConfig()
    camera: CameraConfig | None = CameraConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    audio_out: str | int | None = None


def _block(capture: CaptureConfig) -> int:
    """Samples per capture block at 16 kHz."""
    return round(capture.block_ms * SAMPLE_RATE / 1000)


class LiveSession:
    """Start with `start()` (or `with`), stop with `stop()`.

    portrait: uint8 (H, W, 3) RGB, as engine.portrait.load_portrait returns it (used as it is). expression: the
    owner of the slider values (runtime/expression.py), shared with whoever sets them; None: a neutral one of the
    session's own. Extra `sinks` (file recorder, GUI preview) get every canvas the camera gets.
    Status: `status()` (dict), `stats.snapshot()`; `events` (an EventLog) says what happened, each event with its
    kind and sequence number. `worker`, `worker_ready`, `standby_ready` and `path` are the supervisor's.
    """

    def __init__(self, portrait: np.ndarray, config: SessionConfig, *, sinks: Sequence[Sink] = (),
                 expression: ExpressionState | None = None):
        self.portrait = portrait
        self.config = config
        self._expression = expression if expression is not None else ExpressionState()
        self._unsubscribe: Callable[[], None] | None = None
        self.model = config.model
        self.stats = SessionStats()
        self.events = EventLog()
        runtime = config.runtime
        self._supervisor = Supervisor(
            make_spec=self._worker_spec, mic_opener=self._open_mic, stats=self.stats, report=self._event,
            standby=runtime.standby_worker, restart_backoff_s=runtime.restart_backoff_s,
            mic_stall_s=runtime.mic_stall_s, mic_retry_s=runtime.mic_retry_s,
        )
        self._extra_sinks = list(sinks)
        self._override: State | None = None
        self.camera: VirtualCameraSink | None = None
        self.camera_error: str | None = None
        self.last_error: str | None = None
        self._audio: AudioRing | None = None
        self._frames: FrameRing | None = None
        self._listener: Listener | None = None
        self._onsets: OnsetLatency | None = None
        self._far: MicCapture | None = None
        self._sender: CameraSender | None = None
        self._far_ring: AudioRing | None = None
        self._passthrough: Passthrough | None = None
        self.started = False

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> "LiveSession":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> "LiveSession":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        runtime = self.config.runtime
        for name in clean_stale_segments():
            self._event(EventKind.STALE_MEMORY_REMOVED, f"removed shared memory {name} left by a crashed session")
        token = new_session_token()
        self._audio = AudioRing.create(
            segment_name(token, "audio"), seconds=runtime.audio_ring_seconds, block_samples=_block(self.config.mic)
        )
        self._frames = FrameRing.create(
            segment_name(token, "frames"), n_slots=runtime.frame_slots, max_pixels=max(512 * 512, self._canvas_pixels())
        )
        self._supervisor.open_mic()
        if self.config.far_end is not None:
            self._far_ring = AudioRing.create(None, seconds=2.0, block_samples=_block(self.config.far_end))
            self._far = MicCapture(self._far_ring, self.config.far_end).start()
        if self.config.camera is not None:
            try:
                self.camera = VirtualCameraSink(self.config.camera)
            except CameraUnavailableError as error:
                self.camera_error = str(error)
                self._event(EventKind.CAMERA_UNAVAILABLE, f"{error}; going on with the preview only")
        self._unsubscribe = self._expression.subscribe(self._send_expression)
        self._supervisor.start()
        self._send_expression(self.expression)  # a change made while the first worker was being spawned
        clock = MicClock(self._audio)
        canvas_config = self.config.camera or CameraConfig()
        self.pacer = Pacer(self._frames, clock, runtime.pacer)
        self._onsets = OnsetLatency(clock, canvas_config.fps, self.stats)
        sinks = ([self.camera] if self.camera else []) + self._extra_sinks
        self._sender = CameraSender(
            self.pacer, Canvas(canvas_config), sinks, fps=canvas_config.fps, placeholder=self.portrait,
            on_tick=self._on_tick, on_sink_error=self._on_sink_error,
        )
        delay_line = None
        if self.config.audio_out is not None:
            delay_line = DelayLine()
            self._passthrough = Passthrough(delay_line, self.config.audio_out, lambda: self.pacer.delay_s)
            self._passthrough.start()
        self._listener = Listener(self._audio, self._far_ring, self.config.vad, onsets=self._onsets,
                                  delay_line=delay_line, on_state=self._on_state)
        self._listener.override = self._override
        self._sender.start()
        self._listener.start()
        self.started = True

    def stop(self) -> None:
        """Stop everything and release every resource; safe to call twice and after a failed start."""
        if self._sender is not None:
            self._sender.stop()
        if self._listener is not None:
            self._listener.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._supervisor.stop()
        for device in (self._far, self._passthrough):
            if device is not None:
                device.close()
        self._far = self._passthrough = None
        for sink in ([self.camera] if self.camera else []) + self._extra_sinks:
            try:
                sink.close()
            except Exception as error:  # closing a camera that already failed: nothing else to release
                self._event(EventKind.SINK_CLOSE_FAILED, f"closing {getattr(sink, 'name', sink)} failed: {error}")
        self.camera = None
        self._extra_sinks = []
        for ring in (self._audio, self._frames):
            if ring is not None:
                ring.ring.close()
                ring.ring.unlink()
        self._audio = self._frames = None

    # ---------------------------------------------------------------- controls
    def set_reference(self, portrait: np.ndarray) -> None:
        """Send a new portrait (uint8 (H, W, 3) RGB, as load_portrait returns it) to the workers."""
        self.portrait = portrait
        self._supervisor.broadcast("set_reference", portrait)

    @property
    def expression(self) -> dict[str, float]:
        """The slider values the workers generate with (the ExpressionState's)."""
        return self._expression.values

    def set_expression(self, expression: Mapping[str, float]) -> None:
        """Set the ExpressionState (ValueError for unknown names or values outside [-1, 1]); the workers follow."""
        self._expression.set(expression)

    def set_state_override(self, state: State | None) -> None:
        """Force a state (wins over voice activity), or None to follow voice activity again."""
        self._override = state
        if self._listener is not None:
            self._listener.override = state

    def set_model(self, model: ModelSpec) -> None:
        """Switch models in the worker; if the new one fails to load the old one keeps running (see events)."""
        self.model = model
        self._supervisor.worker_ready.clear()
        self._supervisor.broadcast("set_model", model)

    # ---------------------------------------------------------------- what the supervisor and listener know
    @property
    def state(self) -> State:
        """The state the workers generate with (voice activity or the override); idle before the start."""
        return self._listener.state if self._listener is not None else State.IDLE

    @property
    def worker(self) -> WorkerHandle | None:
        return self._supervisor.worker

    @property
    def worker_ready(self) -> threading.Event:
        """Set while the active worker has a model loaded and generates."""
        return self._supervisor.worker_ready

    @property
    def standby_ready(self) -> threading.Event:
        """Set while a standby worker is loaded and waits."""
        return self._supervisor.standby_ready

    @property
    def path(self) -> str | None:
        """'photo renderer' or 'latent model', once a worker is ready."""
        return self._supervisor.path

    def status(self) -> dict:
        mic = self._supervisor.mic
        return {
            "state": self.state.name.lower(),
            "path": self.path,
            "worker_pid": self.worker.pid if self.worker else None,
            "worker_alive": bool(self.worker and self.worker.alive()),
            "camera": self.camera.device if self.camera else None,
            "camera_error": self.camera_error,
            "mic": mic.device_name if mic else None,
            "audio_out": self._passthrough.device_name if self._passthrough else None,
            "target_delay_ms": round(self.pacer.delay_s * 1000, 1) if self._sender else None,
            "last_error": self.last_error,
        }

    def snapshot(self) -> dict:
        """Stats and status together (what `live --stats-json` writes)."""
        mic = self._supervisor.mic
        return self.stats.snapshot(
            status=self.status(),
            audio_overflows=(mic.overflows if mic else 0) + (self._far.overflows if self._far else 0),
            skipped_frames=self.pacer.skipped if self._sender else 0,
            camera_late_ticks=self._sender.late_ticks if self._sender else 0,
            passthrough_resyncs=self._passthrough.resyncs if self._passthrough else None,
            events=[event.as_json() for event in self.events],
        )

    # ---------------------------------------------------------------- internals
    def _event(self, kind: EventKind, message: str) -> None:
        self.events.add(kind, message)
        if kind.problem:
            self.last_error = message

    def _send_expression(self, expression: dict[str, float]) -> None:
        self._supervisor.broadcast("set_expression", expression)

    def _open_mic(self) -> MicCapture:
        return MicCapture(self._audio, self.config.mic).start()

    def _worker_spec(self, active: bool) -> WorkerSpec:
        """A new worker's start: the session's portrait, model, expression and state as they are now."""
        return WorkerSpec(
            model=self.model, audio_ring=self._audio.ring.name, frame_ring=self._frames.ring.name,
            portrait=self.portrait, engine=self.config.engine, expression=self.expression, state=int(self.state),
            threads=self.config.runtime.worker_threads or default_threads(), active=active,
            frame_limit=self._canvas_size(), frame_rate=(self.config.camera or CameraConfig()).fps,
        )

    def _canvas_size(self) -> tuple[int, int]:
        """(width, height) of the camera canvas: the photo path renders its frames fitted inside it."""
        canvas = self.config.camera or CameraConfig()
        return canvas.width, canvas.height

    def _canvas_pixels(self) -> int:
        width, height = self._canvas_size()
        return width * height

    def _on_tick(self, sent_at: float, fresh: bool, media_time: float) -> None:
        """Camera thread: count the tick; time the speech onsets the frame shows."""
        self.stats.tick(sent_at, fresh)
        self._onsets.frame_sent(sent_at, fresh, media_time)

    def _on_state(self, state: State, mic_seconds: float) -> None:
        """Listener thread: the state changed."""
        self.stats.state_change(state.name.lower(), mic_seconds)
        self._supervisor.broadcast("set_state", int(state))

    def _on_sink_error(self, sink: Sink, error: Exception) -> None:
        self._event(EventKind.SINK_FAILED,
                    f"{getattr(sink, 'name', sink)} failed and was closed ({error}); preview goes on")
        if sink is self.camera:
            self.camera_error = str(error)

