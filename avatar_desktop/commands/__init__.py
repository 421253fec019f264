"""Subcommand modules; importing one registers it with `avatar_desktop.cli.command`."""

from avatar_desktop.commands import bench, render  # noqa: F401
from avatar_desktop.commands import dataset, evaluate  # noqa: F401
from avatar_desktop.commands import train  # noqa: F401
from avatar_desktop.commands import doctor, live  # noqa: F401
from avatar_desktop.commands import gui  # noqa: F401
