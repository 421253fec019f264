"""The headless LiveSession wrapped in a QObject: slow calls off the main thread, results as past-tense signals.

Threads: the camera-sender thread hands canvases to `PreviewSink` (one resize and copy, under a lock); one job
thread runs whatever may block (starting or stopping a session, decoding a portrait); everything else, the
session pointer and every signal's receiver included, lives on the Qt main thread, which polls the sink and the
session's status with QTimers (DESIGN section 3).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtGui import QImage

from avatar_desktop.audio.capture import AudioDeviceError
from avatar_desktop.config import State
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.engine.portrait import load_portrait
from avatar_desktop.errors import AvatarError, CheckpointError, InputFileError
from avatar_desktop.output.camera import CameraUnavailableError
from avatar_desktop.runtime.events import Event, EventKind
from avatar_desktop.runtime.expression import ExpressionState
from avatar_desktop.runtime.session import LiveSession, SessionConfig

FPS_WINDOW_S = 3.0
"""Seconds. The avatar fps shown is the generated frames over this window of status polls."""
PREVIEW_WIDTH = 480
"""Pixels. The preview sink scales the camera canvas down to this width (aspect kept) before copying it."""


class PreviewSink:
    """A LiveSession sink (camera-sender thread) that keeps the newest canvas, scaled down, for the GUI."""

    name = "preview"

    def __init__(self, width: int = PREVIEW_WIDTH):
        self.width = width
        self._lock = threading.Lock()
        self._image: np.ndarray | None = None  # uint8 (h, w, 3) RGB
        self.sequence = 0  # canvases received so far
        self.enabled = True  # False while nobody can see the preview (window minimized): send() does nothing

    def send(self, canvas: np.ndarray, media_time: float) -> None:
        """canvas: uint8 (H, W, 3) RGB."""
        if not self.enabled:
            return
        height, width = canvas.shape[:2]
        size = (self.width, max(2, round(height * self.width / width)))
        with self._lock:
            if self._image is None or self._image.shape[:2] != size[::-1]:
                self._image = np.empty((size[1], size[0], 3), np.uint8)
            cv2.resize(canvas, size, dst=self._image, interpolation=cv2.INTER_NEAREST)
            self.sequence += 1

    def take(self, seen: int) -> tuple[int, QImage | None]:
        """(sequence, a copy of the newest image) when it is newer than `seen`, else (seen, None)."""
        with self._lock:
            if self._image is None or self.sequence == seen:
                return seen, None
            height, width = self._image.shape[:2]
            image = QImage(self._image.data, width, height, 3 * width, QImage.Format.Format_RGB888).copy()
            return self.sequence, image

    def close(self) -> None:
        """Nothing to release: the sink outlives sessions."""


@dataclass(frozen=True)
class Problem:
    """Something the user should act on. kind: 'camera', 'mic', 'model', 'portrait', 'worker', 'settings'."""

    kind: str
    message: str


BANNER_FOR_EVENT: dict[EventKind, str] = {
    EventKind.WORKER_CRASHED: "worker", EventKind.WORKER_DIED: "worker", EventKind.STANDBY_DIED: "worker",
    EventKind.MODEL_FAILED: "model",
    EventKind.CAMERA_UNAVAILABLE: "camera", EventKind.SINK_FAILED: "camera", EventKind.SINK_CLOSE_FAILED: "camera",
    EventKind.PORTRAIT_REFUSED: "portrait", EventKind.PORTRAIT_NOTICE: "portrait",
    EventKind.MIC_STOPPED: "mic",
}
"""The session events the user must see, and the Problem kind (the banner) each one shows; the rest is news."""


def problem_from_event(event: Event) -> Problem | None:
    """A session event that needs the user's attention as a Problem; None for news (worker ready, mic back)."""
    kind = BANNER_FOR_EVENT.get(event.kind)
    return None if kind is None else Problem(kind, event.message)


