"""`avatar-desktop eval`: score a model (or a baseline) against ground-truth clips, or the photo path on a folder of
photos (`--photos`); JSON and a plot."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from avatar_desktop.commands.model_args import add_backend_argument, add_engine_arguments, fast_path_options
from avatar_desktop.commands.registry import command
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import prepare_output_folder


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
    parser.add_argument("--seconds", type=float, default=24.0,
                        help="with --photos: seconds of speech per photo (and per voice and noise)")
    parser.add_argument("--voices", default=None,
                        help="with --photos: lip sync per voice instead: comma-separated voices ('engine:voice' or "
                             "espeak-ng names) the model trained on, e.g. flite:kal,en-us+m3 (docs/DATA.md, "
                             "'Evaluation per voice')")
    parser.add_argument("--heldout-voices", default=None,
                        help="with --photos: voices the model never heard, reported apart and judged by the held-out "
                             "thresholds, e.g. flite:slt,festival:cmu_us_slt_arctic_hts")
    parser.add_argument("--noise", default="",
                        help="with --voices: noise conditions KIND:SNR_DB, e.g. babble:10,fan:10 (kinds: white, "
                             "pink, brown, fan, babble); each voice is also heard under each, and silence under each")
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
    add_engine_arguments(parser)
    add_backend_argument(parser)
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")
    parser.add_argument("--plot", type=Path, default=None,
                        help="PNG: mouth opening over time, generated vs truth (with --photos: the first photo); "
                             "written after the report is printed")


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

    _check_plot_path(args.plot)
    if args.photos is not None:
        return _run_photos(args)
    if args.model is None or args.data is None:
        raise EvaluationError("give --model and --data (a data set), or --photos (a folder of photos)")
    if args.clips < 1:
        raise EvaluationError(f"--clips must be at least 1, got {args.clips}")
    engine = _engine_config(args, audio_guidance=args.guidance)
    source = frame_source(args.model, engine, autoencoder_only=args.autoencoder_only, backend=args.backend)
    result = evaluate(args.data, source, clips=args.clips, seed=args.seed, minutes=args.minutes)
    report = result["report"]
    print(json.dumps(report) if args.json else "\n".join(_format(report)), flush=True)
    return _plot(plot_trace, result["trace"], args.plot)


def _check_plot_path(plot: Path | None) -> None:
    """Refuse a --plot that cannot be written before the evaluation starts (not .png, folder not writable)."""
    if plot is None:
        return
    if plot.suffix.lower() != ".png":
        raise AvatarError(f"--plot {plot} must end in .png")
    prepare_output_folder(plot.parent, "--plot")


def _plot(plot_function, trace: dict, plot: Path | None) -> int:
    """Draw the plot after the report was printed: a failure is reported (exit code 1) without losing the report."""
    if plot is None:
        return 0
    try:
        plot_function(trace, plot)
    except AvatarError as error:
        print(f"avatar-desktop eval: the evaluation above is complete, but the plot {plot} was not written: {error}",
              file=sys.stderr)
        return 1
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
                        fixed_chunk=args.chunk, **fast_path_options(args), **extra)


def _run_photos(args: argparse.Namespace) -> int:
    from avatar_desktop.eval.photos import evaluate_photos, format_report, plot_photo_trace
    from avatar_desktop.eval.report import EvaluationError

    if args.data is not None:
        raise EvaluationError("give --data or --photos, not both")
    engine = _engine_config(args)
    if args.voices is not None or args.heldout_voices is not None:
        return _run_voices(args, engine)
    if args.noise:
        raise EvaluationError("--noise needs --voices or --heldout-voices (the voices to hear under it)")
    result = evaluate_photos(args.photos, args.model, seconds=args.seconds, seed=args.seed,
                             minutes=args.minutes, config=engine)
    report = result["report"]
    print(json.dumps(report) if args.json else format_report(report), flush=True)
    return _plot(plot_photo_trace, result["trace"], args.plot)


def _run_voices(args: argparse.Namespace, engine) -> int:
    from avatar_desktop.eval.voices import evaluate_voices, format_voice_report, parse_noise

    def names(text: str | None) -> list[str]:
        return [name.strip() for name in (text or "").split(",") if name.strip()]

    report = evaluate_voices(args.photos, args.model, names(args.voices), names(args.heldout_voices),
                             parse_noise(args.noise), seconds=args.seconds, seed=args.seed, config=engine)
    print(json.dumps(report) if args.json else format_voice_report(report))
    return 0


command("eval", "Score a model against ground-truth clips: lip sync, appearance, temporal, states, expression")(
    (_add, _run))
