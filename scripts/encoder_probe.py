"""How much an audio encoder's tokens say about the mouth, per voice: a linear probe (ridge regression from each
frame's tokens to its mouth_open) fitted on the training clips of a `dataset synth` set, its Pearson r on the
training clips of each engine, on the held-out characters (trained voices) of each engine and on each held-out
voice. It separates what the encoder hears from what the motion generator and the renderer make of it.

    .venv/bin/python scripts/encoder_probe.py MODEL DATA [--json OUT.json]

MODEL: a model folder with an audio encoder (a latent model, an audio stage's output, or a motion model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from avatar_desktop.data.clips import load_manifest
from avatar_desktop.models.store import load_model, load_motion_model, read_any_model_config
from avatar_desktop.training.data import chunk_windows, mouth_clips, training_clips

RIDGE = 10.0
"""The probe's ridge penalty on standardised tokens."""


def engine_of(voice: str) -> str:
    """'flite:kal' -> 'flite'; espeak-ng names have no engine prefix."""
    return voice.split(":")[0] if ":" in voice else "espeak-ng"


def token_rows(model, data: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Tokens (F, N * A) of every frame of the split's clips, their mouth_open (F,), and each frame's group."""
    entries = {entry["path"]: entry for entry in load_manifest(data)["clips"]}
    tokens, mouth, groups = [], [], []
    for path, clip in zip(training_clips(data, split), mouth_clips(data, split)):
        entry = entries[path.relative_to(data).as_posix()]
        voice = entry["voice"]["name"]
        if split == "train":
            group = f"train, {engine_of(voice)}"
        elif entry["heldout_voice"]:
            group = f"held-out voice {voice}"
        else:
            group = f"held-out characters, {engine_of(voice)}"
        windows = chunk_windows(clip.audio, 0, len(clip.mouth), model.config.audio, model.config.fps)
        with torch.no_grad():
            tokens.append(model.audio_encoder(windows[None])[0].flatten(1).numpy())
        mouth.append(clip.mouth[:, 0].numpy())
        groups += [group] * len(clip.mouth)
    return np.concatenate(tokens), np.concatenate(mouth), groups


def probe(model, data: Path) -> dict[str, float]:
    """Pearson r of the probe's mouth_open per group (train groups in-sample)."""
    train_tokens, train_mouth, train_groups = token_rows(model, data, "train")
    mean, scale = train_tokens.mean(0), train_tokens.std(0) + 1e-6

    def design(tokens: np.ndarray) -> np.ndarray:
        return np.c_[(tokens - mean) / scale, np.ones(len(tokens))]

    features = design(train_tokens)
    weights = np.linalg.solve(features.T @ features + RIDGE * np.eye(features.shape[1]), features.T @ train_mouth)
    heldout_tokens, heldout_mouth, heldout_groups = token_rows(model, data, "heldout")
    scores = {}
    for tokens, mouth, groups in ((train_tokens, train_mouth, train_groups),
                                  (heldout_tokens, heldout_mouth, heldout_groups)):
        predicted, groups = design(tokens) @ weights, np.array(groups)
        for group in sorted(set(groups)):
            chosen = groups == group
            scores[group] = float(np.corrcoef(predicted[chosen], mouth[chosen])[0, 1])
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("data", type=Path)
    parser.add_argument("--json", type=Path, help="also write the scores here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = load_motion_model if read_any_model_config(args.model)[0] == "motion" else load_model
    scores = probe(load(args.model), args.data)
    for group, r in scores.items():
        print(f"{group}: r {r:.3f}")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "data": str(args.data), "pearson_r": scores}, indent=1))


if __name__ == "__main__":
    main()
