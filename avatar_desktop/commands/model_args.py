"""Model selection shared by subcommands: --model NAME_OR_DIR, or --preset NAME --random-weights."""

from __future__ import annotations

import argparse
import re

from avatar_desktop.config import BACKENDS, PRECISIONS
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.errors import AvatarError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    group.add_argument("--model", help="model name (looked up in models/) or model folder (default: the photo renderer "
                                       "for a photo with a face; `--model default` for the bundled drawn characters)")
    group.add_argument("--preset", help="latent architecture preset, with --random-weights")
    group.add_argument("--random-weights", action="store_true", help="untrained weights (speed tests, smoke tests)")
    group.add_argument("--threads", type=int, help="CPU threads for torch, onnxruntime and OpenCV (default: all cores)")
    add_backend_argument(group)


def add_backend_argument(parser) -> None:
    """--backend: which runtime runs the model; its folder says by default (an `export` folder runs on onnx)."""
    parser.add_argument("--backend", choices=BACKENDS,
                        help="torch, onnx (onnxruntime: a folder written by `avatar-desktop export`) or tensorrt (that "
                             "folder on an NVIDIA GPU: the first, or --device cuda:N); default: the model folder's")


def add_engine_arguments(parser: argparse.ArgumentParser, *, device_help: str = "torch device: cpu, cuda or cuda:N "
                                                                               "(default: cpu)") -> None:
    """--device and --precision, checked by argparse: a bad value is named with the choices, exit code 2."""
    parser.add_argument("--device", default="cpu", type=torch_device, help=device_help)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS,
                        help="auto (per device; an ONNX export's default), fp32, bf16 or fp16 (CUDA only) on torch; "
                             "fp32 or int8 on onnx; fp32, fp16 (auto) or int8 on tensorrt")
    add_fast_path_arguments(parser)


def add_fast_path_arguments(parser) -> None:
    """--compile, --overlap-decode and --decoder: the latent generator's fast path (EngineConfig.compile,
    overlap_decode, decoder; all three on torch, --overlap-decode also on onnx)."""
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the denoiser and decoder for each planned chunk length before the first "
                             "chunk (the latent model on torch; takes minutes on a CPU)")
    parser.add_argument("--overlap-decode", action="store_true",
                        help="decode a chunk while the next one is denoised (the latent model on torch or onnx: a "
                             "second CUDA stream, or a second thread on the CPU)")
    parser.add_argument("--decoder", default="full", choices=("full", "tiny"),
                        help="full (the autoencoder's decoder, default) or tiny (the model's TAESD-layout tiny decoder, "
                             "cheaper; a model whose preset has one)")


def fast_path_options(args: argparse.Namespace) -> dict:
    """The EngineConfig fields that add_fast_path_arguments' flags set."""
    return {"compile": args.compile, "overlap_decode": args.overlap_decode, "decoder": args.decoder}


def torch_device(text: str) -> str:
    """'cpu', 'cuda' or 'cuda:N'; anything else is an argparse error that lists them."""
    if text in ("cpu", "cuda") or re.fullmatch(r"cuda:\d+", text):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not a device: use cpu, cuda or cuda:N")


def model_spec_from_args(args: argparse.Namespace) -> ModelSpec:
    """The ModelSpec the arguments name, which checks the model itself when made (engine/model_spec.py); sets
    OpenCV's threads, and torch's for a torch model, when --threads is given (onnxruntime's are set per session
    from the EngineConfig).
    AvatarError with what to do when the flags do not go together or name no usable model."""
    if args.threads is not None and args.threads < 1:
        raise AvatarError(f"--threads must be at least 1, got {args.threads}")
    spec = _spec_from_args(args)
    if args.threads is not None:
        import cv2

        cv2.setNumThreads(args.threads)
        if spec.backend == "torch":
            import torch

            torch.set_num_threads(args.threads)
    return spec


def _spec_from_args(args: argparse.Namespace) -> ModelSpec:
    if not (args.preset or args.random_weights):
        return ModelSpec(args.model, backend=args.backend)
    if args.model:
        raise AvatarError("give either --model or --preset with --random-weights, not both")
    if not (args.preset and args.random_weights):
        raise AvatarError("--preset builds an untrained network: add --random-weights (or use --model for trained weights)")
    return ModelSpec(args.preset, random_weights=True, backend=args.backend)
