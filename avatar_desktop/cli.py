"""`avatar-desktop` command line: a thin argparse layer over the library; each subcommand lives in one function.

Subcommands live in avatar_desktop/commands/, one module each, registered in `commands.registry.COMMANDS`.
Library code never parses arguments: it takes typed configs. An AvatarError becomes one clear line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from avatar_desktop.commands import COMMANDS
from avatar_desktop.errors import AvatarError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-desktop",
        description="A talking avatar of your portrait, driven by your microphone, on a virtual camera.",
        epilog="Without a command, the desktop window opens.",
    )
    sub = parser.add_subparsers(dest="command")
    for name, (help_text, (add_arguments, _)) in COMMANDS.items():
        add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # no subcommand: the desktop window
        args = parser.parse_args(["gui", *(argv or [])])
    _, (_, run) = COMMANDS[args.command]
    try:
        return run(args)
    except AvatarError as error:
        print(f"avatar-desktop {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"avatar-desktop {args.command}: interrupted", file=sys.stderr)
        return 130
