"""`avatar-desktop export --model M --out DIR [--int8 --calibration DATA [--int8-activations u8]]`: a torch model
folder -> ONNX graphs that run on onnxruntime without torch (engine/onnx_export.py lists them; `--backend onnx` or
the folder itself picks them)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from avatar_desktop.commands.registry import command
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import prepare_output_folder


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True, help="model name (looked up in models/) or torch model folder")
    parser.add_argument("--out", required=True, type=Path, help="folder to write (replaced if it exists)")
    parser.add_argument("--int8", action="store_true",
                        help="also write int8 graphs (static QDQ quantization), calibrated on --calibration")
    parser.add_argument("--calibration", type=Path,
                        help="with --int8: a data set (`avatar-desktop dataset synth`) whose speech calibrates the int8 "
                             "graphs")
    parser.add_argument("--calibration-chunks", type=int, default=64,
                        help="chunks of speech the calibration runs through the model (default 64)")
    parser.add_argument("--int8-activations", choices=("s8", "u8"),
                        help="with --int8: the activations' type, s8 (default; TensorRT reads it) or u8 (onnxruntime "
                             "only; faster on some CPUs, docs/PERFORMANCE.md)")


def _run(args: argparse.Namespace) -> int:
    from avatar_desktop.engine.onnx_export import export_model

    if args.int8 and args.calibration is None:
        raise AvatarError("--int8 needs --calibration DATA: a data set of speech (`avatar-desktop dataset synth`) "
                          "whose chunks set the int8 ranges")
    if args.calibration is not None and not args.int8:
        raise AvatarError("--calibration is read only with --int8: add --int8, or leave --calibration out")
    if args.int8_activations is not None and not args.int8:
        raise AvatarError("--int8-activations is read only with --int8: add --int8, or leave it out")
    if args.calibration_chunks < 1:
        raise AvatarError(f"--calibration-chunks must be at least 1, got {args.calibration_chunks}")
    prepare_output_folder(args.out.parent, "--out")
    try:
        out = export_model(args.model, args.out, calibration=args.calibration if args.int8 else None,
                           calibration_chunks=args.calibration_chunks, int8_activations=args.int8_activations or "s8")
    except ValueError as error:
        raise AvatarError(str(error)) from None
    sizes = ", ".join(f"{file.name} {file.stat().st_size / 2**20:.1f} MB" for file in sorted(out.glob("*.onnx")))
    print(f"export: {sizes}", file=sys.stderr)
    print(f"wrote {out}")
    return 0


command("export", "Export a model to ONNX (float, and int8 with --int8) for the onnxruntime backend")((_add, _run))