def problem_from_error(error: Exception) -> Problem:
    """A failed background job as a Problem: the errors users can fix by kind, anything else as 'session'."""
    kinds = ((AudioDeviceError, "mic"), (InputFileError, "portrait"), (CheckpointError, "model"),
             (CameraUnavailableError, "camera"))
    for error_type, kind in kinds:
        if isinstance(error, error_type):
            return Problem(kind, str(error))
    if isinstance(error, AvatarError):
        return Problem("session", str(error))
    return Problem("session", f"the live session could not start or stop ({type(error).__name__}: {error})")


class SessionController(QObject):
    """Owns at most one LiveSession. Signals arrive on the main thread.

    busy_changed(str): what runs in the background ('' when nothing); frame_ready(QImage): a new preview frame;
    status_changed(dict): session status and stats, twice a second; state_changed(str): the state the session
    uses now; problem_found(Problem); problem_solved(str kind); worker_failed(str); session_started(),
    session_stopped(). `expression` owns the slider values: every session it starts reads it and follows it.
    """

    busy_changed = Signal(str)
    frame_ready = Signal(QImage)
    status_changed = Signal(dict)
    state_changed = Signal(str)
    problem_found = Signal(object)
    problem_solved = Signal(str)
    worker_failed = Signal(str)
    session_started = Signal()
    session_stopped = Signal()
    _job_done = Signal(object, object, object)  # (on_done, result, error): emitted on the job thread

    def __init__(self, *, preview_hz: float = 25.0, status_hz: float = 2.0, parent: QObject | None = None):
        super().__init__(parent)
        self.preview = PreviewSink()
        self.session: LiveSession | None = None
        self._job_session: LiveSession | None = None  # the newest session started (job thread only)
        self._generation = 0  # counts start/stop requests (main thread): a start that was overtaken is ignored
        self.expression = ExpressionState()
        self.override: State | None = None
        self.state = ""
        self.model_loading = False
        self._jobs = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gui-jobs")
        self._closed = False
        self._pending = 0
        self._busy_text = ""
        self._seen_frame = 0
        self._seen_event = 0  # the sequence number of the last session event handled
        self._frame_counts: deque[tuple[float, int]] = deque()  # (poll time, generated frames) of the last polls
        self._job_done.connect(self._finish_job)
        self._preview_timer = QTimer(self, interval=round(1000 / preview_hz))
        self._preview_timer.timeout.connect(self._poll_preview)
        self._preview_timer.start()
        self._status_timer = QTimer(self, interval=round(1000 / status_hz))
        self._status_timer.timeout.connect(self._poll_status)
        self._status_timer.start()

    # ------------------------------------------------------------------ commands (main thread)
    def start(self, portrait: np.ndarray, config: SessionConfig, what: str = "Starting the live session") -> None:
        """Stop the running session (or the one still starting) and start a new one, in the background."""
        self.session = None

        def work():
            self._stop_newest()
            session = LiveSession(portrait, config, sinks=[self.preview], expression=self.expression)
            session.start()
            session.set_state_override(self.override)
            self._job_session = session
            return session

        self.model_loading = True
        self._generation += 1
        generation = self._generation
        self._run(what, work, lambda session: self._started(session, generation))

    def stop(self) -> None:
        self.session = None
        self._generation += 1
        self.model_loading = False
        self._run("Stopping the live session", self._stop_newest, lambda _: self.session_stopped.emit())

    def set_expression(self, expression: dict[str, float]) -> None:
        """The sessions, the one still starting included, follow (through the ExpressionState)."""
        self.expression.set(expression)

    def set_state_override(self, state: State | None) -> None:
        self.override = state
        if self.session is not None:
            self.session.set_state_override(state)

    def set_model(self, model: ModelSpec) -> None:
        """Switch the running session's model; the worker loads it while the old one keeps generating."""
        if self.session is not None:
            self.model_loading = True
            self._set_busy(f"Loading model {model.label}")
            self.session.set_model(model)

    def set_portrait(self, path: str, on_loaded: Callable[[np.ndarray], None], *, needs_face: bool = False) -> None:
        """Decode the portrait in the background; `on_loaded(image)` on success, a 'portrait' problem otherwise
        (the running session keeps its portrait). needs_face: the photo path runs, so a portrait without a usable
        face is refused here, before the session gets it."""
        def work():
            image = load_portrait(path)  # decoded once: the session and the window take this array
            if needs_face:
                from avatar_desktop.face import find_face

                find_face(image, source=Path(path).name)
            if self._job_session is not None:
                self._job_session.set_reference(image)
            return image

        self._run("Preparing the portrait", work, on_loaded)

    def shutdown(self) -> None:
        """Stop the timers and the newest session, a session still starting included, and wait (window closing).
        Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._preview_timer.stop()
        self._status_timer.stop()
        self.session = None
        self._jobs.submit(self._stop_newest)  # runs after any pending job, so it sees the session that job started
        self._jobs.shutdown(wait=True)

    # ------------------------------------------------------------------ background jobs
    def _run(self, what: str, work: Callable, on_done: Callable) -> None:
        self._pending += 1
        self._set_busy(what)

        def job():
            try:
                result, error = work(), None
            except Exception as exc:  # every failure becomes a banner; the job thread must survive
                result, error = None, exc
            self._job_done.emit(on_done, result, error)

        self._jobs.submit(job)

    def _finish_job(self, on_done: Callable, result, error: Exception | None) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._set_busy("Loading the model" if self.model_loading and self.session else "")
        if error is None:
            on_done(result)
            return
        self.model_loading = False
        self.problem_found.emit(problem_from_error(error))

    def _stop_newest(self) -> None:
        """Job thread: stop the newest session started (jobs run in order, so it is the one to replace)."""
        session, self._job_session = self._job_session, None
        if session is not None:
            session.stop()

    def _started(self, session: LiveSession, generation: int) -> None:
        if generation != self._generation:  # a later start or stop was asked for: its job replaces this session
            return
        self.session = session
        session.set_state_override(self.override)
        self._seen_event = 0
        self._frame_counts.clear()
        self.problem_solved.emit("session")
        self.problem_solved.emit("mic")
        if session.camera_error is None:
            self.problem_solved.emit("camera")
        self._set_busy("Loading the model" if self._pending == 0 else self._busy_text)
        self.session_started.emit()

    def _set_busy(self, text: str) -> None:
        if text != self._busy_text:
            self._busy_text = text
            self.busy_changed.emit(text)

    # ------------------------------------------------------------------ polling (main thread)
    def _poll_preview(self) -> None:
        self._seen_frame, image = self.preview.take(self._seen_frame)
        if image is not None:
            self.frame_ready.emit(image)

    def _poll_status(self) -> None:
        session = self.session
        if session is None:
            return
        if self.model_loading and session.worker_ready.is_set():
            self.model_loading = False
            self.problem_solved.emit("model")
            if self._pending == 0:
                self._set_busy("")
        for event in session.events.since(self._seen_event):
            self._seen_event = event.sequence
            problem = problem_from_event(event)
            if problem is None:
                continue
            if problem.kind == "model":
                self.model_loading = False
                self._set_busy("" if self._pending == 0 else self._busy_text)
            if problem.kind == "worker":
                self.worker_failed.emit(problem.message)
            self.problem_found.emit(problem)
        status = session.status()
        if status["state"] != self.state:
            self.state = status["state"]
            self.state_changed.emit(self.state)
        stats = session.stats.snapshot()
        now = time.monotonic()
        self._frame_counts.append((now, stats["new_frames"]))
        while now - self._frame_counts[0][0] > FPS_WINDOW_S:
            self._frame_counts.popleft()
        (first_t, first_n), (last_t, last_n) = self._frame_counts[0], self._frame_counts[-1]
        avatar_fps = (last_n - first_n) / (last_t - first_t) if last_t > first_t else None
        self.status_changed.emit({**status, "avatar_fps": avatar_fps, "camera_fps": stats["delivered_fps"],
                                  "latency_p50_ms": stats["generation_latency_ms"]["p50"],
                                  "new_frames": stats["new_frames"], "worker_restarts": stats["worker_restarts"],
                                  "model": session.model.label})
