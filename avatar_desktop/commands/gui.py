"""`avatar-desktop gui` (also `avatar-desktop` with no arguments): the desktop window."""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_desktop.commands.registry import command


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--portrait", type=Path, default=None,
                   help="portrait image to animate (default: the last one used, else the bundled one)")
    p.add_argument("--model", default=None,
                   help="model name (in models/ or the user folder), model folder, or preset:NAME for an untrained "
                        "preset (default: the last one used, else the model named 'default')")
    p.add_argument("--settings", type=Path, default=None, help="settings file (default: the user's)")
    p.add_argument("--seconds", type=float, default=None, help="close the window after this many seconds")
    p.add_argument("--screenshot", type=Path, default=None,
                   help="with --seconds: save a picture of the window (PNG) to this file just before it closes")


def _run(args: argparse.Namespace) -> int:
    from avatar_desktop.gui.app import run_window

    return run_window(portrait=args.portrait, model=args.model, settings=args.settings, seconds=args.seconds,
                      screenshot=args.screenshot)


command("gui", "The desktop window: live preview, expression, state, devices and model")((_add, _run))
