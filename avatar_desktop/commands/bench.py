"""`avatar-desktop bench`: streaming speed of a model (DESIGN.md section 7)."""

from __future__ import annotations

import argparse
import json

import torch

from avatar_desktop.cli import command
from avatar_desktop.commands.model_args import add_model_arguments, model_from_args
from avatar_desktop.config import EngineConfig, parse_expression
from avatar_desktop.engine.bench import naive_config, run_benchmark
from avatar_desktop.errors import AvatarError


def _add(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="auto", help="auto, fp32, bf16 or fp16 (CUDA)")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed through the model (default 10)")
    parser.add_argument("--expression", default="",
                        help="sliders held while streaming, e.g. head_yaw=0.5 (the head sliders add the re-posing warp)")
    parser.add_argument("--naive", action="store_true", help="baseline: teacher sampler, no caches, fp32, one chunk length")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def _run(args: argparse.Namespace) -> int:
    if args.device == "cuda" and not torch.cuda.is_available():
        raise AvatarError("--device cuda: no CUDA device is available here (run on a machine with an NVIDIA GPU, or use --device cpu)")
    if args.seconds < 1:
        raise AvatarError(f"--seconds must be at least 1, got {args.seconds}")
    try:
        expression = parse_expression(args.expression)
    except ValueError as error:
        raise AvatarError(f"--expression: {error}") from None
    model = model_from_args(args)
    config = EngineConfig(device=args.device, precision=args.precision, steps=args.steps)
    if args.naive:
        config = naive_config(config, model)
    result = run_benchmark(model, config, seconds=args.seconds, expression=expression)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")
    return 0


command("bench", "Measure streaming speed: fps, first-frame latency, frame times, memory")((_add, _run))
