"""What a live session tells its users: events with a kind and a sequence number, in a bounded log.

Consumers (the `live` command, the GUI) read by kind, never by the wording, and remember the sequence number of the
last event they handled: `log.since(sequence)` gives every newer event still held, in order.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from enum import Enum
from typing import Iterator


class EventKind(Enum):
    """What happened. The value is the name the stats JSON uses."""

    STALE_MEMORY_REMOVED = "stale_memory_removed"  # shared memory a crashed session left was unlinked
    CAMERA_UNAVAILABLE = "camera_unavailable"  # no virtual camera: the session goes on with the preview only
    SINK_FAILED = "sink_failed"  # a sink (camera, recorder) raised while sending and was closed
    SINK_CLOSE_FAILED = "sink_close_failed"  # a sink raised while closing at stop
    PORTRAIT_REFUSED = "portrait_refused"  # a new portrait could not be read or prepared: the old one stays
    PORTRAIT_NOTICE = "portrait_notice"  # what the user should know about the portrait (several faces)
    WORKER_READY = "worker_ready"  # the active worker loaded its model and generates
    WORKER_CRASHED = "worker_crashed"  # a worker's last words before it dies (an exception)
    WORKER_DIED = "worker_died"  # the active worker died; the standby took over or a new one started
    STANDBY_DIED = "standby_died"  # the standby worker died; another is started
    WORKER_COMMAND_REFUSED = "worker_command_refused"  # a command the worker does not know (a bug)
    MODEL_FAILED = "model_failed"  # a model failed to load: the previous one, if any, keeps running
    MIC_STOPPED = "mic_stopped"  # the microphone stopped delivering audio; it is reopened until it is back
    MIC_BACK = "mic_back"  # the microphone delivers again

    @property
    def problem(self) -> bool:
        """Something went wrong (the session's `last_error` keeps its message); the other kinds are news."""
        return self not in _NEWS


_NEWS = frozenset({EventKind.STALE_MEMORY_REMOVED, EventKind.PORTRAIT_NOTICE, EventKind.WORKER_READY,
                   EventKind.MIC_BACK})


@dataclass(frozen=True)
class Event:
    """sequence: 1 for a session's first event, one more for each next; t: seconds since the log was made."""

    sequence: int
    kind: EventKind
    message: str
    t: float

    def as_json(self) -> dict:
        return {"sequence": self.sequence, "t": self.t, "kind": self.kind.value, "message": self.message}


class EventLog:
    """The newest `capacity` events (sessions run for hours), appended from any thread. Iterating gives the events
    held, oldest first."""

    def __init__(self, capacity: int = 500):
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=capacity)
        self._started = time.monotonic()
        self.last_sequence = 0  # the sequence number of the newest event; 0 before the first

    def add(self, kind: EventKind, message: str) -> Event:
        with self._lock:
            self.last_sequence += 1
            event = Event(self.last_sequence, kind, message, round(time.monotonic() - self._started, 3))
            self._events.append(event)
        return event

    def since(self, sequence: int) -> list[Event]:
        """The events held whose sequence number is above `sequence`, oldest first (0: all of them)."""
        with self._lock:
            return [event for event in self._events if event.sequence > sequence]

    def __iter__(self) -> Iterator[Event]:
        return iter(self.since(0))

    def __repr__(self) -> str:
        return "EventLog([" + "; ".join(f"#{e.sequence} {e.kind.value}: {e.message}" for e in self) + "])"
