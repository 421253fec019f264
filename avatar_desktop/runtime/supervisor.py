"""The supervisor thread of a live session: the generator workers (the active one and a loaded standby) and the
microphone, kept alive.

Worker reports become stats and events; a dead worker is replaced by the standby at once, or by a new worker after a
backoff that doubles while workers keep dying young; a microphone that stopped delivering is closed and reopened.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

from avatar_desktop.audio.capture import AudioDeviceError
from avatar_desktop.runtime.events import EventKind
from avatar_desktop.runtime.mic import MicCapture
from avatar_desktop.runtime.stats import SessionStats
from avatar_desktop.runtime.worker import WorkerHandle, WorkerSpec, describe_exit


class Supervisor:
    """`open_mic()` opens the microphone, `start()` the active worker and the supervising thread, `stop()` all.

    make_spec(active): the WorkerSpec of a new worker from the session's current portrait, model, expression and
    state; mic_opener(): a started MicCapture (AudioDeviceError when there is none); report(kind, message): the
    session's event log. standby: keep a second worker loaded; restart_backoff_s: the first wait before a new
    worker; mic_stall_s: a mic silent (no callbacks) this long is reopened every `mic_retry_s`.
    """

    def __init__(self, *, make_spec: Callable[[bool], WorkerSpec], mic_opener: Callable[[], MicCapture],
                 stats: SessionStats, report: Callable[[EventKind, str], None], standby: bool,
                 restart_backoff_s: float, mic_stall_s: float, mic_retry_s: float):
        self._make_spec, self._mic_opener, self._stats, self._report = make_spec, mic_opener, stats, report
        self._keep_standby, self._restart_backoff_s = standby, restart_backoff_s
        self._mic_stall_s, self._mic_retry_s = mic_stall_s, mic_retry_s
        self.mic: MicCapture | None = None
        self.worker: WorkerHandle | None = None
        self.standby: WorkerHandle | None = None
        self.worker_ready = threading.Event()
        self.standby_ready = threading.Event()
        self.path: str | None = None  # "photo renderer" or "latent model", once a worker is ready
        self._stop = threading.Event()
        self._spawn_lock = threading.Lock()
        self._mic_retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def open_mic(self) -> None:
        """Open the microphone; AudioDeviceError (with the devices there are) when it cannot be."""
        self.mic = self._mic_opener()

    def start(self) -> None:
        self.worker = self._spawn(active=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread, the workers and the microphone; safe to call twice and after a failed start."""
        with self._spawn_lock:  # no worker is spawned from here on
            self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)
        for worker in (self.worker, self.standby):
            if worker is not None:
                worker.stop()
        self.standby = None
        if self.mic is not None:
            self.mic.close()
            self.mic = None

    def broadcast(self, name: str, value=None) -> None:
        """A command for the active worker and the standby (which must be ready to take over as is)."""
        for worker in (self.worker, self.standby):
            if worker is not None:
                worker.send(name, value)

    def _spawn(self, *, active: bool) -> WorkerHandle:
        (self.worker_ready if active else self.standby_ready).clear()
        return WorkerHandle(self._make_spec(active))

    def _run(self) -> None:
        backoff = self._restart_backoff_s
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
                self._report(EventKind.STANDBY_DIED, f"standby worker {standby.pid} died "
                                                     f"({describe_exit(standby.process.exitcode)}); starting another")
                standby.stop(0.1)
                self.standby = None
                self.standby_ready.clear()
            elif standby is None and self._keep_standby and self.worker_ready.is_set():
                with self._spawn_lock:
                    if not self._stop.is_set():
                        self.standby = self._spawn(active=False)
            self._watch_mic()

    def _replace_dead_worker(self, worker: WorkerHandle, backoff: float) -> float:
        """Promote the standby (or spawn a worker) in place of a dead one; returns the next backoff (s)."""
        if self._stop.is_set():  # it was stopped, not killed
            return backoff
        while (last_words := worker.receive(0)) is not None:  # the dead worker's error report first
            self._on_report(last_words, worker)
        self._stats.worker_restarts += 1
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
            backoff = self._restart_backoff_s if uptime > 30 else min(backoff * 2, 10.0)
            if self._stop.wait(backoff):
                return backoff
            with self._spawn_lock:
                if self._stop.is_set():
                    return backoff
                self.worker = self._spawn(active=True)
            how = f"started worker {self.worker.pid}"
        self._report(EventKind.WORKER_DIED, f"worker {worker.pid} died ({describe_exit(worker.process.exitcode)}) "
                                            f"after {uptime:.1f} s; {how}, the camera keeps the last frame meanwhile")
        return backoff

    def _on_report(self, report: dict, worker: WorkerHandle) -> None:
        kind = report["kind"]
        if worker is not self.worker:  # the standby: only its readiness and its own failures are news
            if kind == "ready":
                self.standby_ready.set()
            elif kind == "event" and report["event"] is EventKind.WORKER_CRASHED:
                self._report(EventKind.WORKER_CRASHED, f"standby {report['message']}")
            return
        if kind == "status":
            self._stats.worker_status(report)
        elif kind == "ready":
            self.worker_ready.set()
            self.path = report["path"]
            self._report(EventKind.WORKER_READY, f"worker {worker.pid} ready: {report['path']}, model "
                         f"{report['model']} ({report['resolution']} px, loaded in {report['load_s']:.1f} s)")
        elif kind == "event":
            self._report(report["event"], report["message"])

    def _watch_mic(self) -> None:
        """A microphone that stopped delivering (unplugged, server gone) is reported, closed and reopened."""
        now = time.monotonic()
        mic = self.mic
        if mic is not None and mic.callbacks and now - mic.last_callback > self._mic_stall_s:
            self._report(EventKind.MIC_STOPPED, f"microphone {mic.device_name!r} stopped delivering audio; retrying "
                                                f"every {self._mic_retry_s:.0f} s")
            mic.close()
            self.mic = None
            self._mic_retry_at = now
        if self.mic is None and now >= self._mic_retry_at:
            self._mic_retry_at = now + self._mic_retry_s
            try:
                self.open_mic()
            except AudioDeviceError:
                return
            self._report(EventKind.MIC_BACK, f"microphone {self.mic.device_name!r} is back")
