"""A figure of what each expression slider does, for a model card: the renderer's frame (top row) against the
model's settled frame (bottom row, as `eval` measures the expression response), each slider at -1 and +1, at
half size.

    .venv/bin/python scripts/slider_stills.py MODEL DATA OUT.png [--clip N]

MODEL: a model name or folder; DATA: a `dataset synth` folder; --clip: which held-out clip's character (default 0).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, EngineConfig
from avatar_desktop.data.clips import load_clip, load_manifest
from avatar_desktop.data.synthetic import FrameParams, Identity, render_frame
from avatar_desktop.drawn_face import expression_pose
from avatar_desktop.eval.report import ModelSource

VALUES = (-1.0, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--clip", type=int, default=0)
    args = parser.parse_args()

    heldout = [entry for entry in load_manifest(args.data)["clips"] if entry["split"] == "heldout"]
    clip = load_clip(args.data / heldout[args.clip]["path"])
    identity = Identity.from_seed(int(clip.meta["identity_seed"]))
    portrait = clip.portrait()
    source = ModelSource(args.model, EngineConfig())
    truths, stills = [], []
    for index, name in enumerate(EXPRESSION_COMPONENTS):
        for value in VALUES:
            sliders = np.zeros(len(EXPRESSION_COMPONENTS), np.float32)
            sliders[index] = value
            yaw, pitch = expression_pose(sliders)
            params = FrameParams(expression=sliders, head_yaw=float(yaw), head_pitch=float(pitch))
            truth = render_frame(identity, params, portrait.shape[0])[0]
            truths.append(truth)
            stills.append(np.clip(source.still(portrait, {name: value}, truth), 0, 255).astype(np.uint8))
    figure = np.concatenate([np.concatenate(truths, 1), np.concatenate(stills, 1)], 0)
    figure = cv2.resize(figure, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # half size keeps the file small
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(figure, cv2.COLOR_RGB2BGR))
    print(f"{args.out}: columns {', '.join(f'{n} {v:+g}' for n in EXPRESSION_COMPONENTS for v in VALUES)}")


if __name__ == "__main__":
    main()
