"""Model selection shared by subcommands: --model NAME_OR_DIR, or --preset NAME --random-weights."""

from __future__ import annotations

import argparse

import torch

from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.presets import PRESETS, build_model
from avatar_desktop.models.store import load_model


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model name (looked up in models/) or model folder (default: default)")
    group.add_argument("--preset", help=f"architecture preset, with --random-weights: {', '.join(PRESETS)}")
    group.add_argument("--random-weights", action="store_true", help="untrained weights (speed tests, smoke tests)")
    group.add_argument("--threads", type=int, help="CPU threads for torch (default: all cores)")


def model_from_args(args: argparse.Namespace, *, seed: int = 0) -> AvatarModel:
    """The model the arguments name; AvatarError with what to do when they name none or a bad one."""
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.preset or args.random_weights:
        if args.model:
            raise AvatarError("give either --model or --preset with --random-weights, not both")
        if not (args.preset and args.random_weights):
            raise AvatarError("--preset builds an untrained network: add --random-weights (or use --model for trained weights)")
        if args.preset not in PRESETS:
            raise AvatarError(f"unknown preset {args.preset!r}: available presets are {', '.join(PRESETS)}")
        return build_model(args.preset, seed=seed)
    return load_model(args.model or "default")
