"""The window around a real live session (worker process, tiny seeded model, PulseAudio rig, recording camera):
sliders, state buttons and shortcuts, drag and drop, a killed worker. Waits on signals and conditions only."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage
from PySide6.QtWidgets import QApplication
from pytestqt.exceptions import TimeoutError

from avatar_desktop.gui.settings import SettingsStore
from avatar_desktop.gui.window import MainWindow
from avatar_desktop.runtime.session import RuntimeConfig

pytestmark = pytest.mark.slow


def center(image: QImage) -> np.ndarray:
    """The middle of a preview frame (where the avatar is), as float (h, w, 3) RGB."""
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    width, height = image.width(), image.height()
    array = np.frombuffer(image.constBits(), np.uint8, image.bytesPerLine() * height)
    array = array.reshape(height, image.bytesPerLine())[:, : width * 3].reshape(height, width, 3)
    side = height // 2
    top, left = (height - side) // 2, (width - side) // 2
    return array[top : top + side, left : left + side].astype(np.float32)


def generated(window: MainWindow) -> int:
    session = window.controller.session
    return session.stats.snapshot()["new_frames"] if session is not None else 0


@pytest.fixture(scope="module")
def live(qapp, pulse, recording_backend, model_dirs, portrait_files, tmp_path_factory):
    """One window with a running session for the whole module (a worker takes seconds to start)."""
    store = SettingsStore(tmp_path_factory.mktemp("settings") / "settings.ini")
    window = MainWindow(store=store, portrait=str(portrait_files[0]), model="tiny",
                        runtime=RuntimeConfig(worker_threads=1))
    window.show()
    yield window
    window.close()


@pytest.fixture
def ready(live, qtbot):
    """The module's window once it shows generated frames."""
    qtbot.waitUntil(lambda: live.controller.session is not None and live.controller.session.worker_ready.is_set(),
                    timeout=90_000)
    frames = generated(live)
    qtbot.waitUntil(lambda: generated(live) > frames + 10, timeout=20_000)
    return live


@pytest.fixture
def frame_log(ready):
    """Centres of the preview frames that arrive during a test."""
    centres: list[np.ndarray] = []

    def add(image: QImage) -> None:
        centres.append(center(image))

    ready.controller.frame_ready.connect(add)
    yield centres
    ready.controller.frame_ready.disconnect(add)


def test_preview_shows_the_session_with_a_hideable_overlay(ready, qtbot):
    with qtbot.waitSignal(ready.controller.status_changed, timeout=5_000):
        pass
    assert ready.preview.frames_shown > 0
    assert "fps" in ready.preview.overlay_text and "latency" in ready.preview.overlay_text
    assert "model tiny" in ready.status_label.text()
    assert "/dev/recording0" in ready.status_label.text()
    ready.overlay_action.trigger()
    assert not ready.preview.overlay_visible and not ready.settings.overlay_visible
    ready.overlay_action.trigger()
    assert ready.preview.overlay_visible
    assert "untrained" not in ready.banners  # a trained (saved) model is selected


def test_moving_a_slider_changes_the_frames_the_worker_makes(ready, qtbot, frame_log):
    qtbot.waitUntil(lambda: len(frame_log) >= 10, timeout=10_000)
    neutral = np.mean(frame_log, axis=0)
    frame_log.clear()

    def distance() -> float:
        return float(np.abs(frame_log[-1] - neutral).mean()) if frame_log else 0.0

    ready.expression_panel.sliders["smile"].setValue(100)
    assert ready.controller.session.expression == {"smile": 1.0}
    qtbot.waitUntil(lambda: distance() > 8, timeout=10_000)
    ready.expression_panel.reset_button.click()
    assert ready.controller.expression.values == ready.controller.session.expression == {}
    qtbot.waitUntil(lambda: 0 < distance() < 4, timeout=10_000)


