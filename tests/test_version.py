"""One version number: avatar_desktop.__version__, read by pyproject.toml and printed by `--version`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import avatar_desktop

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_pyproject_takes_the_version_and_licence_from_the_package():
    project = tomllib.loads(PYPROJECT.read_text())
    assert "version" not in project["project"] and "version" in project["project"]["dynamic"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "avatar_desktop.__version__"}
    assert project["project"]["license"]["text"] in avatar_desktop.PROJECT_LINE


def test_version_flag_prints_the_version():
    done = subprocess.run([sys.executable, "-m", "avatar_desktop", "--version"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"avatar-desktop {avatar_desktop.__version__}\n"
