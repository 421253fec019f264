"""A strip of what the photo path does with one photo, for the docs: the photo, four speaking frames at different
visemes (p/b/m closed, open, rounded, wide), listening, idle, and each slider at -1 and +1. Every tile after the
photo shows the face (the same crop in all), each labelled.

    .venv/bin/python scripts/photo_strips.py PHOTO OUT.png [--model NAME] [--scale 1] [--seed 0] [--tile 256]

PHOTO: an image file, or `astronaut` for skimage.data.astronaut(); --scale resizes it first (the astronaut's face
is about 94 px wide). The speaking frames come from the speech `eval --photos` uses (20 s, seeded): for each
viseme, the middle frame of its longest run; listening and idle: the middle of their longest segment. A slider
tile is the last frame of 1 s of silence, idle, with that slider held.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from avatar_desktop.config import EXPRESSION_COMPONENTS, EngineConfig, State
from avatar_desktop.data.speech import Viseme
from avatar_desktop.engine.photo import PhotoStreamingGenerator
from avatar_desktop.engine.portrait import load_portrait
from avatar_desktop.eval.photos import drive, photo_speech, silence
from avatar_desktop.models.store import DEFAULT_MOTION_MODEL, load_motion_model

SPEAKING_TILES = ((Viseme.CLOSED, "p/b/m closed"), (Viseme.OPEN, "open (a)"), (Viseme.ROUND, "rounded (o/u)"),
                  (Viseme.WIDE, "wide (i/e)"))
SLIDER_SECONDS = 1.0
LABEL_HEIGHT = 26


def longest_run_middle(mask: np.ndarray) -> int | None:
    """bool (T,) -> the middle index of its longest run of True; None when there is none."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    if not len(edges):
        return None
    starts, ends = edges[::2], edges[1::2]
    longest = int(np.argmax(ends - starts))
    return int((starts[longest] + ends[longest] - 1) // 2)


def face_crop(points: np.ndarray, size: tuple[int, int], margin: float = 0.35) -> tuple[int, int, int, int]:
    """Mesh points (468, 3) in pixels of a frame of `size` (width, height) -> a square box (x0, y0, x1, y1) around
    the face with `margin` of its size added on each side, inside the frame."""
    low, high = points[:, :2].min(axis=0), points[:, :2].max(axis=0)
    width, height = size
    side = min(int(max(high - low) * (1 + 2 * margin)), width, height)
    cx, cy = (low + high) / 2
    x0, y0 = int(np.clip(cx - side / 2, 0, width - side)), int(np.clip(cy - side / 2, 0, height - side))
    return x0, y0, x0 + side, y0 + side


def tile(image: np.ndarray, label: str, size: int) -> np.ndarray:
    """uint8 (h, w, 3) RGB fitted into a size x size square (white sides) above a label band: (size + band, size, 3)."""
    scale = size / max(image.shape[:2])
    resized = cv2.resize(image, (round(image.shape[1] * scale), round(image.shape[0] * scale)),
                         interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    out = np.full((size + LABEL_HEIGHT, size, 3), 255, np.uint8)
    top, left = (size - resized.shape[0]) // 2, (size - resized.shape[1]) // 2
    out[top: top + resized.shape[0], left: left + resized.shape[1]] = resized
    cv2.putText(out, label, (6, size + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default=DEFAULT_MOTION_MODEL, help="motion model name or folder")
    parser.add_argument("--scale", type=float, default=1.0, help="resize the photo by this factor first")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tile", type=int, default=256, help="tile size in pixels")
    args = parser.parse_args()

    if args.photo == "astronaut":
        from skimage import data

        photo = data.astronaut()  # uint8 (512, 512, 3) RGB
    else:
        photo = load_portrait(args.photo)
    if args.scale != 1:
        photo = cv2.resize(photo, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_CUBIC)
    generator = PhotoStreamingGenerator(load_motion_model(args.model), EngineConfig(seed=args.seed))
    generator.prepare(photo, source=args.photo)
    frame_width, _ = generator.frame_size
    face = generator.face.scaled(frame_width / photo.shape[1])  # the mesh in the frames' pixels
    x0, y0, x1, y1 = face_crop(face.points, generator.frame_size)

    speech = photo_speech(20.0, seed=args.seed)
    speaking = speech.states == State.SPEAKING
    wanted: dict[int, str] = {}
    for viseme, label in SPEAKING_TILES:
        index = longest_run_middle(speaking & (speech.viseme == int(viseme)))
        if index is not None:
            wanted[index] = f"speaking: {label}"
    for state in (State.LISTENING, State.IDLE):
        index = longest_run_middle(speech.states == int(state))
        if index is not None:
            wanted[index] = state.name.lower()
    frames = {wanted[index]: frame[y0:y1, x0:x1].copy() for index, frame, _ in drive(generator, speech)
              if index in wanted}
    first_row = [tile(photo, "the photo", args.tile)]
    first_row += [tile(frames[label], label, args.tile) for label in wanted.values()]

    second_row = []
    held = silence(SLIDER_SECONDS)
    for name in EXPRESSION_COMPONENTS:
        for value in (-1.0, 1.0):
            *_, (_, last, _) = drive(generator, held, {name: value})
            second_row.append(tile(last[y0:y1, x0:x1], f"{name} {value:+g}", args.tile))
    width = max(len(first_row), len(second_row)) * args.tile
    rows = [np.pad(np.concatenate(row, 1), ((0, 0), (0, width - len(row) * args.tile), (0, 0)),
                   constant_values=255) for row in (first_row, second_row)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(np.concatenate(rows, 0), cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"{args.out}: {', '.join(wanted.values())}; sliders {', '.join(EXPRESSION_COMPONENTS)} at -1 and +1")


if __name__ == "__main__":
    main()
