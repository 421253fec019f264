"""Open the desktop window: a QApplication around one MainWindow, until the user closes it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from avatar_desktop.errors import AvatarError
from avatar_desktop.files import prepare_output_folder


def run_window(*, portrait: Path | None = None, model: str | None = None, settings: Path | None = None,
               seconds: float | None = None, screenshot: Path | None = None) -> int:
    """Show the window; `seconds`: close it after that long (measurements, smoke tests), saving a picture of it to
    `screenshot` (PNG) first. Returns the exit code (1 when the picture could not be saved)."""
    if screenshot is not None:
        if seconds is None:
            raise AvatarError("--screenshot needs --seconds: the picture is taken just before the window closes")
        prepare_output_folder(screenshot.parent, "--screenshot")
    if sys.platform.startswith("linux") and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")):
        raise AvatarError("no display to open the window on (DISPLAY and WAYLAND_DISPLAY are unset): run it in a "
                          "desktop session, or use `avatar-desktop live` for a headless session")
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from avatar_desktop.gui.settings import SettingsStore
    from avatar_desktop.gui.window import MainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("avatar-desktop")
    window = MainWindow(store=SettingsStore(settings), portrait=str(portrait) if portrait else None, model=model)
    window.show()
    saved = True

    def close() -> None:
        nonlocal saved
        if screenshot is not None:
            saved = window.grab().save(str(screenshot), "PNG")
            if not saved:
                print(f"avatar-desktop gui: cannot write the screenshot {screenshot}", file=sys.stderr)
        window.close()

    if seconds is not None:
        QTimer.singleShot(round(seconds * 1000), close)
    code = app.exec()
    return code if saved else 1
