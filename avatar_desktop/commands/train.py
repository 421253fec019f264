"""`avatar-desktop train autoencoder|audio|teacher|distill|expression|motion-teacher|motion-distill --config FILE
--data DIR --out DIR [--resume]`.

Runs as one process, or under `torchrun --nproc-per-node N -m avatar_desktop train ...` (DDP).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from avatar_desktop.commands.registry import command
from avatar_desktop.files import prepare_output_folder
from avatar_desktop.training.config import MOTION_RECIPES, RECIPES, load_motion_recipe, load_recipe


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stage", choices=[*RECIPES, *MOTION_RECIPES],
                        help="which network to train (motion-*: the photo path's motion generator)")
    parser.add_argument("--config", required=True, type=Path, help="recipe TOML (see configs/)")
    parser.add_argument("--data", required=True, type=Path, help="data set folder with manifest.json")
    parser.add_argument("--out", required=True, type=Path, help="run folder: model/, checkpoint/, loss.csv, loss.png")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")


def _run(args: argparse.Namespace) -> int:
    prepare_output_folder(args.out, "--out")
    if args.stage in MOTION_RECIPES:
        from avatar_desktop.training.motion import MOTION_STAGES

        loaded = load_motion_recipe(args.stage, args.config)
        rows = MOTION_STAGES[args.stage](loaded, args.data, args.out, args.resume)
    else:
        from avatar_desktop.training.stages import STAGES

        loaded = load_recipe(args.stage, args.config)
        rows = STAGES[args.stage](loaded, args.data, args.out, args.resume)
    if rows:
        print(f"{args.stage}: step {rows[-1][0]}, loss {rows[-1][1]:.5f}; model in {args.out / 'model'}")
    return 0


command("train", "Train the autoencoder, audio encoder or teacher, distil the few-step student, or teach it the sliders")((_add, _run))
