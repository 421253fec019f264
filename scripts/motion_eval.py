"""Evaluate a motion model in motion space on held-out `dataset synth` clips (avatar_desktop/eval/motion.py), with
its speed on one thread, and optionally a plot of mouth_open generated against the record for the first clip.

    .venv/bin/python scripts/motion_eval.py MODEL DATA [--clips 20] [--minutes 10] [--sampler heun --steps 12]
                                            [--json OUT.json] [--plot OUT.png]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np

from avatar_desktop.config import EngineConfig
from avatar_desktop.data.clips import load_clip
from avatar_desktop.engine.motion_stream import MotionStreamer
from avatar_desktop.eval.motion import MOUTH, evaluate_motion, speed, stream_codes
from avatar_desktop.models.store import load_motion_model
from avatar_desktop.motion_code import motion_code_from_record
from avatar_desktop.training.data import training_clips


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("--clips", type=int, default=20)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sampler", default=None, help="override the model's sampler (heun: the teacher's)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args()
    model = load_motion_model(args.model)
    if args.sampler:  # evaluate_motion runs the model's own sampler: point it at the one asked for
        sampling = dataclasses.replace(model.config.sampling, sampler=args.sampler,
                                       steps=args.steps or model.config.sampling.steps,
                                       teacher_steps=args.steps or model.config.sampling.teacher_steps)
        model.config = dataclasses.replace(model.config, sampling=sampling)
    report = evaluate_motion(model, args.data, clips=args.clips, minutes=args.minutes)
    report["speed_frames_per_second_one_thread"] = speed(model)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    if args.plot:
        _plot(model, args.data, args.plot)


def _plot(model, data: Path, out: Path) -> None:
    """mouth_open of the first held-out clip, record (black) against generated (red), drawn with OpenCV."""
    clip = load_clip(training_clips(data, "heldout")[0], with_frames=False)
    code, sliders = motion_code_from_record(clip.record)
    streamer = MotionStreamer(model, EngineConfig())
    generated = stream_codes(streamer, clip.audio.astype(np.float32), np.asarray(clip.record["state"]), sliders)
    width, height, margin = 1000, 300, 40
    canvas = np.full((height, width, 3), 255, np.uint8)
    cv2.rectangle(canvas, (margin, margin), (width - 10, height - margin), (0, 0, 0), 1)

    def points(values: np.ndarray) -> np.ndarray:
        x = margin + np.arange(len(values)) / max(1, len(values) - 1) * (width - 10 - margin)
        y = height - margin - np.clip(values, 0, 1) * (height - 2 * margin)
        return np.stack([x, y], axis=1).round().astype(np.int32)

    cv2.polylines(canvas, [points(code[:, MOUTH])], False, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.polylines(canvas, [points(generated[:, MOUTH])], False, (0, 0, 220), 1, cv2.LINE_AA)
    font = cv2.FONT_HERSHEY_SIMPLEX
    title = f"{clip.path.name}: mouth_open, record (black) vs generated (red), {len(code) / model.config.fps:.0f} s"
    cv2.putText(canvas, title, (margin, 25), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "1", (15, margin + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(canvas, "0", (15, height - margin), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.imwrite(str(out), canvas)


if __name__ == "__main__":
    main()
