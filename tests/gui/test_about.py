"""Help > About shows the version and the licence; the window carries the application icon."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from avatar_desktop import __version__
from avatar_desktop.gui.settings import SettingsStore
from avatar_desktop.gui.window import MainWindow

_MAKE_ICONS = Path(__file__).resolve().parents[2] / "packaging" / "make_icons.py"
_spec = importlib.util.spec_from_file_location("make_icons", _MAKE_ICONS)
make_icons = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_icons)
SIZES = make_icons.SIZES


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


def test_the_committed_icons_are_the_svg_rendered(tmp_path):
    """packaging/make_icons.py renders the same pixels as the PNGs in assets/icons (run it after editing the SVG)."""
    from PySide6.QtGui import QImage

    for made in make_icons.render_icons(tmp_path):
        committed = QImage(str(make_icons.ROOT / "assets" / "icons" / made.name))
        assert not committed.isNull(), f"{made.name} is missing from assets/icons: run packaging/make_icons.py"
        assert committed == QImage(str(made)), f"{made.name} is out of date: run packaging/make_icons.py"


def test_the_window_carries_the_application_icon_at_every_size(qtbot, model_dirs, portrait_files, tmp_path):
    window = MainWindow(store=SettingsStore(tmp_path / "settings.ini"), portrait=str(portrait_files[0]),
                        model="tiny", autostart=False)
    qtbot.addWidget(window)
    sizes = {size.width() for size in window.windowIcon().availableSizes()}
    assert sizes == set(SIZES)
    corner, middle = (window.windowIcon().pixmap(64).toImage().pixelColor(x, x) for x in (0, 32))
    assert corner.alpha() == 0 and middle.alpha() == 255  # transparent corners around an opaque tile
