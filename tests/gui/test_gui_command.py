"""`avatar-desktop gui` as a user runs it: a real process, offscreen, on the PulseAudio rig."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from avatar_desktop.gui.settings import SettingsStore

AVATAR_DESKTOP = str(Path(sys.executable).parent / "avatar-desktop")  # the console script pip installed


@pytest.mark.slow
def test_gui_opens_with_the_portrait_given_and_remembers_it(pulse, model_dirs, portrait_files, tmp_path):
    settings = tmp_path / "settings.ini"
    done = subprocess.run(
        [AVATAR_DESKTOP, "gui", "--portrait", str(portrait_files[1]), "--model", "tiny",
         "--settings", str(settings), "--seconds", "4"],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    saved, notice = SettingsStore(settings).load()
    assert notice is None
    assert saved.portrait == str(portrait_files[1].resolve()) and saved.model == "model:tiny"


def test_without_a_display_it_says_what_to_do(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    done = subprocess.run([AVATAR_DESKTOP, "--help"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert "gui" in done.stdout
    done = subprocess.run([AVATAR_DESKTOP], env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "no display to open the window on" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_gui_saves_a_screenshot_of_the_window_before_it_closes(pulse, model_dirs, portrait_files, tmp_path):
    shot = tmp_path / "shots" / "window.png"
    done = subprocess.run(
        [AVATAR_DESKTOP, "gui", "--portrait", str(portrait_files[0]), "--model", "tiny",
         "--settings", str(tmp_path / "settings.ini"), "--seconds", "4", "--screenshot", str(shot)],
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    picture = QImage(str(shot))
    assert (picture.width(), picture.height()) == (1180, 760)  # the window's first size
    assert len({picture.pixel(x, 380) for x in range(0, 1180, 20)}) > 3  # drawn widgets, not one flat colour


def test_a_screenshot_needs_seconds(tmp_path):
    done = subprocess.run([AVATAR_DESKTOP, "gui", "--screenshot", str(tmp_path / "window.png")],
                          env={**os.environ, "QT_QPA_PLATFORM": "offscreen"}, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert "--screenshot needs --seconds" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "window.png").exists()
