"""`avatar-desktop bench`: streaming speed of a model on either path (DESIGN.md section 7)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

from avatar_desktop.commands.model_args import (
    add_engine_arguments,
    add_model_arguments,
    fast_path_options,
    model_spec_from_args,
)
from avatar_desktop.commands.registry import command
from avatar_desktop.config import EngineConfig, parse_expression
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import prepare_output_folder


def _add(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--portrait", type=Path,
                        help="a photo: benchmark the photo renderer on it, frames fitted to the camera canvas at the "
                             "camera's 30 fps (default: a drawn stand-in portrait and the latent model)")
    parser.add_argument("--camera-size", default="1280x720", help="camera canvas for --portrait (default 1280x720)")
    add_engine_arguments(parser)
    parser.add_argument("--steps", type=int, help="sampler steps (default: the checkpoint's)")
    parser.add_argument("--seconds", type=float, default=10.0, help="audio streamed through the model (default 10)")
    parser.add_argument("--expression", default="",
                        help="sliders held while streaming, e.g. head_yaw=0.5 (the head sliders add the re-posing warp)")
    parser.add_argument("--naive", action="store_true", help="baseline: teacher sampler, no caches, fp32, one chunk length")
    parser.add_argument("--onnx", type=Path,
                        help="side by side: an export of --model (`avatar-desktop export`); runs torch fp32, onnx fp32 "
                             "and onnx int8 (when exported) in this one run, on each of --thread-counts")
    parser.add_argument("--thread-counts", default="1,2,4", help="with --onnx: CPU thread counts (default 1,2,4)")
    parser.add_argument("--json", action="store_true", help="print one JSON object (with --onnx: a list)")
    parser.add_argument("--profile", type=Path,
                        help="markdown file: after the run, torch.profiler over a few steady chunks, the top kernels "
                             "and the idle gaps between them (the latent model on torch)")


def _cuda_available() -> bool:
    """Whether torch is installed and sees a CUDA device."""
    from avatar_desktop.engine.model_spec import torch_installed

    if not torch_installed():
        return False
    import torch

    return torch.cuda.is_available()


def _run(args: argparse.Namespace) -> int:
    from avatar_desktop.engine.bench import benchmark_portrait, naive_config, run_benchmark
    from avatar_desktop.engine.model_spec import ModelSpec, open_generator
    from avatar_desktop.engine.portrait import load_portrait
    from avatar_desktop.output.camera import CameraConfig

    if args.device.startswith("cuda") and not _cuda_available():
        raise AvatarError("--device cuda: no CUDA device is available here (run on a machine with an NVIDIA GPU, or use --device cpu)")
    if not args.seconds >= 1:  # also refuses nan
        raise AvatarError(f"--seconds must be at least 1, got {args.seconds}")
    if args.steps is not None and args.steps < 1:
        raise AvatarError(f"--steps must be at least 1, got {args.steps}")
    try:
        expression = parse_expression(args.expression)
    except ValueError as error:
        raise AvatarError(f"--expression: {error}") from None
    try:
        width, height = (int(v) for v in args.camera_size.lower().split("x"))
        camera = CameraConfig(width=width, height=height) if args.portrait else None
    except ValueError as error:
        raise AvatarError(f"--camera-size {args.camera_size!r}: expected WIDTHxHEIGHT, even, e.g. 1280x720 "
                          f"({error})") from None
    spec = model_spec_from_args(args)
    if args.portrait is None and spec.name is None:
        spec = ModelSpec("default")  # the drawn stand-in portrait is a character of the latent model
    portrait = load_portrait(args.portrait) if args.portrait else benchmark_portrait()
    frame_limit, fps = ((camera.width, camera.height), camera.fps) if camera else (None, None)
    config = EngineConfig(device=args.device, precision=args.precision, steps=args.steps, threads=args.threads,
                          **fast_path_options(args))
    if args.onnx is not None:
        return _side_by_side(args, spec, portrait, config, frame_limit=frame_limit, fps=fps, seconds=args.seconds,
                             expression=expression, camera=camera)
    if args.profile is not None:
        prepare_output_folder(args.profile.parent, "--profile")
    clock = time.perf_counter()
    generator = open_generator(spec, portrait, config, frame_limit=frame_limit, fps=fps,
                               source=str(args.portrait or "portrait"))
    if args.naive:
        config = naive_config(config, generator.planner.plan.steady)
        clock = time.perf_counter()
        generator = open_generator(spec, portrait, config, frame_limit=frame_limit, fps=fps)
    prepare_s = time.perf_counter() - clock
    if args.profile is not None and (spec.kind, spec.backend) != ("latent", "torch"):
        raise AvatarError(f"--profile profiles the latent model on torch, not the {generator.path} of "
                          f"{spec.label}: leave --profile out, or give a latent torch model")
    result = run_benchmark(generator, seconds=args.seconds, expression=expression, camera=camera)
    result["prepare_s"] = round(prepare_s, 2)  # loading, prepare() and its warm-up (with --compile: compiling)
    if args.profile is not None:
        _write_profile(args.profile, generator, result)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:>32}: {value}")
    return 0


def _write_profile(path: Path, generator, result: dict) -> None:
    """--profile: the steady chunks' kernels and idle gaps (engine/profiling.py) as markdown in `path`."""
    from avatar_desktop.engine.profiling import profile_steady_chunks, profile_table

    chunks = 3
    intervals, frames = profile_steady_chunks(generator, chunks=chunks)
    mode = "+".join(name for name in ("compile", "overlap_decode") if result[name]) or "eager"
    if result["decoder"] == "tiny":
        mode += ", tiny decoder"
    title = f"{result['preset']} {result['dtype']} {mode} on {result['device']}"
    path.write_text(profile_table(intervals, title=title, chunks=chunks, frames=frames))


def _side_by_side(args: argparse.Namespace, spec, portrait, config, **options) -> int:
    """--onnx: the backends and precisions side by side on each thread count; a table, or JSON."""
    from avatar_desktop.engine.bench import compare_backends
    from avatar_desktop.engine.model_spec import ModelSpec

    try:
        thread_counts = [int(count) for count in args.thread_counts.split(",")]
    except ValueError:
        thread_counts = []
    if not thread_counts or min(thread_counts) < 1:
        raise AvatarError(f"--thread-counts {args.thread_counts!r}: expected counts >= 1 separated by commas, e.g. 1,2,4")
    if spec.backend != "torch" or args.naive:
        raise AvatarError("--onnx compares an export with its torch model: give the torch folder as --model, "
                          "without --naive")
    onnx_spec = ModelSpec(str(args.onnx), backend="onnx")
    if onnx_spec.kind != spec.kind:
        raise AvatarError(f"--onnx {args.onnx} is a {onnx_spec.kind} model, --model a {spec.kind} one: give an export "
                          "of --model")
    results = compare_backends(spec, onnx_spec, portrait, replace(config, precision="fp32"), thread_counts, **options)
    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{'backend':>8} {'precision':>9} {'threads':>7} {'fps':>8} {'first frame ms':>14} {'p99 frame ms':>12}")
    for row in results:
        print(f"{row['backend']:>8} {row['precision']:>9} {row['threads']:>7} {row['fps']:>8} "
              f"{row['first_frame_ms']:>14} {row['p99_frame_ms']:>12}")
    return 0


command("bench", "Measure streaming speed: fps, first-frame latency, frame times, memory")((_add, _run))
