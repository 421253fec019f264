"""Open the desktop window: a QApplication around one MainWindow, until the user closes it."""

from __future__ import annotations

import sys
from pathlib import Path


def run_window(*, portrait: Path | None = None, model: str | None = None, settings: Path | None = None,
               seconds: float | None = None) -> int:
    """Show the window; `seconds`: close it after that long (measurements, smoke tests). Returns the exit code."""
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
