"""The subcommand registry: each subcommand module registers its (add_arguments, run) pair here with `command`;
`avatar_desktop.cli` builds the parser from COMMANDS. `run(args) -> exit code`."""

from __future__ import annotations

import argparse
from typing import Callable

Command = tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], int]]
COMMANDS: dict[str, tuple[str, Command]] = {}


def command(name: str, help_text: str):
    """Register `add_arguments` under `name`; the decorated function is `run`."""

    def register(pair: Command) -> Command:
        COMMANDS[name] = (help_text, pair)
        return pair

    return register
