"""`avatar-desktop eval`: score a model (or a baseline) against ground-truth clips, or the photo path on a folder of
photos (`--photos`); JSON and a plot."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from avatar_desktop.commands.registry import command


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None,
                        help="model name or folder; or a baseline: 'ground-truth' (perfect), 'static' (no motion) or "
                             "'still-head' (true mouth and sliders, head held still). With --photos: the motion "
                             "model (default: the shipped one)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data set folder (made by `avatar-desktop dataset`)")
    parser.add_argument("--photos", type=Path, default=None,
                        help="instead of --data: a folder of photos; each says synthesized speech through the photo "
                             "path and is measured with the face mesh (docs/DATA.md, 'Evaluation of photos')")
    parser.add_argument("--seconds", type=float, default=24.0, help="with --photos: seconds of speech per photo")
    parser.add_argument("--clips", type=int, default=4, help="clips to evaluate (held-out clips first)")
    parser.add_argument("--seed", type=int, default=0, help="clip order and the engine's noise")
    parser.add_argument("--minutes", type=float, default=0.0,
                        help="also stream this many minutes and compare the first minute with the last (0: skip); "
                             "with --photos, for every photo")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampler steps instead of the checkpoint's (e.g. fewer for a teacher)")
    parser.add_argument("--chunk", type=int, default=None,
                        help="generate every chunk with this many frames instead of the chunk plan")
    parser.add_argument("--guidance", type=float, default=None,
                        help="audio guidance scale instead of the checkpoint's (1: none; see SamplingConfig)")
    parser.add_argument("--autoencoder-only", action="store_true",
                        help="score the ground-truth frames passed through the model's autoencoder: its ceiling")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG: mouth opening over time, generated vs truth (with --photos: the first photo)")


def _format(report: dict, indent: str = "") -> list[str]:
    lines = []
    for key, value in report.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:"] + _format(value, indent + "  ")
        elif isinstance(value, float):
            lines.append(f"{indent}{key}: {value:.4g}")
        else:
            lines.append(f"{indent}{key}: {value}")
    return lines


def _run(args: argparse.Namespace) -> int:
    from avatar_desktop.eval.report import EvaluationError, evaluate, frame_source, plot_trace

    if args.photos is not None:
        return _run_photos(args)
    if args.model is None or args.data is None:
        raise EvaluationError("give --model and --data (a data set), or --photos (a folder of photos)")
    if args.clips < 1:
        raise EvaluationError(f"--clips must be at least 1, got {args.clips}")
    engine = _engine_config(args, audio_guidance=args.guidance)
    source = frame_source(args.model, engine, autoencoder_only=args.autoencoder_only)
    result = evaluate(args.data, source, clips=args.clips, seed=args.seed, minutes=args.minutes)
    if args.plot is not None:
        plot_trace(result["trace"], args.plot)
    report = result["report"]
    print(json.dumps(report) if args.json else "\n".join(_format(report)))
    return 0


def _engine_config(args: argparse.Namespace, **extra):
    """The EngineConfig both kinds of evaluation drive the model with; EvaluationError for a bad --minutes, --steps
    or --chunk."""
    from avatar_desktop.config import EngineConfig
    from avatar_desktop.eval.report import EvaluationError

    if args.minutes < 0:
        raise EvaluationError(f"--minutes must not be negative, got {args.minutes}")
    for option, value in (("--steps", args.steps), ("--chunk", args.chunk)):
        if value is not None and value < 1:
            raise EvaluationError(f"{option} must be at least 1, got {value}")
    return EngineConfig(device=args.device, precision=args.precision, seed=args.seed, steps=args.steps,
                        fixed_chunk=args.chunk, **extra)


def _run_photos(args: argparse.Namespace) -> int:
    from avatar_desktop.eval.photos import evaluate_photos, format_report, plot_photo_trace
    from avatar_desktop.eval.report import EvaluationError

    if args.data is not None:
        raise EvaluationError("give --data or --photos, not both")
    engine = _engine_config(args)
    result = evaluate_photos(args.photos, args.model, seconds=args.seconds, seed=args.seed,
                             minutes=args.minutes, config=engine)
    if args.plot is not None:
        plot_photo_trace(result["trace"], args.plot)
    report = result["report"]
    print(json.dumps(report) if args.json else format_report(report))
    return 0


command("eval", "Score a model against ground-truth clips: lip sync, appearance, temporal, states, expression")(
    (_add, _run))
