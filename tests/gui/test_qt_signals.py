"""The Qt binding itself: PySide6 6.12.0's Signal.emit() dropped a reference to True at every call, and the window,
which emits a preview frame 30 times a second, then aborted within minutes ("Fatal Python error: bool_dealloc")
once True's reference count reached zero (pyproject.toml excludes that version)."""

from __future__ import annotations

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage


class Emitter(QObject):
    frame_ready = Signal(QImage)
    changed = Signal()


def test_emitting_a_signal_keeps_every_reference_to_true_and_false(qapp):
    emitter, received = Emitter(), []
    emitter.frame_ready.connect(received.append)
    emitter.changed.connect(lambda: received.append(None))
    image = QImage(8, 8, QImage.Format.Format_RGB888)
    before = sys.getrefcount(True), sys.getrefcount(False)
    for _ in range(1000):
        emitter.frame_ready.emit(image)
        emitter.changed.emit()
    assert len(received) == 2000
    assert (sys.getrefcount(True), sys.getrefcount(False)) == before
