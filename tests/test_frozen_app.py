"""What the installed (PyInstaller-frozen) app does differently: training and evaluation are left out of it, and
asking for them says so in one line."""

from __future__ import annotations

import sys

import pytest

from avatar_desktop.cli import main


def train_teacher(folder) -> list[str]:
    """A `train teacher` command line with an empty recipe (the stages' import comes before the recipe is read)."""
    recipe = folder / "teacher.toml"
    recipe.write_text("")
    return ["train", "teacher", "--config", str(recipe), "--data", str(folder), "--out", str(folder / "run")]


def test_a_command_left_out_of_the_installed_app_says_where_to_run_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setitem(sys.modules, "avatar_desktop.training.stages", None)  # what the spec's EXCLUDES leave out
    code = main(train_teacher(tmp_path))
    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("avatar-desktop train: not part of the installed app")
    assert "avatar_desktop.training.stages" in error and "source checkout" in error


def test_a_missing_module_in_a_source_checkout_is_a_bug_and_is_raised(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "avatar_desktop.training.stages", None)
    with pytest.raises(ModuleNotFoundError):
        main(train_teacher(tmp_path))
