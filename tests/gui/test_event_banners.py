"""The controller turns a session's events into banners by their kind and reads each event once, by sequence
number: a real LiveSession (not started: its event log is what the controller reads) and a real controller."""

import numpy as np

from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.gui.controller import SessionController
from avatar_desktop.runtime.events import EventKind
from avatar_desktop.runtime.session import LiveSession, SessionConfig


def test_problems_found_by_kind_once_each_even_within_one_millisecond(qtbot):
    controller = SessionController(status_hz=50.0)
    found, failed = [], []
    controller.problem_found.connect(found.append)
    controller.worker_failed.connect(failed.append)
    session = LiveSession(np.zeros((64, 64, 3), np.uint8), SessionConfig(model=ModelSpec(None)))
    controller.session = session
    try:
        log = session.events
        log.add(EventKind.WORKER_READY, "worker 1 ready: latent model")  # news: no banner
        log.add(EventKind.CAMERA_UNAVAILABLE, "no virtual camera; going on with the preview only")
        log.add(EventKind.MIC_STOPPED, "microphone 'usb' stopped delivering audio; retrying every 2 s")
        log.add(EventKind.MIC_BACK, "microphone 'usb' is back")  # news: no banner
        log.add(EventKind.WORKER_DIED, "worker 7 died (killed by SIGKILL); started worker 8")
        qtbot.waitUntil(lambda: len(found) == 3, timeout=5000)
        assert [p.kind for p in found] == ["camera", "mic", "worker"]
        assert found[2].message == failed[0] == "worker 7 died (killed by SIGKILL); started worker 8"
        log.add(EventKind.PORTRAIT_REFUSED, "portrait not changed: x.png is not a readable image")
        qtbot.waitUntil(lambda: len(found) == 4, timeout=5000)
        qtbot.wait(100)  # several more polls: nothing is found twice
        assert [p.kind for p in found] == ["camera", "mic", "worker", "portrait"]
    finally:
        controller.shutdown()