def test_state_buttons_and_shortcuts_switch_the_state_the_worker_uses(ready, qtbot, frame_log):
    """The test model's state embedding shows in the frames (tens of grey levels between states)."""
    session = ready.controller.session
    ready.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is ready, timeout=5_000)
    qtbot.waitUntil(lambda: session.status()["state"] == "idle" and len(frame_log) >= 10, timeout=10_000)
    idle = np.mean(frame_log[-5:], axis=0)

    def switched(name: str, away_from: list[np.ndarray]):
        """The session, the indicator and the newest frame all show state `name`."""
        def check() -> bool:
            shown = (session.status()["state"] == name and ready.controller.state == name
                     and session.stats.snapshot()["state_changes"][-1]["state"] == name
                     and f"<b>{name}</b>" in ready.state_panel.indicator.text())
            return shown and all(float(np.abs(frame_log[-1] - ref).mean()) > 5 for ref in away_from)
        return check

    ready.state_panel.buttons["Speaking"].click()
    qtbot.waitUntil(switched("speaking", [idle]), timeout=10_000)
    assert "forced" in ready.state_panel.indicator.text()
    speaking = frame_log[-1]
    qtbot.keyClick(ready, Qt.Key.Key_3, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(switched("listening", [idle, speaking]), timeout=10_000)
    assert ready.state_panel.buttons["Listening"].isChecked()
    listening = frame_log[-1]
    qtbot.keyClick(ready, Qt.Key.Key_2, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(switched("speaking", [idle, listening]), timeout=10_000)
    qtbot.keyClick(ready, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier)  # Auto: the mic is silent -> idle
    qtbot.waitUntil(switched("idle", [speaking, listening]), timeout=10_000)
    qtbot.waitUntil(lambda: float(np.abs(frame_log[-1] - idle).mean()) < 4, timeout=10_000)
    assert "(auto)" in ready.state_panel.indicator.text()


def drop(window: MainWindow, path) -> None:
    """Drag a file from outside onto the middle of the window and drop it."""
    data = QMimeData()
    data.setUrls([QUrl.fromLocalFile(str(path))])
    point = QPoint(window.width() // 2, window.height() // 2)
    enter = QDragEnterEvent(point, Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                            Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    assert enter.isAccepted()
    dropped = QDropEvent(QPointF(point), Qt.DropAction.CopyAction, data, Qt.MouseButton.NoButton,
                         Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, dropped)
    assert dropped.isAccepted()


def test_dropping_an_image_changes_the_portrait(ready, qtbot, portrait_files, tmp_path):
    red = portrait_files[1]
    drop(ready, red)
    qtbot.waitUntil(lambda: ready.settings.portrait == str(red.resolve()), timeout=10_000)
    session = ready.controller.session
    assert session.portrait is ready.portrait_image  # decoded once, on the job thread: one array for both
    assert session.portrait.shape == (128, 128, 3)
    assert tuple(session.portrait[64, 64]) == (220, 40, 40)  # RGB of the red square
    thumbnail = ready.thumbnail.pixmap().toImage().pixelColor(48, 48)
    assert (thumbnail.red(), thumbnail.green(), thumbnail.blue()) == (220, 40, 40)
    assert ready.recent_box.itemText(0) == str(red.resolve())
    assert "portrait" not in ready.banners
    frames = generated(ready)
    qtbot.waitUntil(lambda: generated(ready) > frames + 10, timeout=10_000)  # the worker goes on with it

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    drop(ready, text)
    qtbot.waitUntil(lambda: "portrait" in ready.banners, timeout=10_000)
    assert "not a readable image" in ready.banners["portrait"].message
    assert ready.settings.portrait == str(red.resolve())  # the old portrait stays


def test_a_device_change_restarts_the_session_in_the_background(ready, qtbot):
    old = ready.controller.session
    ready.mirror_check.setChecked(True)  # a new camera canvas: the session restarts on the job thread
    assert ready.busy_label.text() == "Switching devices…" and ready.busy_bar.isVisible()
    assert ready.controller.session is None  # the old one is being stopped; the window went on at once
    qtbot.waitUntil(lambda: ready.controller.session not in (None, old), timeout=60_000)
    assert ready.controller.session.config.camera.mirror and ready.settings.mirror
    qtbot.waitUntil(lambda: ready.busy_label.text() == "" and not ready.busy_bar.isVisible(), timeout=90_000)
    frames = generated(ready)
    qtbot.waitUntil(lambda: generated(ready) > frames + 10, timeout=20_000)


def choose_model(window: MainWindow, key: str) -> None:
    window.model_box.setCurrentIndex([choice.key for choice in window.choices].index(key))


def test_a_model_that_cannot_be_used_shows_the_banner_and_the_old_one_goes_on(ready, qtbot):
    choose_model(ready, "model:broken")  # its model.json is damaged: checked when the picker was filled
    banner = ready.banners["model"]
    assert "'broken' cannot be used" in banner.message and "not valid JSON" in banner.message
    assert "Traceback" not in banner.message
    assert banner.action_button.text() == "Choose model"
    assert ready.busy_label.text() == "" and ready.model_choice.key == ready.settings.model == "model:tiny"
    assert ready.controller.session.model.name == "tiny"
    frames = generated(ready)
    qtbot.waitUntil(lambda: generated(ready) > frames + 10, timeout=10_000)  # the old model keeps generating
    choose_model(ready, "model:tiny")
    qtbot.waitUntil(lambda: "model" not in ready.banners and ready.busy_label.text() == "", timeout=60_000)
    assert ready.controller.session.model.name == "tiny"


def test_a_killed_worker_shows_the_restart_and_the_preview_resumes(ready, qtbot):
    session = ready.controller.session
    old_pid = session.worker.pid
    with qtbot.waitSignal(ready.controller.worker_failed, timeout=15_000) as failed:
        os.kill(old_pid, signal.SIGKILL)
    assert "SIGKILL" in failed.args[0]
    banner = ready.banners["worker"]
    assert "restarted" in banner.message and "Traceback" not in banner.message
    try:
        qtbot.waitUntil(lambda: session.worker.pid != old_pid and session.worker_ready.is_set(), timeout=60_000)
    except TimeoutError:
        raise AssertionError(f"no worker took over: {session.events}") from None
    frames, shown = generated(ready), ready.preview.frames_shown
    qtbot.waitUntil(lambda: generated(ready) > frames + 10 and ready.preview.frames_shown > shown + 10,
                    timeout=20_000)
    qtbot.waitUntil(lambda: "1 worker restart" in ready.status_label.text(), timeout=5_000)
