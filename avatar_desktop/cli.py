"""`avatar-desktop` command line: a thin argparse layer over the library; each subcommand lives in one function.

Subcommands live in avatar_desktop/commands/, one module each, registered in `commands.registry.COMMANDS`.
Library code never parses arguments: it takes typed configs. An AvatarError becomes one clear line and exit code 2,
as does a command whose modules the installed (frozen) app leaves out (training, evaluation:
packaging/avatar-desktop.spec).
SIGTERM stops a command (not the window, whose event loop keeps the default) the way Ctrl-C does, exit code 143:
every `finally` runs, so the commands' partial output is removed.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from avatar_desktop import DESCRIPTION, __version__
from avatar_desktop.commands import COMMANDS
from avatar_desktop.errors import AvatarError


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that the command unwinds as it does for Ctrl-C."""


LEFT_OUT_OF_THE_INSTALLED_APP = ("avatar_desktop.", "torch", "diffusers", "safetensors")
"""Module names the installed app's spec excludes (packaging/avatar-desktop.spec): training, evaluation, export."""


def _raise_terminated(signum, frame) -> None:
    raise Terminated


def _default_sigterm() -> None:
    """In a forked child (a data set's worker pool): SIGTERM kills again. The parent's handler only runs when Python
    runs, and a worker stuck in a lock it inherited would then never die: its pool's terminate() would wait forever."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


os.register_at_fork(after_in_child=_default_sigterm)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="avatar-desktop",
        description=DESCRIPTION,
        epilog="Without a command, the desktop window opens.",
    )
    parser.add_argument("--version", action="version", version=f"avatar-desktop {__version__}")
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
    stop_on_sigterm = args.command != "gui"  # the window's event loop would swallow the exception
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if stop_on_sigterm else None
    try:
        return run(args)
    except AvatarError as error:
        print(f"avatar-desktop {args.command}: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        if not (getattr(sys, "frozen", False) and (error.name or "").startswith(LEFT_OUT_OF_THE_INSTALLED_APP)):
            raise
        print(f"avatar-desktop {args.command}: not part of the installed app ({error.name} is left out of it): "
              "run it from a source checkout (README: From source)", file=sys.stderr)
        return 2
    except Terminated:
        print(f"avatar-desktop {args.command}: stopped (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"avatar-desktop {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if stop_on_sigterm:
            signal.signal(signal.SIGTERM, previous)
