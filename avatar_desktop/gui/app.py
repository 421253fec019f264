"""Open the desktop window: a QApplication around one MainWindow, until the user closes it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from avatar_desktop.errors import AvatarError


def run_window(*, portrait: Path | None = None, model: str | None = None, settings: Path | None = None,
               seconds: float | None = None) -> int:
    """Show the window; `seconds`: close it after that long (measurements, smoke tests). Returns the exit code."""
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
    if seconds is not None:
        QTimer.singleShot(round(seconds * 1000), window.close)
    return app.exec()
