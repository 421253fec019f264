"""Evaluation of a motion model in motion space, on held-out `dataset synth` clips (no rendering).

The model is driven as the live app drives it: each clip's audio one video frame at a time through MotionStreamer,
with the state label and sliders of the next frame to be generated. Numbers (all from the generated codes against
the clip's record, motion_code.motion_code_from_record):

lip_sync:  `pearson` of mouth_open over all frames of the clips (and `pearson_speaking`, over speaking frames only),
           `best_lag_frames` / `pearson_at_best_lag`; `closure_rate` of p/b/m phonemes (mouth_open < 0.15 in a frame
           they cover) next to `closure_chance` (the same windows moved elsewhere), and the record's own rate.
states:    `listening_mouth_closed`, `idle_mouth_closed`: share of those frames with mouth_open < 0.15;
           `head_std` per state: standard deviation of yaw, pitch, roll (code units), generated and recorded;
           `blinks_per_minute` generated and recorded (a blink: blink_left rising through 0.5).
long_run:  `minutes` of the clips' audio looped, statistics of its first and last minute (drift).
speed:     frames per second of MotionStreamer on one thread, per chunk length, student and teacher sampler.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from avatar_desktop.config import EXPRESSION_COMPONENTS, EngineConfig, State
from avatar_desktop.data.clips import load_clip
from avatar_desktop.engine.motion_stream import MotionStreamer
from avatar_desktop.eval.metrics import (
    CLOSED_OPENING,
    closure_rate,
    closure_windows,
    lagged_correlation,
    pearson,
)
from avatar_desktop.models.motion import MotionModel
from avatar_desktop.motion_code import MOTION_INDEX, motion_code_from_record
from avatar_desktop.training.data import training_clips

MOUTH = MOTION_INDEX["mouth_open"]
BLINK = MOTION_INDEX["blink_left"]
HEAD = [MOTION_INDEX[name] for name in ("head_yaw", "head_pitch", "head_roll")]


def stream_codes(streamer: MotionStreamer, audio: np.ndarray, labels: np.ndarray, sliders: np.ndarray) -> np.ndarray:
    """Drive `streamer` (reset first) with float32 (S,) audio, 640 samples at a time, and per-frame labels (F,) and
    sliders (F, E); returns the generated codes (F, D)."""
    streamer.reset()
    frames = len(labels)
    per_frame = streamer.samples_per_frame
    chunks = []

    def condition() -> tuple[State, dict[str, float]]:
        index = min(streamer.frame_index, frames - 1)
        return State(int(labels[index])), dict(zip(EXPRESSION_COMPONENTS, map(float, sliders[index])))

    for start in range(0, frames * per_frame, per_frame):
        streamer.push_audio(audio[start : start + per_frame])
        while (chunk := streamer.step(None, *condition())) is not None:
            chunks.append(chunk.codes)
    while (chunk := streamer.step(None, *condition(), end_of_stream=True)) is not None:
        chunks.append(chunk.codes)
    return np.concatenate(chunks)[:frames]


def _blinks_per_minute(blink: np.ndarray, fps: int) -> float:
    rises = np.count_nonzero((blink[1:] >= 0.5) & (blink[:-1] < 0.5))
    return float(rises / (len(blink) / fps / 60))


def _state_numbers(generated: np.ndarray, truth: np.ndarray, labels: np.ndarray, fps: int) -> dict[str, Any]:
    numbers: dict[str, Any] = {}
    for state in State:
        frames = labels == int(state)
        if not frames.any():
            continue
        name = state.name.lower()
        if state != State.SPEAKING:
            numbers[f"{name}_mouth_closed"] = float(np.mean(generated[frames, MOUTH] < CLOSED_OPENING))
            numbers[f"{name}_mouth_closed_record"] = float(np.mean(truth[frames, MOUTH] < CLOSED_OPENING))
        numbers[f"head_std_{name}"] = {"generated": generated[frames][:, HEAD].std(0).round(4).tolist(),
                                       "record": truth[frames][:, HEAD].std(0).round(4).tolist()}
    numbers["blinks_per_minute"] = {"generated": _blinks_per_minute(generated[:, BLINK], fps),
                                    "record": _blinks_per_minute(truth[:, BLINK], fps)}
    return numbers


def _window_numbers(generated: np.ndarray, truth: np.ndarray, fps: int) -> dict[str, float]:
    return {"mouth_pearson": pearson(generated[:, MOUTH], truth[:, MOUTH]),
            "mouth_mean": float(generated[:, MOUTH].mean()), "mouth_std": float(generated[:, MOUTH].std()),
            "head_std": generated[:, HEAD].std(0).round(4).tolist(),
            "head_mean": generated[:, HEAD].mean(0).round(4).tolist(),
            "blinks_per_minute": _blinks_per_minute(generated[:, BLINK], fps)}


def speed(model: MotionModel, *, sampler: str | None = None, steps: int | None = None,
          lengths: tuple[int, ...] = (1, 4, 16), seconds: float = 1.0) -> dict[str, float]:
    """Frames per second of MotionStreamer._generate (audio tokens + sampling) on one thread, per chunk length."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = {}
        for length in lengths:
            streamer = MotionStreamer(model, EngineConfig(sampler=sampler, steps=steps, fixed_chunk=length))
            streamer.prepare()
            streamer.push_audio(np.zeros(streamer.samples_per_frame * 1000, np.float32))
            frames, clock = 0, time.perf_counter()
            while time.perf_counter() - clock < seconds:
                streamer._generate(length, State.SPEAKING)
                frames += length
                if streamer.frame_index > 900:
                    streamer.reset()
                    streamer.push_audio(np.zeros(streamer.samples_per_frame * 1000, np.float32))
            results[f"chunk_{length}"] = round(frames / (time.perf_counter() - clock), 1)
        return results
    finally:
        torch.set_num_threads(threads)


