"""Files the app reads and writes for the user: atomic writes, output folders checked before the work starts, and
JSON read with a clear error.

An atomic write goes to a hidden temporary file in the target's folder, then `os.replace` puts it in place: a crash
or a full disk leaves the old file (or none), never a half-written one.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from avatar_desktop.errors import AvatarError, OutputError


def app_root() -> Path:
    """The folder holding the app's own models/ and assets/: a frozen build's bundle folder (PyInstaller's
    sys._MEIPASS, where packaging/avatar-desktop.spec puts them), else the repository."""
    bundle = getattr(sys, "_MEIPASS", None)
    return Path(bundle) if bundle else Path(__file__).resolve().parents[1]


def user_cache_folder() -> Path:
    """The app's folder for files it can make again (TensorRT engines): $XDG_CACHE_HOME/avatar-desktop, by default
    ~/.cache/avatar-desktop (as models/folders.py finds the user's models under $XDG_DATA_HOME). Not created here."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "avatar-desktop"


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once, at import: the permissions a plain open() would give a new file



def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically; OutputError naming the file when it cannot be written."""
    path = Path(path)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as error:
        raise OutputError(f"cannot write {path} ({error.strerror}): choose a folder you can write to") from None
    try:
        os.chmod(temporary, 0o666 & ~_UMASK)  # mkstemp makes files private (0600); outputs get the usual ones
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise OutputError(f"cannot write {path} ({error.strerror}): free some space or choose another "
                              "folder") from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2) -> None:
    write_text_atomic(path, json.dumps(data, indent=indent) + "\n")


def write_png_atomic(path: str | Path, image: np.ndarray) -> None:
    """Write a uint8 (H, W, 3) BGR image (OpenCV's order) as a PNG, atomically."""
    encoded, data = cv2.imencode(".png", image)
    if not encoded:
        raise OutputError(f"cannot encode the image for {path} as PNG")
    write_bytes_atomic(path, data.tobytes())


def prepare_output_folder(folder: str | Path, option: str) -> Path:
    """Create `folder` (and its parents) if needed and check that files can be created in it, before any work.

    OutputError naming `option` and the folder otherwise: it exists as a file, it cannot be made, or it is read-only.
    """
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = "a file is in the way" if isinstance(error, (FileExistsError, NotADirectoryError)) else error.strerror
        raise OutputError(f"{option} {folder}: cannot write there ({reason}): choose a folder you can write "
                          "to") from None
    return folder


def read_json(path: str | Path, what: str, error_type: type[AvatarError] = AvatarError) -> Any:
    """The JSON value in `path`; `error_type` naming `what` and the file when it is unreadable or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_bytes())
    except OSError as error:
        raise error_type(f"{what} {path} cannot be read ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise error_type(f"{what} {path} is damaged: not valid JSON ({error})") from None
