"""What the window remembers, declared once (typed, versioned) and persisted with QSettings.

Every field of `Settings` is stored as JSON text under its own key, next to `version`. Loading never fails: an
unreadable file, a file from another version, or a value of the wrong type falls back to the default, and
`SettingsStore.load()` says so in its notice; such a file is first copied to a backup next to it (`NAME.bak`, or
`NAME.bak2`, ... when that exists), since the next save rewrites it. QSettings writes the file atomically (QSaveFile).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from avatar_desktop.config import check_expression

SETTINGS_VERSION = 1
MAX_RECENT_PORTRAITS = 8
RESOLUTIONS = ("1280x720", "960x540", "640x360")
"""Virtual-camera canvas sizes offered to the user (width x height, even numbers)."""


@dataclass
class Settings:
    """The window's persistent state. Device fields hold device names ('' = system default, or none/off)."""

    geometry: str = ""  # base64 of QWidget.saveGeometry()
    model: str = ""  # a model choice key (gui/catalog.py); '' = the best model found
    portrait: str = ""  # path of the last portrait; '' = the bundled one
    recent_portraits: list[str] = field(default_factory=list)
    mic: str = ""
    far_end: str = ""  # '' = no far-end input
    audio_out: str = ""  # '' = no lip-synced passthrough
    camera_enabled: bool = True
    camera_resolution: str = RESOLUTIONS[0]
    mirror: bool = False
    overlay_visible: bool = True
    expression: dict[str, float] = field(default_factory=dict)  # written on saving: the controller owns it live
    expression_presets: dict[str, dict[str, float]] = field(default_factory=dict)

    def remember_portrait(self, path: str) -> None:
        """Make `path` the current portrait and the first of the recent ones."""
        self.portrait = path
        self.recent_portraits = [path, *(p for p in self.recent_portraits if p != path)][:MAX_RECENT_PORTRAITS]


def _expression(value: Any) -> dict[str, float]:
    """A {component: value in [-1, 1]} dict, or ValueError."""
    if not isinstance(value, dict):
        raise ValueError("expected {component: number}")
    return check_expression(value)


def _check(name: str, value: Any, default: Any) -> Any:
    """`value` if it fits the field `name` (whose default is `default`); ValueError otherwise."""
    if name == "expression":
        return _expression(value)
    if name == "expression_presets":
        if not isinstance(value, dict):
            raise ValueError("expected {preset name: expression}")
        return {str(k): _expression(v) for k, v in value.items()}
    if name == "recent_portraits":
        if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
            raise ValueError("expected a list of paths")
        return value[:MAX_RECENT_PORTRAITS]
    if type(value) is not type(default):
        raise ValueError(f"expected {type(default).__name__}, got {type(value).__name__}")
    if name == "geometry":
        base64.b64decode(value, validate=True)  # binascii.Error is a ValueError
    if name == "camera_resolution" and value not in RESOLUTIONS:
        raise ValueError(f"{value!r} is not one of {', '.join(RESOLUTIONS)}")
    return value


class SettingsStore:
    """Reads and writes `Settings`. path=None: the user's settings file (per OS, via QSettings)."""

    def __init__(self, path: str | Path | None = None):
        if path is None:
            self._qsettings = QSettings(QSettings.Format.IniFormat, QSettings.Scope.UserScope,
                                        "avatar-desktop", "avatar-desktop")
        else:
            self._qsettings = QSettings(str(path), QSettings.Format.IniFormat)

    @property
    def path(self) -> str:
        return self._qsettings.fileName()

    def load(self) -> tuple[Settings, str | None]:
        """(settings, notice): the notice says what was reset to defaults and why, None when all was fine."""
        qs = self._qsettings
        qs.sync()
        defaults = Settings()
        if qs.status() != QSettings.Status.NoError:
            return defaults, f"the settings file {self.path} could not be read; using defaults{self._backup()}"
        written = Path(self.path).is_file() and Path(self.path).stat().st_size > 0
        if not qs.allKeys() and not written:
            return defaults, None
        version = qs.value("version")
        if version is None:  # binary garbage, or a file without a single setting of ours
            return defaults, (f"the settings file {self.path} is damaged (it holds no settings version); using "
                              f"defaults{self._backup()}")
        if str(version) != str(SETTINGS_VERSION):
            return defaults, (f"the settings file {self.path} is from another version ({version}, this is "
                              f"{SETTINGS_VERSION}); using defaults{self._backup()}")
        values, bad = {}, []
        for item in dataclasses.fields(Settings):
            raw = qs.value(item.name)
            if raw is None:
                continue
            try:
                values[item.name] = _check(item.name, json.loads(str(raw)), getattr(defaults, item.name))
            except ValueError:  # json.JSONDecodeError is a ValueError too
                bad.append(item.name)
        notice = None
        if bad:
            notice = (f"settings {', '.join(bad)} in {self.path} were damaged and were reset to their "
                      f"defaults{self._backup()}")
        return Settings(**values), notice

    def _backup(self) -> str:
        """Copy the settings file to the first free NAME.bak, NAME.bak2, ... (unless one holds the same bytes
        already); the notice's ending that says where, or why not."""
        source = Path(self.path)
        try:
            content = source.read_bytes()
            number, backup = 1, source.with_name(f"{source.name}.bak")
            while backup.exists() and backup.read_bytes() != content:
                number += 1
                backup = source.with_name(f"{source.name}.bak{number}")
            if not backup.exists():
                shutil.copy2(source, backup)
        except OSError as error:
            return f" (no backup of the old file could be made: {error.strerror})"
        return f" (the old file is kept as {backup})"

    def save(self, settings: Settings) -> None:
        qs = self._qsettings
        qs.clear()
        qs.setValue("version", SETTINGS_VERSION)
        for item in dataclasses.fields(Settings):
            qs.setValue(item.name, json.dumps(getattr(settings, item.name)))
        qs.sync()