def evaluate_motion(model: MotionModel, data: Path, *, clips: int = 20, minutes: float = 10.0,
                    seed: int = 0, split: str = "heldout") -> dict[str, Any]:
    """The numbers of this module's docstring for the first `clips` clips of `split` in the data set `data`."""
    fps = model.config.fps
    streamer = MotionStreamer(model, EngineConfig(seed=seed))
    streamer.prepare(warmup=False)
    generated, truth, labels, audio, sliders = [], [], [], [], []
    windows, shifted, recorded_closure = [], 0, []
    for path in training_clips(data, split)[:clips]:
        clip = load_clip(path, with_frames=False)
        code, clip_sliders = motion_code_from_record(clip.record)
        clip_labels = np.asarray(clip.record["state"])
        clip_audio = clip.audio.astype(np.float32)
        codes = stream_codes(streamer, clip_audio, clip_labels, clip_sliders)
        clip_windows = closure_windows(clip.record["phoneme_start"], clip.record["phoneme_end"],
                                       clip.record["phoneme_viseme"], len(code), fps)
        recorded_closure.append(closure_rate(code[:, MOUTH], clip_windows)[0])
        windows += [(a + shifted, b + shifted) for a, b in clip_windows]
        shifted += len(code)
        generated.append(codes)
        truth.append(code)
        labels.append(clip_labels)
        audio.append(clip_audio)
        sliders.append(clip_sliders)
    all_generated, all_truth, all_labels = np.concatenate(generated), np.concatenate(truth), np.concatenate(labels)
    speaking = all_labels == int(State.SPEAKING)
    rate, chance = closure_rate(all_generated[:, MOUTH], windows)
    lag, at_lag = lagged_correlation(all_generated[:, MOUTH], all_truth[:, MOUTH])
    report: dict[str, Any] = {
        "clips": len(generated), "split": split, "frames": len(all_labels),
        "lip_sync": {
            "pearson": pearson(all_generated[:, MOUTH], all_truth[:, MOUTH]),
            "pearson_speaking": pearson(all_generated[speaking, MOUTH], all_truth[speaking, MOUTH]),
            "pearson_per_clip_mean": float(np.mean([pearson(g[:, MOUTH], t[:, MOUTH])
                                                    for g, t in zip(generated, truth)])),
            "best_lag_frames": lag, "pearson_at_best_lag": at_lag,
            "closure_rate": rate, "closure_chance": chance,
            "closure_rate_record": float(np.nanmean(recorded_closure)),
            "phonemes_pbm": len(windows),
        },
        "states": _state_numbers(all_generated, all_truth, all_labels, fps),
    }
    if minutes > 0:
        report["long_run"] = _long_run(streamer, audio, labels, sliders, truth, minutes, fps)
    return report


def _long_run(streamer: MotionStreamer, audio, labels, sliders, truth, minutes: float, fps: int) -> dict[str, Any]:
    """Statistics of the first and last minute of `minutes` of the clips looped in one stream."""
    frames = int(minutes * 60 * fps)
    repeats = -(-frames // sum(len(x) for x in labels))
    looped_labels = np.concatenate(labels * repeats)[:frames]
    looped_truth = np.concatenate(truth * repeats)[:frames]
    codes = stream_codes(streamer, np.concatenate(audio * repeats), looped_labels,
                         np.concatenate(sliders * repeats)[:frames])
    window = min(60 * fps, frames // 2)
    return {"minutes": minutes,
            "first_minute": _window_numbers(codes[:window], looped_truth[:window], fps),
            "last_minute": _window_numbers(codes[-window:], looped_truth[-window:], fps)}
