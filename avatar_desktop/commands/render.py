"""`avatar-desktop render`: portrait + audio file -> MP4 of the portrait speaking, audio muxed in."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from avatar_desktop.commands.model_args import (
    add_fast_path_arguments,
    add_model_arguments,
    fast_path_options,
    model_spec_from_args,
)
from avatar_desktop.commands.registry import command
from avatar_desktop.audio.vad import speech_states
from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State, parse_expression
from avatar_desktop.engine.model_spec import open_generator
from avatar_desktop.engine.portrait import load_portrait
from avatar_desktop.errors import AvatarError, InputFileError
from avatar_desktop.media import Mp4Writer, check_video_output, decode_audio


def _add(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--portrait", required=True, type=Path, help="image file of the face to animate")
    parser.add_argument("--audio", required=True, type=Path, help="speech (WAV or any audio file; any rate, any channels)")
    parser.add_argument("--out", required=True, type=Path, help="output .mp4 (its folder is created if needed)")
    parser.add_argument("--force", action="store_true", help="overwrite --out if it exists")
    add_model_arguments(parser)
    parser.add_argument("--state", default="auto", help="auto (from the audio), speaking, listening or idle")
    parser.add_argument("--expression", default="", help="e.g. smile=0.5,brow=-0.2 (components in [-1, 1])")
    parser.add_argument("--seed", type=int, default=0)
    add_fast_path_arguments(parser)


def _run(args: argparse.Namespace) -> int:
    try:
        expression = parse_expression(args.expression)
        fixed_state = None if args.state == "auto" else State.parse(args.state)
    except ValueError as error:
        raise AvatarError(str(error)) from None
    check_video_output(args.out, overwrite=args.force)
    portrait = load_portrait(args.portrait)
    audio = decode_audio(args.audio)
    if len(audio) == 0:
        raise InputFileError(f"audio file {args.audio} holds no samples: give a file with speech in it")
    spec = model_spec_from_args(args)
    generator = open_generator(spec, portrait, EngineConfig(seed=args.seed, threads=args.threads, **fast_path_options(args)),
                               expression=expression, source=str(args.portrait))
    print(f"render: {generator.path}, {generator.resolution} px", file=sys.stderr)
    if generator.notice:
        print(f"render: {generator.notice}", file=sys.stderr)
    total_frames = round(len(audio) / generator.samples_per_frame)
    if total_frames == 0:
        raise InputFileError(
            f"audio file {args.audio} lasts {len(audio) / SAMPLE_RATE * 1000:.0f} ms, shorter than one video frame "
            f"({1000 / generator.fps:.0f} ms)"
        )
    if fixed_state is None:  # silero-vad: speaking where there is speech, idle elsewhere
        labels = speech_states(audio, total_frames, generator.fps)
    else:
        labels = np.full(total_frames, fixed_state)
    with Mp4Writer(args.out, size=generator.frame_size, fps=generator.fps, audio_path=args.audio) as writer, tqdm(
        total=total_frames, unit="frame", desc="render", disable=None
    ) as progress:
        pending: np.ndarray | None = audio
        while generator.frame_index < total_frames:
            chunk = generator.step(pending, labels[generator.frame_index], end_of_stream=True)
            pending = None
            writer.write(chunk.frames)
            progress.update(len(chunk.frames))
    print(f"wrote {args.out} ({writer.frames_written} frames at {generator.fps} fps)")
    return 0


command("render", "Render a portrait speaking an audio file to an MP4")((_add, _run))
