"""Settings: they survive a restart of the window; a corrupt, foreign-version or damaged file falls back to the
defaults, the window says so, and the old file is kept as a backup."""

from __future__ import annotations

import pytest

from avatar_desktop.gui.settings import SETTINGS_VERSION, Settings, SettingsStore
from avatar_desktop.gui.window import MainWindow


def open_window(qtbot, path, **kw) -> MainWindow:
    window = MainWindow(store=SettingsStore(path), autostart=False, **kw)
    qtbot.addWidget(window)
    window.show()
    return window


def test_settings_survive_a_restart_of_the_window(qtbot, model_dirs, portrait_files, tmp_path):
    path = tmp_path / "settings.ini"
    first = open_window(qtbot, path, portrait=str(portrait_files[1]), model="tiny")
    first.expression_panel.sliders["brow"].setValue(-40)
    first.expression_panel.save_preset("frown")
    first.expression_panel.sliders["smile"].setValue(70)
    first.mirror_check.setChecked(True)
    first.resolution_box.setCurrentText("640x360")
    first.camera_check.setChecked(False)
    first.overlay_action.trigger()
    first.resize(760, 560)  # within the offscreen screen (800x600): restoreGeometry keeps windows on screen
    size = (first.width(), first.height())
    first.close()

    second = open_window(qtbot, path)
    assert second.model_choice.key == "model:tiny"
    assert second.settings.portrait == str(portrait_files[1].resolve())
    assert second.portrait_image.shape == (128, 128, 3)
    assert second.expression_panel.expression() == {"brow": -0.4, "smile": 0.7}
    assert second.expression_panel.presets == {"frown": {"brow": -0.4}}
    assert second.expression_panel.preset_box.itemText(0) == "frown"
    assert second.mirror_check.isChecked() and not second.camera_check.isChecked()
    assert second.resolution_box.currentText() == "640x360"
    assert not second.overlay_action.isChecked() and not second.preview.overlay_visible
    assert (second.width(), second.height()) == size
    config = second.session_config()
    assert config.camera is None and second.controller.expression.values == {"brow": -0.4, "smile": 0.7}
    assert not second.banners.get("settings")
    second.expression_panel.apply_preset("frown")
    assert second.expression_panel.expression() == {"brow": -0.4}


@pytest.mark.parametrize("content, says", [
    (b"\x00\xff\xfe garbage [[[ = \n\x89PNG", "is damaged (it holds no settings version); using defaults"),
    (b"[General]\nversion=0\nmirror=true\n", "from another version (0"),
    (f"[General]\nversion={SETTINGS_VERSION}\nmirror=\"\\\"yes\\\"\"\nexpression=\"{{\\\"smile\\\": 9}}\"\n"
     "camera_resolution=\"\\\"1x1\\\"\"\ngeometry=\"\\\"@@@\\\"\"\n".encode(),
     "geometry, camera_resolution, mirror, expression"),
])
def test_a_corrupt_or_old_settings_file_falls_back_to_defaults_and_says_so(qtbot, model_dirs, portrait_files,
                                                                           tmp_path, content, says):
    path = tmp_path / "settings.ini"
    path.write_bytes(content)
    settings, notice = SettingsStore(path).load()
    assert settings == Settings()
    window = open_window(qtbot, path, portrait=str(portrait_files[0]))
    assert says in window.banners["settings"].message
    assert "Traceback" not in window.banners["settings"].message
    assert not window.mirror_check.isChecked()
    assert window.expression_panel.expression() == {}
    assert "(None)" not in window.banners["settings"].message
    assert f"(the old file is kept as {path}.bak)" in window.banners["settings"].message
    window.close()
    assert SettingsStore(path).load()[1] is None  # closing wrote a good file
    assert (tmp_path / "settings.ini.bak").read_bytes() == content  # the old file, kept once
    assert sorted(p.name for p in tmp_path.iterdir()) == ["settings.ini", "settings.ini.bak"]


def test_a_second_damaged_settings_file_gets_its_own_backup(tmp_path):
    path = tmp_path / "settings.ini"
    for number, content in enumerate([b"\x00\x01 garbage", b"[General]\nversion=0\n"], start=1):
        path.write_bytes(content)
        notice = SettingsStore(path).load()[1]
        backup = tmp_path / f"settings.ini.bak{number if number > 1 else ''}"
        assert f"(the old file is kept as {backup})" in notice and backup.read_bytes() == content
