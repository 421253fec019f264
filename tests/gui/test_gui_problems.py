"""Problems become banners that say what to do: no virtual-camera driver (and its Re-check), a missing
microphone, no portrait, an untrained model. Real sessions on the PulseAudio rig."""

from __future__ import annotations

import multiprocessing

import cv2
import pytest

from avatar_desktop.gui.settings import Settings, SettingsStore
from avatar_desktop.gui.window import MainWindow
from avatar_desktop.output.camera import driver_advice
from avatar_desktop.runtime.session import RuntimeConfig

pytestmark = pytest.mark.slow
ONE_WORKER = RuntimeConfig(worker_threads=1, standby_worker=False)


def test_a_missing_camera_driver_shows_the_banner_and_re_check_finds_it(
        qtbot, pulse, recording_backend, model_dirs, portrait_files, tmp_path):
    recording_backend.fail_with = "'v4l2loopback' backend: no v4l2 loopback device found"
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), portrait=str(portrait_files[0]), model="tiny",
                        runtime=ONE_WORKER)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: "camera" in window.banners, timeout=30_000)
    banner = window.banners["camera"]
    assert driver_advice() in banner.message and "v4l2 loopback device" in banner.message
    assert banner.action_button.text() == "Re-check"
    qtbot.waitUntil(lambda: window.controller.session is not None, timeout=30_000)
    assert window.controller.session.camera is None  # the session goes on with the preview only
    qtbot.waitUntil(lambda: "off (preview only)" in window.status_label.text(), timeout=10_000)

    recording_backend.fail_with = None
    banner.action_button.click()
    qtbot.waitUntil(lambda: "camera" not in window.banners and window.controller.session is not None
                    and window.controller.session.camera is not None, timeout=60_000)
    qtbot.waitUntil(lambda: "/dev/recording0" in window.status_label.text(), timeout=10_000)
    window.close()


def test_a_missing_microphone_shows_what_to_do(qtbot, pulse, recording_backend, model_dirs, portrait_files,
                                                tmp_path):
    store = SettingsStore(tmp_path / "s.ini")
    store.save(Settings(mic="USB headset that is not plugged in"))
    window = MainWindow(store=store, portrait=str(portrait_files[0]), model="tiny", runtime=ONE_WORKER)
    qtbot.addWidget(window)
    window.show()
    assert window.mic_box.currentText() == "USB headset that is not plugged in (not found)"
    qtbot.waitUntil(lambda: "mic" in window.banners, timeout=30_000)
    message = window.banners["mic"].message
    assert "no input device 'USB headset that is not plugged in'" in message and "available input devices" in message
    assert window.banners["mic"].action_button.text() == "Re-check"
    assert window.controller.session is None
    window.mic_box.setCurrentIndex(0)  # the system default: the session starts, the banner goes
    qtbot.waitUntil(lambda: window.controller.session is not None and "mic" not in window.banners, timeout=30_000)
    window.close()


def test_no_portrait_and_no_trained_model_say_so(qtbot, model_dirs, tmp_path, monkeypatch):
    monkeypatch.setattr("avatar_desktop.gui.window.bundled_portrait", lambda: None)
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), model="preset:tiny-cpu", autostart=False)
    qtbot.addWidget(window)
    assert "choose one with Open" in window.banners["portrait"].message
    assert window.banners["portrait"].action_button.text() == "Open…"
    assert "random weights" in window.banners["untrained"].message
    assert "untrained" in window.model_box.currentText()
    window.start_session()  # nothing to animate: it asks again instead of failing
    assert "Choose a portrait" in window.banners["portrait"].message
    window.model_box.setCurrentIndex([c.key for c in window.choices].index("model:tiny"))
    assert "untrained" not in window.banners


def test_a_model_that_is_not_there_says_which_one_runs_instead(qtbot, model_dirs, portrait_files, tmp_path):
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), portrait=str(portrait_files[0]),
                        model="my-finetune", autostart=False)
    qtbot.addWidget(window)
    message = window.banners["model_choice"].message
    # the best one found: automatic, the photo renderer for any portrait with a face
    assert "'my-finetune' was not found" in message and "using Automatic: the photo renderer" in message
    assert window.model_choice.key == "auto"


def test_closing_while_the_session_starts_stops_it(qtbot, pulse, recording_backend, model_dirs, portrait_files,
                                                    tmp_path):
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), portrait=str(portrait_files[0]), model="tiny",
                        runtime=ONE_WORKER, autostart=False)
    qtbot.addWidget(window)
    window.start_session()
    window.close()  # the start job is queued or running: closing waits for it, then stops what it started
    assert window.controller.session is None
    assert not [p for p in multiprocessing.active_children() if p.name == "avatar-worker"]


def test_quick_successive_changes_leave_one_session(qtbot, pulse, recording_backend, model_dirs, portrait_files,
                                                    tmp_path):
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), portrait=str(portrait_files[0]), model="tiny",
                        runtime=ONE_WORKER)
    qtbot.addWidget(window)
    window.start_session()  # and autostart queued another
    window.mirror_check.setChecked(True)  # while the first session is still starting
    window.expression_panel.sliders["smile"].setValue(50)
    window.mirror_check.setChecked(False)
    qtbot.waitUntil(lambda: window.busy_label.text() == "" and window.controller.session is not None, timeout=90_000)
    session = window.controller.session
    assert not session.config.camera.mirror and session.expression == {"smile": 0.5}

    def workers() -> list[int]:
        return [p.pid for p in multiprocessing.active_children() if p.name == "avatar-worker"]

    qtbot.waitUntil(lambda: workers() == [session.worker.pid], timeout=20_000)  # the overtaken ones were stopped
    window.close()
    assert workers() == []


def test_with_the_photo_renderer_a_portrait_without_a_face_is_refused(qtbot, model_dirs, portrait_files, tmp_path):
    from skimage import data as skimage_data

    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), skimage_data.astronaut()[:, :, ::-1])
    window = MainWindow(store=SettingsStore(tmp_path / "s.ini"), portrait=str(photo), model="auto", autostart=False)
    qtbot.addWidget(window)
    assert window.model_choice.key == "auto" and window.settings.portrait == str(photo.resolve())
    red = portrait_files[1]  # a plain red square
    window.open_portrait(str(red))
    qtbot.waitUntil(lambda: "portrait" in window.banners, timeout=20_000)
    assert "no face found in red.png: use a photo with the face visible" in window.banners["portrait"].message
    assert window.settings.portrait == str(photo.resolve())  # the old portrait stays
    assert window.portrait_image.shape == (512, 512, 3)
