"""The generator worker: a spawned process that holds the model, reads the AudioRing and fills the FrameRing.

Commands (main -> worker, over a Pipe, as `(name, value)`):
    set_reference  uint8 (H, W, 3) RGB portrait      set_expression  {component: value}
    set_state      int State                          set_model       ModelSpec
    activate       None (a standby starts generating) stop            None
Reports (worker -> main, dicts with a "kind"):
    ready   {model, path, resolution, fps, lookahead_s, load_s, active}
    event   {event: EventKind, message}: a model that failed to load, a portrait rejected or noticed (several
            faces: the largest is animated), a crash, an unknown command (runtime/events.py)
    status  {fps, latency_ms: [...], chunk_ms: [...], skips, overruns}   (each since the previous status)

A standby worker (`active=False`) loads the model and prepares the portrait, then waits: promoted with `activate`
when the active worker dies, it serves within a frame or two instead of the seconds a fresh process needs to
import its libraries and load the model (only a torch model imports torch). The stream's frame 0 is the mic sample
where the worker started reading, so a frame's media time is `(start sample) / 16000 + chunk timestamp`, on the same
mic clock for every worker the session ever runs.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import traceback
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection

import numpy as np

from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.runtime.events import EventKind


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker starts from. threads: the model's intra-op threads (torch's or onnxruntime's) unless
    `engine.threads` sets them; max_backlog_s: audio the worker may fall
    behind before it skips ahead (a new stream at the newest audio) rather than showing ever older frames.
    The ModelSpec was checked when the main process made it (engine/model_spec.py): the worker loads it as it is."""

    model: ModelSpec
    audio_ring: str
    frame_ring: str
    portrait: np.ndarray = field(repr=False)  # uint8 (H, W, 3) RGB
    frame_limit: tuple[int, int] | None = None  # (width, height): the photo path fits its frames inside (the camera)
    frame_rate: int | None = None  # frames a second the photo path makes (the camera's); None: its motion model's
    engine: EngineConfig = EngineConfig()
    expression: dict = field(default_factory=dict)
    state: int = int(State.IDLE)
    active: bool = True
    threads: int = 1
    status_interval_s: float = 1.0
    max_backlog_s: float = 1.0


def default_threads() -> int:
    """The model's threads in the worker: all cores but one, which the audio and camera threads need."""
    return max(1, (os.cpu_count() or 2) - 1)


