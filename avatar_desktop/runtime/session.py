"""The headless live session: microphone -> generator worker -> virtual camera, supervised.

Threads of the main process:
    PortAudio callback   copies mic blocks into the AudioRing (runtime/mic.py)
    listener             voice activity -> speaking / listening / idle -> `set_state`; speech onsets for latency
    camera-sender        paces frames from the FrameRing to the sinks at the camera fps (runtime/pacer.py)
    supervisor           worker reports -> stats; restarts a dead worker; reopens a microphone that stopped
The worker process generates (runtime/worker.py). `stop()` (or leaving the `with` block) ends everything and
unlinks the shared memory on every exit path.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from avatar_desktop.audio.capture import AudioDeviceError, CaptureConfig
from avatar_desktop.audio.passthrough import DelayLine, Passthrough
from avatar_desktop.audio.vad import OnsetDetector, VadConfig, VoiceActivity, decide_state
from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State, expression_vector
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.errors import AvatarError
from avatar_desktop.output.camera import CameraConfig, CameraUnavailableError, Canvas, VirtualCameraSink
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.events import EventKind, EventLog
from avatar_desktop.runtime.mic import MicCapture
from avatar_desktop.runtime.pacer import CameraSender, Pacer, PacerConfig, Sink
from avatar_desktop.runtime.rings import (
    AudioReader,
    AudioRing,
    FrameRing,
    clean_stale_segments,
    new_session_token,
    segment_name,
)
from avatar_desktop.runtime.stats import SessionStats
from avatar_desktop.runtime.worker import WorkerHandle, WorkerSpec, default_threads, describe_exit


@dataclass(frozen=True)
class RuntimeConfig:
    """How the session runs. frame_slots: FrameRing capacity in frames (each as large as the camera canvas, or
    512 x 512 when that is larger: the latent models' frames);
    worker_threads: torch threads in the worker (None: all cores but one); standby_worker: keep a second worker
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
    expression: Mapping[str, float] = field(default_factory=dict)
    audio_out: str | int | None = None


def _block(capture: CaptureConfig) -> int:
    """Samples per capture block at 16 kHz."""
    return round(capture.block_ms * SAMPLE_RATE / 1000)


class LiveSession:
    """Start with `start()` (or `with`), stop with `stop()`.

    portrait: uint8 (H, W, 3) RGB. Extra `sinks` (file recorder, GUI preview) get every canvas the camera gets.
    Status: `status()` (dict), `stats.snapshot()`; `events` (an EventLog) says what happened, each event with its
    kind and sequence number.
    """

    def __init__(self, portrait: np.ndarray, config: SessionConfig, *, sinks: Sequence[Sink] = ()):
        from avatar_desktop.engine.portrait import portrait_from_array

        self.portrait = portrait_from_array(np.asarray(portrait))
        self.config = config
        self.expression = dict(config.expression)
        expression_vector(self.expression)  # validates names
        self.model = config.model
        self.stats = SessionStats()
        self.events = EventLog()
        self._extra_sinks = list(sinks)
        self._stop = threading.Event()
        self._spawn_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._onsets: deque[int] = deque()
        self._first_media_time: float | None = None  # media time (s) of the first generated frame the camera sent
        self._override: State | None = None
        self.state = State.IDLE
        self.camera: VirtualCameraSink | None = None
        self.camera_error: str | None = None
        self.worker: WorkerHandle | None = None
        self.standby: WorkerHandle | None = None
        self.standby_ready = threading.Event()
        self.worker_ready = threading.Event()
        self.last_error: str | None = None
        self.path: str | None = None  # "photo renderer" or "latent model", once a worker is ready
        self._audio: AudioRing | None = None
        self._frames: FrameRing | None = None
        self._mic: MicCapture | None = None
        self._far: MicCapture | None = None
        self._sender: CameraSender | None = None
        self._far_ring: AudioRing | None = None
        self._delay_line: DelayLine | None = None
        self._passthrough: Passthrough | None = None
        self.started = False
        self._mic_retry_at = 0.0

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
        self._mic = MicCapture(self._audio, self.config.mic).start()
        if self.config.far_end is not None:
            self._far_ring = AudioRing.create(None, seconds=2.0, block_samples=_block(self.config.far_end))
            self._far = MicCapture(self._far_ring, self.config.far_end).start()
        if self.config.camera is not None:
            try:
                self.camera = VirtualCameraSink(self.config.camera)
            except CameraUnavailableError as error:
                self.camera_error = str(error)
                self._event(EventKind.CAMERA_UNAVAILABLE, f"{error}; going on with the preview only")
        self.worker = self._spawn_worker(active=True)
        self._clock = MicClock(self._audio)
        canvas_config = self.config.camera or CameraConfig()
        self.pacer = Pacer(self._frames, self._clock, runtime.pacer)
        sinks = ([self.camera] if self.camera else []) + self._extra_sinks
        self._sender = CameraSender(
            self.pacer, Canvas(canvas_config), sinks, fps=canvas_config.fps, placeholder=self.portrait,
            on_tick=self._on_tick, on_sink_error=self._on_sink_error,
        )
        self._threads = [
            threading.Thread(target=self._listen, name="listener", daemon=True),
            threading.Thread(target=self._supervise, name="supervisor", daemon=True),
        ]
        if self.config.audio_out is not None:
            self._delay_line = DelayLine()
            self._passthrough = Passthrough(self._delay_line, self.config.audio_out, lambda: self.pacer.delay_s)
            self._passthrough.start()
        self._sender.start()
        for thread in self._threads:
            thread.start()
        self.started = True

    def stop(self) -> None:
        """Stop everything and release every resource; safe to call twice and after a failed start."""
        with self._spawn_lock:  # no worker is spawned from here on
            self._stop.set()
        if self._sender is not None:
            self._sender.stop()
        for thread in self._threads:
            thread.join(5.0)
        for worker in (self.worker, self.standby):
            if worker is not None:
                worker.stop()
        self.standby = None
        for device in (self._mic, self._far, self._passthrough):
            if device is not None:
                device.close()
        self._mic = self._far = self._passthrough = None
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
    def set_reference(self, path: str | Path) -> None:
        """Load a new portrait and send it to the worker; InputFileError (the old one stays) when unreadable."""
        from avatar_desktop.engine.portrait import load_portrait

        try:
            portrait = load_portrait(path)
        except AvatarError as error:
            self._event(EventKind.PORTRAIT_REFUSED, f"portrait not changed: {error}")
            raise
        self.portrait = portrait
        self._broadcast("set_reference", portrait)

    def set_expression(self, expression: Mapping[str, float]) -> None:
        expression_vector(expression)
        self.expression = dict(expression)
        self._broadcast("set_expression", self.expression)

    def set_state_override(self, state: State | None) -> None:
        """Force a state (wins over voice activity), or None to follow voice activity again."""
        self._override = state

    def set_model(self, model: ModelSpec) -> None:
        """Switch models in the worker; if the new one fails to load the old one keeps running (see events)."""
        self.model = model
        self.worker_ready.clear()
        self._broadcast("set_model", model)

    def status(self) -> dict:
        return {
            "state": self.state.name.lower(),
            "path": self.path,
            "worker_pid": self.worker.pid if self.worker else None,
            "worker_alive": bool(self.worker and self.worker.alive()),
            "camera": self.camera.device if self.camera else None,
            "camera_error": self.camera_error,
            "mic": self._mic.device_name if self._mic else None,
            "audio_out": self._passthrough.device_name if self._passthrough else None,
            "target_delay_ms": round(self.pacer.delay_s * 1000, 1) if self._sender else None,
            "last_error": self.last_error,
        }

    def snapshot(self) -> dict:
        """Stats and status together (what `live --stats-json` writes)."""
        mic = self._mic
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

    def _broadcast(self, name: str, value) -> None:
        """A command for the active worker and the standby (which must be ready to take over as is)."""
        for worker in (self.worker, self.standby):
            if worker is not None:
                worker.send(name, value)

    def _spawn_worker(self, *, active: bool) -> WorkerHandle:
        runtime = self.config.runtime
        spec = WorkerSpec(
            model=self.model, audio_ring=self._audio.ring.name, frame_ring=self._frames.ring.name,
            portrait=self.portrait, engine=self.config.engine, expression=self.expression, state=int(self.state),
            threads=runtime.worker_threads or default_threads(), active=active, frame_limit=self._canvas_size(),
            frame_rate=(self.config.camera or CameraConfig()).fps,
        )
        (self.worker_ready if active else self.standby_ready).clear()
        return WorkerHandle(spec)

    def _canvas_size(self) -> tuple[int, int]:
        """(width, height) of the camera canvas: the photo path renders its frames fitted inside it."""
        canvas = self.config.camera or CameraConfig()
        return canvas.width, canvas.height

    def _canvas_pixels(self) -> int:
        width, height = self._canvas_size()
        return width * height

    def _on_tick(self, sent_at: float, fresh: bool, media_time: float) -> None:
        """Camera thread: count the tick; time the first frame that covers each pending speech onset. Onsets from
        before the first generated frame (the session was still starting: nothing could show them) are dropped."""
        self.stats.tick(sent_at, fresh)
        if fresh and self._first_media_time is None:
            self._first_media_time = media_time
        frame_end = media_time + 1.0 / self._sender_fps()
        while fresh and self._onsets and self._onsets[0] / SAMPLE_RATE < frame_end:
            onset = self._onsets.popleft() / SAMPLE_RATE
            if onset < self._first_media_time:
                continue
            captured_at = self._clock.to_monotonic(onset)
            if captured_at is not None:
                self.stats.mic_to_camera((sent_at - captured_at) * 1000)

    def _sender_fps(self) -> float:
        return (self.config.camera or CameraConfig()).fps

    def _on_sink_error(self, sink: Sink, error: Exception) -> None:
        self._event(EventKind.SINK_FAILED,
                    f"{getattr(sink, 'name', sink)} failed and was closed ({error}); preview goes on")
        if sink is self.camera:
            self.camera_error = str(error)

    def _listen(self) -> None:
        """Voice activity on the mic (and far end) -> state; level onsets -> pending latency measurements."""
        import torch

        torch.set_num_threads(1)
        mic_reader = AudioReader(self._audio)
        far_reader = AudioReader(self._far_ring) if self._far else None
        mic_vad = VoiceActivity(self.config.vad)
        far_vad = VoiceActivity(self.config.vad) if self._far else None
        onsets = OnsetDetector()
        while not self._stop.wait(0.01):
            samples = mic_reader.read()
            if samples.size:
                start = mic_reader.position - samples.size
                if self._delay_line is not None:
                    self._delay_line.write(samples, start)
                mic_vad.feed(samples)
                self._onsets.extend(onsets.feed(samples, start))
            if far_reader is not None:
                far_vad.feed(far_reader.read())
            state = decide_state(
                mic_active=mic_vad.active, far_end_active=bool(far_vad and far_vad.active), override=self._override
            )
            if state != self.state:
                self.state = state
                self.stats.state_change(state.name.lower(), mic_reader.position / SAMPLE_RATE)
                self._broadcast("set_state", int(state))

    def _supervise(self) -> None:
        """Worker reports -> stats and events; a dead worker is replaced; a stalled mic is reopened."""
        backoff = self.config.runtime.restart_backoff_s
        while not self._stop.is_set():
            worker = self.worker
            report = worker.receive(0.05)
            if report is not None:
                self._on_report(report, worker)
            standby = self.standby
            while standby is not None and (report := standby.receive(0)) is not None:
                self._on_report(report, standby)
            if self._stop.is_set():
                break
            if not worker.alive():
                backoff = self._replace_dead_worker(worker, backoff)
            elif standby is not None and not standby.alive():
                self._event(EventKind.STANDBY_DIED, f"standby worker {standby.pid} died "
                                                    f"({describe_exit(standby.process.exitcode)}); starting another")
                standby.stop(0.1)
                self.standby = None
                self.standby_ready.clear()
            elif standby is None and self.config.runtime.standby_worker and self.worker_ready.is_set():
                with self._spawn_lock:
                    if not self._stop.is_set():
                        self.standby = self._spawn_worker(active=False)
            self._watch_mic()

    def _replace_dead_worker(self, worker: WorkerHandle, backoff: float) -> float:
        """Promote the standby (or spawn a worker) in place of a dead one; returns the next backoff (s)."""
        if self._stop.is_set():  # it was stopped, not killed
            return backoff
        while (last_words := worker.receive(0)) is not None:  # the dead worker's error report first
            self._on_report(last_words, worker)
        self.stats.worker_restarts += 1
        uptime = time.monotonic() - worker.started_at
        worker.stop(0.1)
        standby, self.standby = self.standby, None
        self.standby_ready.clear()
        if standby is not None and standby.alive():
            self.worker_ready.clear()
            self.worker = standby
            standby.send("activate")
            how = f"standby worker {standby.pid} took over"
        else:
            backoff = self.config.runtime.restart_backoff_s if uptime > 30 else min(backoff * 2, 10.0)
            if self._stop.wait(backoff):
                return backoff
            with self._spawn_lock:
                if self._stop.is_set():
                    return backoff
                self.worker = self._spawn_worker(active=True)
            how = f"started worker {self.worker.pid}"
        self._event(EventKind.WORKER_DIED, f"worker {worker.pid} died ({describe_exit(worker.process.exitcode)}) "
                                           f"after {uptime:.1f} s; {how}, the camera keeps the last frame meanwhile")
        return backoff

    def _on_report(self, report: dict, worker: WorkerHandle) -> None:
        kind = report["kind"]
        if worker is not self.worker:  # the standby: only its readiness and its own failures are news
            if kind == "ready":
                self.standby_ready.set()
            elif kind == "event" and report["event"] is EventKind.WORKER_CRASHED:
                self._event(EventKind.WORKER_CRASHED, f"standby {report['message']}")
            return
        if kind == "status":
            self.stats.worker_status(report)
        elif kind == "ready":
            self.worker_ready.set()
            self.path = report["path"]
            self._event(EventKind.WORKER_READY, f"worker {worker.pid} ready: {report['path']}, model "
                        f"{report['model']} ({report['resolution']} px, loaded in {report['load_s']:.1f} s)")
        elif kind == "event":
            self._event(report["event"], report["message"])

    def _watch_mic(self) -> None:
        """A microphone that stopped delivering (unplugged, server gone) is reported, closed and reopened."""
        now = time.monotonic()
        mic = self._mic
        if mic is not None and mic.callbacks and now - mic.last_callback > self.config.runtime.mic_stall_s:
            self._event(EventKind.MIC_STOPPED, f"microphone {mic.device_name!r} stopped delivering audio; retrying "
                                               f"every {self.config.runtime.mic_retry_s:.0f} s")
            mic.close()
            self._mic = None
            self._mic_retry_at = now
        if self._mic is None and now >= self._mic_retry_at:
            self._mic_retry_at = now + self.config.runtime.mic_retry_s
            try:
                self._mic = MicCapture(self._audio, self.config.mic).start()
            except AudioDeviceError:
                return
            self._event(EventKind.MIC_BACK, f"microphone {self._mic.device_name!r} is back")
