"""Help > About shows the version and the licence; the window carries the application icon."""

from __future__ import annotations

from avatar_desktop import __version__
from avatar_desktop.gui.settings import SettingsStore
from avatar_desktop.gui.window import MainWindow


def test_help_about_shows_the_version_and_the_licence(qtbot, model_dirs, portrait_files, tmp_path):
    window = MainWindow(store=SettingsStore(tmp_path / "settings.ini"), portrait=str(portrait_files[0]),
                        model="tiny", autostart=False)
    qtbot.addWidget(window)
    window.show()
    menus = {action.text(): action.menu() for action in window.menuBar().actions()}
    (about,) = menus["&Help"].actions()
    about.trigger()
    qtbot.waitUntil(lambda: window.about_box is not None and window.about_box.isVisible())
    assert window.about_box.text() == f"<b>Avatar Desktop</b> {__version__}"
    assert "Apache-2.0" in window.about_box.informativeText()
    window.about_box.accept()
    assert not window.about_box.isVisible()