def worker_main(spec: WorkerSpec, conn: Connection) -> None:
    """Entry point of the spawned process."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the session stops us

    from avatar_desktop.runtime.clock import MicClock
    from avatar_desktop.runtime.rings import AudioReader, AudioRing, FrameRing

    audio = AudioRing.attach(spec.audio_ring)
    frames = FrameRing.attach(spec.frame_ring)
    try:
        _Worker(spec, conn, audio, frames, MicClock(audio), AudioReader).run()
    except Exception as error:  # a bug or a device error: say what happened, then die (the session restarts us)
        last = traceback.format_exception_only(type(error), error)[-1].strip()
        try:
            conn.send({"kind": "event", "event": EventKind.WORKER_CRASHED, "message": f"worker crashed: {last}"})
        except OSError:
            pass
        raise
    finally:
        audio.ring.close()
        frames.ring.close()


class _Worker:
    def __init__(self, spec, conn, audio, frames, clock, reader_class):
        self.spec, self.conn, self.audio, self.frames, self.clock = spec, conn, audio, frames, clock
        self._reader_class = reader_class
        self.generator = None
        self.portrait = spec.portrait
        self.expression = dict(spec.expression)  # this process' copy of the session's ExpressionState (set_expression)
        self.state = State(spec.state)
        self.active = spec.active
        self.running = True
        self._latency_ms: list[float] = []
        self._chunk_ms: list[float] = []
        self._frames_made = 0
        self._skips = 0  # times the worker fell `max_backlog_s` behind and skipped to the newest audio
        self._overruns = 0  # times the AudioRing lapped the worker (audio lost before it was read)
        self._load(spec.model)

    def report(self, kind: str, **values) -> None:
        try:
            self.conn.send({"kind": kind, **values})
        except OSError:  # the session's process is gone: stop
            self.running = False

    def _load(self, model_spec: ModelSpec) -> None:
        """Load and prepare a model; on failure the previous one (if any) keeps running and the error is reported."""
        from avatar_desktop.engine.model_spec import open_generator

        started = time.monotonic()
        threads = self.spec.engine.threads or self.spec.threads
        if model_spec.backend == "torch":
            import torch

            torch.set_num_threads(threads)
        try:
            generator = open_generator(model_spec, self.portrait, replace(self.spec.engine, threads=threads),
                                       frame_limit=self.spec.frame_limit, fps=self.spec.frame_rate,
                                       expression=self.expression)
        except Exception as error:  # any failure to load must leave the session up and say why
            self.report("event", event=EventKind.MODEL_FAILED,
                        message=f"model {model_spec.label!r} failed to load: {error}")
            return
        self.generator = generator
        self.model_name = model_spec.label
        self.load_s = time.monotonic() - started
        if self.active:
            self._restart_stream()
        self._report_ready()

    def _report_ready(self) -> None:
        generator = self.generator
        self.report(
            "ready", model=self.model_name, path=generator.path, resolution=generator.resolution, fps=generator.fps,
            lookahead_s=generator.lookahead_s, load_s=self.load_s, active=self.active,
        )
        self._report_notice()

    def _report_notice(self) -> None:
        if self.generator.notice:
            self.report("event", event=EventKind.PORTRAIT_NOTICE, message=self.generator.notice)

    def _restart_stream(self) -> None:
        """Frame 0 of a new stream = the newest mic sample now."""
        self.reader = self._reader_class(self.audio)
        self.stream_start = self.reader.position
        self.generator.reset()

    def _handle(self, name: str, value) -> None:
        if name == "stop":
            self.running = False
        elif name == "activate":
            self.active = True
            if self.generator is not None:
                self._restart_stream()
                self._report_ready()
        elif name == "set_state":
            self.state = State(value)
        elif name == "set_expression":
            self.expression = dict(value)
            if self.generator is not None:
                self.generator.set_expression(self.expression)
        elif name == "set_reference":
            if self.generator is None:
                self.portrait = value
                return
            try:
                self.generator.prepare(value)
            except Exception as error:  # a portrait the engine rejects: keep the old one
                self.report("event", event=EventKind.PORTRAIT_REFUSED,
                            message=f"portrait rejected, keeping the old one: {error}")
                self.generator.prepare(self.portrait)
            else:
                self.portrait = value
                self._report_notice()
            if self.active:
                self._restart_stream()
        elif name == "set_model":
            self._load(value)
        else:
            self.report("event", event=EventKind.WORKER_COMMAND_REFUSED, message=f"unknown worker command {name!r}")

    def run(self) -> None:
        next_status = time.monotonic() + self.spec.status_interval_s
        while self.running:
            idle = not self.active or self.generator is None or not self._generate()
            try:
                if self.conn.poll(0.005 if idle else 0):
                    while self.running and self.conn.poll():
                        self._handle(*self.conn.recv())
            except (EOFError, OSError):  # the session's process is gone: nobody to generate for
                return
            if time.monotonic() >= next_status:
                if self.active:
                    self._report_status()
                next_status += self.spec.status_interval_s

    def _generate(self) -> bool:
        """Feed the new audio, write every chunk that is ready; False when there was nothing to do."""
        audio = self.reader.read()
        backlog_s = (self.audio.end_sample() - self.reader.position) / SAMPLE_RATE
        pending_s = (self.reader.position - self.stream_start) / SAMPLE_RATE - self.generator.frame_index / self.generator.fps
        if self.reader.samples_lost or pending_s + backlog_s > self.spec.max_backlog_s:
            self._overruns += self.reader.samples_lost > 0
            self._skips += 1
            self._restart_stream()
            return True
        made = False
        chunk_audio = audio
        while True:
            started = time.perf_counter()
            chunk = self.generator.step(chunk_audio, self.state)
            chunk_audio = None
            if chunk is None:
                return made
            self._chunk_ms.append((time.perf_counter() - started) * 1000)
            ready = self.clock.now()
            base = self.stream_start / SAMPLE_RATE
            for frame, timestamp in zip(chunk.frames, chunk.timestamps):
                media = base + float(timestamp)
                self.frames.write(frame, media_time=media, ready_time=ready)
                self._latency_ms.append((ready - media) * 1000)
            self._frames_made += len(chunk.frames)
            made = True

    def _report_status(self) -> None:
        self.report(
            "status", fps=self._frames_made / self.spec.status_interval_s, latency_ms=self._latency_ms,
            chunk_ms=self._chunk_ms, skips=self._skips, overruns=self._overruns,
        )
        self._latency_ms, self._chunk_ms, self._frames_made, self._skips, self._overruns = [], [], 0, 0, 0


class WorkerHandle:
    """The main process' side of one worker: spawn, send commands (thread-safe), receive reports, kill, join."""

    def __init__(self, spec: WorkerSpec):
        context = mp.get_context("spawn")
        self.conn, child = context.Pipe(duplex=True)
        self.process = context.Process(target=worker_main, args=(spec, child), name="avatar-worker", daemon=True)
        self._send_lock = threading.Lock()
        self.process.start()
        child.close()
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.is_alive()

    def send(self, name: str, value=None) -> bool:
        """Send a command; False when the worker is gone (the supervisor will restart it)."""
        with self._send_lock:
            try:
                self.conn.send((name, value))
                return True
            except (BrokenPipeError, EOFError, OSError):
                return False

    def receive(self, timeout: float) -> dict | None:
        """The next report, or None after `timeout` s or when the worker is gone."""
        try:
            if self.conn.poll(timeout):
                return self.conn.recv()
        except (EOFError, OSError):
            pass  # the pipe closed: the process is dying; the supervisor sees it through alive()
        return None

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to stop, kill it if it does not within `timeout` s, and release the pipe."""
        self.send("stop")
        self.process.join(timeout)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout)
        self.conn.close()


def describe_exit(exitcode: int | None) -> str:
    """'killed by SIGKILL', 'exit code 1', ... for a dead worker's exit code."""
    import signal

    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"
