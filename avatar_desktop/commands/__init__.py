"""Subcommand modules; importing one registers it in `avatar_desktop.commands.registry.COMMANDS`."""

from avatar_desktop.commands import bench, dataset, doctor, evaluate, export, gui, live, render, train  # noqa: F401
from avatar_desktop.commands.registry import COMMANDS  # noqa: F401
