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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    clip = load_clip(training_clips(data, "heldout")[0], with_frames=False)
    code, sliders = motion_code_from_record(clip.record)
    streamer = MotionStreamer(model, EngineConfig())
    generated = stream_codes(streamer, clip.audio.astype(np.float32), np.asarray(clip.record["state"]), sliders)
    seconds = np.arange(len(code)) / model.config.fps
    figure, axis = plt.subplots(figsize=(10, 3))
    axis.plot(seconds, code[:, MOUTH], label="record", color="black", linewidth=1)
    axis.plot(seconds, generated[:, MOUTH], label="generated", color="tab:red", linewidth=1)
    axis.set_xlabel("seconds")
    axis.set_ylabel("mouth_open")
    axis.set_title(f"{clip.path.name}: mouth_open, held-out clip")
    axis.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(out, dpi=100)


if __name__ == "__main__":
    main()
