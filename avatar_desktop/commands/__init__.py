"""Subcommand modules; importing one registers it with `avatar_desktop.cli.command`."""

from avatar_desktop.commands import bench, dataset, doctor, evaluate, gui, live, render, train  # noqa: F401
