"""`avatar-desktop live`: a headless live session (microphone -> avatar -> virtual camera) until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from avatar_desktop.commands.model_args import (
    add_engine_arguments,
    add_model_arguments,
    fast_path_options,
    model_spec_from_args,
)
from avatar_desktop.commands.registry import command
from avatar_desktop.config import EngineConfig, State, parse_expression
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import prepare_output_folder, write_json_atomic


def device_arg(text: str) -> str | int:
    """A sounddevice index ('3') or (part of) a device name."""
    return int(text) if text.isdigit() else text


def _add(p: argparse.ArgumentParser) -> None:
    p.add_argument("--portrait", required=True, type=Path, help="portrait image (PNG/JPEG)")
    add_model_arguments(p)
    p.add_argument("--mic", type=device_arg, default=None, help="input device index or name (default: system default)")
    p.add_argument("--far-end", type=device_arg, default=None,
                   help="second input carrying the other side of the call (a loopback/monitor device): -> listening")
    p.add_argument("--audio-out", type=device_arg, default=None,
                   help="output device (a virtual cable) that gets the mic delayed like the video, for lip sync")
    p.add_argument("--camera", choices=("auto", "off"), default="auto", help="virtual camera (default: auto)")
    p.add_argument("--camera-backend", default=None, help="pyvirtualcam backend name (default: the first that works)")
    p.add_argument("--camera-device", default=None, help="camera device, e.g. /dev/video4 (default: any)")
    p.add_argument("--mirror", action="store_true", help="mirror the camera image left-right")
    p.add_argument("--expression", default="", help="e.g. smile=0.5,brow=-0.2 (components in [-1, 1])")
    p.add_argument("--state", default=None, help="force a state (speaking, listening, idle) instead of voice activity")
    add_engine_arguments(p, device_help="torch device for the generator: cpu, cuda or cuda:N (default: cpu)")
    p.add_argument("--chunk", type=int, default=None,
                   help="frames per generated chunk (default: the model's plan); shorter chunks, lower latency")
    p.add_argument("--record", type=Path, default=None, help="also record the camera output to this video file")
    p.add_argument("--force", action="store_true", help="overwrite --record if it exists")
    p.add_argument("--seconds", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--stats-json", type=Path, default=None, help="write the session's stats here when it stops")


def _run(args: argparse.Namespace) -> int:
    from avatar_desktop.audio.capture import CaptureConfig
    from avatar_desktop.engine.portrait import load_portrait
    from avatar_desktop.output.camera import CameraConfig
    from avatar_desktop.runtime.events import EventKind
    from avatar_desktop.runtime.expression import ExpressionState
    from avatar_desktop.runtime.session import LiveSession, RuntimeConfig, SessionConfig

    try:
        expression = parse_expression(args.expression)
        override = State.parse(args.state) if args.state else None
    except ValueError as error:
        raise AvatarError(str(error)) from None
    if args.seconds is not None and not args.seconds > 0:  # also refuses nan
        raise AvatarError(f"--seconds must be > 0, got {args.seconds}")
    if args.chunk is not None and args.chunk < 1:
        raise AvatarError(f"--chunk must be >= 1 frame, got {args.chunk}")
    if args.stats_json is not None:
        prepare_output_folder(args.stats_json.parent, "--stats-json")
    if args.record is not None:
        if args.record.exists() and not args.force:
            raise AvatarError(f"record file {args.record} already exists: add --force to overwrite it, or choose "
                              "another --record")
        prepare_output_folder(args.record.parent, "--record")
    camera = None
    if args.camera == "auto":
        camera = CameraConfig(mirror=args.mirror, backend=args.camera_backend, device=args.camera_device)
    model = model_spec_from_args(args)
    portrait = load_portrait(args.portrait)
    if model.kind == "motion":  # the photo path needs a face: say so now, not from inside the worker
        from avatar_desktop.face import find_face

        find_face(portrait, source=str(args.portrait))
    config = SessionConfig(
        model=model,
        engine=EngineConfig(device=args.device, precision=args.precision, fixed_chunk=args.chunk, threads=args.threads,
                            **fast_path_options(args)),
        mic=CaptureConfig(device=args.mic),
        far_end=CaptureConfig(device=args.far_end) if args.far_end is not None else None,
        camera=camera,
        audio_out=args.audio_out,
        runtime=RuntimeConfig(worker_threads=args.threads),
    )
    sinks = []
    if args.record is not None:
        from avatar_desktop.output.video_file import VideoFileSink

        sinks.append(VideoFileSink(args.record, fps=(camera or CameraConfig()).fps))
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    session = LiveSession(portrait, config, sinks=sinks, expression=ExpressionState(expression))
    failed = False
    try:
        session.start()
        session.set_state_override(override)
        print(f"live: mic {session.status()['mic']!r}, camera {session.status()['camera'] or 'off (preview only)'}; "
              "Ctrl-C stops", file=sys.stderr)
        reported = 0  # the sequence number of the last event printed
        while not done.wait(min(1.0, args.seconds or 1.0)):
            events = session.events.since(reported)
            for event in events:
                print(f"live [{event.t:7.1f} s] {event.kind.value}: {event.message}", file=sys.stderr)
                reported = event.sequence
            if not session.worker_ready.is_set() and any(event.kind is EventKind.MODEL_FAILED for event in events):
                print("live: the model could not be loaded (see above); stopping", file=sys.stderr)
                failed = True
                break
            if args.seconds is not None and session.stats.snapshot()["seconds"] >= args.seconds:
                break
    except KeyboardInterrupt:
        print("live: stopping", file=sys.stderr)
    finally:
        snapshot = session.snapshot() if session.started else None
        session.stop()
        signal.signal(signal.SIGTERM, previous)
    if snapshot is not None:
        _print_summary(snapshot)
        if args.stats_json is not None:
            write_json_atomic(args.stats_json, snapshot)
    return 1 if failed else 0


def _print_summary(stats: dict) -> None:
    latency = stats["generation_latency_ms"]
    mic = stats["mic_to_camera_ms"]
    print(
        f"live: {stats['seconds']:.1f} s, {stats['delivered_fps']} fps delivered, "
        f"{stats['repeated_frames']} repeated ({stats['repeated_ratio']}), generation latency p50 {latency['p50']} ms "
        f"p95 {latency['p95']} ms, mic-to-camera p50 {mic['p50']} ms over {mic['count']} onsets, "
        f"{stats['state_change_count']} state changes, {stats['audio_overflows']} audio overflows, "
        f"{stats['worker_restarts']} worker restarts",
        file=sys.stderr,
    )


command("live", "Headless live session: microphone -> avatar -> virtual camera")((_add, _run))
