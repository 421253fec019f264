"""The evaluation report: run a frame source over ground-truth clips and collect every metric into one dict.

A frame source makes video from what a model gets (portrait, audio, state labels, expression sliders). Sources
are registered by name: a model folder through the streaming engine, and baselines that bound the scale:
`ground-truth` (the renderer's own frames: a perfect score), `static` (the portrait, never moving) and `still-head`
(the true mouth and sliders, but none of the random head motion and blinks that no input determines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
import torch

from avatar_desktop.config import EXPRESSION_COMPONENTS, SAMPLE_RATE, EngineConfig, State
from avatar_desktop.data.clips import Clip, load_clip, load_manifest
from avatar_desktop.data.synthetic import FrameParams, Identity, render_frame
from avatar_desktop.data.timeline import expression_pose
from avatar_desktop.errors import AvatarError
from avatar_desktop.eval import metrics
from avatar_desktop.eval.mouth import MouthCalibration, measure_mouth_raw
from avatar_desktop.files import write_png_atomic

EXPRESSION_VALUES = (-1.0, -0.5, 0.0, 0.5, 1.0)
STILL_FRAMES = 25
"""Silent idle frames a model makes per slider value for the expression response: one second, as a user holds a
slider and watches the face follow."""
SETTLED_FRAMES = 8
"""The last frames of those, averaged into the still: the settled face, with a random blink averaged out."""


class EvaluationError(AvatarError):
    """A data set or option the evaluation cannot work with."""


@dataclass
class Stream:
    """What a frame source is asked to animate: portrait uint8 (H, W, 3), audio float32 (N,) 16 kHz, and per
    frame the state label (T,) and expression sliders (T, 5). `truth` (T0, H, W, 3) holds the ground-truth frames,
    looped when the stream is longer (frame f is truth[f % T0]); only the baselines look at it, and at `record` (the
    clip's record.npz tracks, looped alike) and `identity_seed` (synthetic clips; None for real videos)."""

    portrait: np.ndarray
    audio: np.ndarray
    states: np.ndarray
    expressions: np.ndarray
    fps: int
    truth: np.ndarray
    record: dict[str, np.ndarray] | None = None
    identity_seed: int | None = None

    @property
    def frames(self) -> int:
        return len(self.states)

    def truth_frames(self, indices: np.ndarray) -> np.ndarray:
        return self.truth[np.asarray(indices) % len(self.truth)]


class FrameSource(Protocol):
    name: str

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        """-> the frames whose index is in `keep` (all when None), uint8 (K, H, W, 3) at the stream's size, in
        order, and the first frame of each chunk. A long stream thus never holds all its frames."""

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        """One settled frame (H, W, 3) of the portrait, silent and idle, with the given sliders."""


class GroundTruthSource:
    """The renderer's frames themselves (the upper bound of every metric)."""

    name = "ground-truth"

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        indices = np.arange(stream.frames) if keep is None else keep
        return stream.truth_frames(indices), list(range(0, stream.frames, 4))

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        return truth


class StaticSource:
    """The portrait repeated (no motion at all: the lower bound of lip sync)."""

    name = "static"

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        count = stream.frames if keep is None else len(keep)
        return np.repeat(stream.portrait[None], count, axis=0), list(range(0, stream.frames, 4))

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        return portrait


class StillHeadSource:
    """The renderer's frames with the true mouth and sliders but the head held still: no random head motion, sway or
    blinks, which the audio does not determine. It bounds the appearance a generator can reach by following its
    inputs perfectly without guessing that motion (synthetic clips only)."""

    name = "still-head"

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        return still_head_frames(stream, keep)[0], list(range(0, stream.frames, 4))

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        return truth


def still_head_frames(stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The still-head render of a synthetic stream (StillHeadSource): uint8 frames (K, H, W, 3) for the indices in
    `keep` (all when None) and their mouth boxes (K, 4) in pixels."""
    if stream.record is None or stream.identity_seed is None:
        raise EvaluationError("the still-head baseline needs synthetic clips (made by `avatar-desktop dataset synth`)")
    identity = Identity.from_seed(stream.identity_seed)
    record, size = stream.record, stream.portrait.shape[0]
    frames, boxes = [], []
    for index in (np.arange(stream.frames) if keep is None else keep):
        f = index % len(record["mouth_open"])
        yaw, pitch = expression_pose(record["expression"][f])
        width, rounding, teeth = map(float, record["mouth_shape"][f])
        params = FrameParams(mouth_opening=float(record["mouth_open"][f]), mouth_width=width,
                             mouth_rounding=rounding, teeth=teeth, expression=record["expression"][f],
                             head_yaw=float(yaw), head_pitch=float(pitch))
        frame, geometry = render_frame(identity, params, size)
        frames.append(frame)
        boxes.append(geometry.mouth_box)
    return np.stack(frames), np.array(boxes, np.float64)


class ModelSource:
    """A model through the streaming engine: audio fed one video frame at a time, with that frame's label and
    sliders, as the live app does."""

    def __init__(self, model_name: str, engine: EngineConfig, backend: str | None = None) -> None:
        from avatar_desktop.engine.model_spec import ModelSpec, latent_generator

        self.name = str(model_name)
        self.generator = latent_generator(ModelSpec(model_name, backend=backend), engine)
        self._prepared_for: bytes | None = None

    def _prepare(self, portrait: np.ndarray) -> None:
        key = portrait.tobytes()
        if key != self._prepared_for:
            self.generator.prepare(portrait)
            self._prepared_for = key
        self.generator.reset()

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        self._prepare(stream.portrait)
        size = stream.portrait.shape[0]
        per_frame = SAMPLE_RATE // stream.fps
        wanted = np.ones(stream.frames, bool) if keep is None else np.isin(np.arange(stream.frames), keep)
        frames: list[np.ndarray] = []
        starts: list[int] = []

        def collect(chunk) -> None:
            starts.append(chunk.start_frame)
            for index, frame in enumerate(chunk.frames, start=chunk.start_frame):
                if index < stream.frames and wanted[index]:
                    frames.append(frame if frame.shape[0] == size else
                                  cv2.resize(frame, (size, size), interpolation=cv2.INTER_LINEAR))

        for index in range(stream.frames):
            sliders = dict(zip(EXPRESSION_COMPONENTS, map(float, stream.expressions[index])))
            chunk = self.generator.step(stream.audio[index * per_frame:(index + 1) * per_frame],
                                        State(int(stream.states[index])), sliders)
            while chunk is not None:
                collect(chunk)
                chunk = self.generator.step(None, State(int(stream.states[index])), sliders)
        last = State(int(stream.states[-1]))
        while (chunk := self.generator.step(None, last, end_of_stream=True)) is not None:
            collect(chunk)
        generated = np.stack(frames)
        missing = int(wanted.sum()) - len(generated)
        if missing > 0:  # the engine rounds the stream length; hold the last frame
            generated = np.concatenate([generated, np.repeat(generated[-1:], missing, 0)])
        return generated, starts

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        """The mean of the last SETTLED_FRAMES of STILL_FRAMES silent idle frames made with the sliders set."""
        fps = self.generator.fps
        sliders = np.array([expression.get(n, 0.0) for n in EXPRESSION_COMPONENTS], np.float32)
        silence = Stream(portrait=portrait, audio=np.zeros(STILL_FRAMES * SAMPLE_RATE // fps, np.float32),
                         states=np.full(STILL_FRAMES, int(State.IDLE)), expressions=np.tile(sliders, (STILL_FRAMES, 1)),
                         fps=fps, truth=portrait[None])
        frames, _ = self.generate(silence)
        return frames[-SETTLED_FRAMES:].mean(axis=0).round().astype(np.uint8)


class AutoencoderSource:
    """The ground-truth frames through a model's autoencoder, encoded and decoded: the best any generator with
    that autoencoder can score (the ceiling its blur sets)."""

    def __init__(self, model_name: str, device: str = "cpu") -> None:
        from avatar_desktop.models.store import load_model

        self.name = f"{model_name} (autoencoder only)"
        self.device = torch.device(device)
        self.autoencoder = load_model(model_name, device=device).autoencoder.eval()

    @torch.no_grad()
    def _round_trip(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        out = []
        for start in range(0, len(frames), batch):
            images = torch.from_numpy(frames[start:start + batch]).to(self.device).permute(0, 3, 1, 2).float() / 127.5 - 1
            decoded = self.autoencoder.decode(self.autoencoder.encode(images))
            out.append(((decoded.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy())
        return np.concatenate(out)

    def generate(self, stream: Stream, keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
        indices = np.arange(stream.frames) if keep is None else keep
        return self._round_trip(stream.truth_frames(indices)), list(range(0, stream.frames, 4))

    def still(self, portrait: np.ndarray, expression: dict[str, float], truth: np.ndarray) -> np.ndarray:
        return self._round_trip(truth[None])[0]


def frame_source(model: str, engine: EngineConfig, *, autoencoder_only: bool = False,
                 backend: str | None = None) -> FrameSource:
    """'ground-truth', 'static', 'still-head', or a model name/folder (loaded through the engine on `backend`, the
    folder's by default, or only its autoencoder)."""
    if model == GroundTruthSource.name:
        return GroundTruthSource()
    if model == StillHeadSource.name:
        return StillHeadSource()
    if model == StaticSource.name:
        return StaticSource()
    if autoencoder_only:
        return AutoencoderSource(model, engine.device)
    return ModelSource(model, engine, backend)


def clip_stream(clip: Clip, frames: int | None = None) -> Stream:
    """The clip as a stream, looped to `frames` frames (default: its own length)."""
    frames = frames or len(clip.frames)
    repeats = -(-frames // len(clip.frames))
    return Stream(portrait=clip.portrait(), audio=np.tile(clip.audio, repeats)[: frames * SAMPLE_RATE
                                                                                      // clip.fps],
                  states=np.tile(clip.record["state"], repeats)[:frames],
                  expressions=np.tile(clip.record["expression"], (repeats, 1))[:frames],
                  fps=clip.fps, truth=clip.frames, record=clip.record,
                  identity_seed=int(clip.meta["identity_seed"]) if "identity_seed" in clip.meta else None)


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _median_lag(lags: list[int | None]) -> int | None:
    found = [lag for lag in lags if lag is not None]
    return int(np.median(found)) if found else None


PER_CLIP_KEYS = ("pearson", "closure_rate", "listening_closed", "idle_closed")
"""The lip-sync and state metrics the report also gives clip by clip ("per_clip"): their spread over clips says how
far apart two models' means must be to differ (two exports compared on the same clips: their paired differences)."""


def evaluate_clips(clips: list[Clip], source: FrameSource, *, max_lag: int = 8) -> dict[str, Any]:
    """Every per-clip metric, averaged over clips (the lip-sync and state ones also clip by clip, PER_CLIP_KEYS);
    also returns the mouth traces of the first clip for the plot.

    Lip sync compares the opening measured on the generated frames with the opening measured, by the same
    calibrated measurer, on the ground-truth frames: the measurer's own error (reported as measurer.ground_truth_r,
    its correlation with the renderer's recorded opening) then does not count against the model.
    On synthetic clips the appearance is also measured against the still-head render (`appearance_still_head`):
    the truth without the random head motion, sway and blinks that no input determines, which caps the appearance
    against the truth itself (the still-head baseline scores about 24 dB outside the mouth there).
    """
    openings = np.concatenate([c.record["mouth_open"] for c in clips])
    has_truth = bool(np.isfinite(openings).all() and openings.max() > openings.min())  # else no lip sync to score
    calibration, truth_raw = None, []
    if has_truth:
        truth_raw = [measure_mouth_raw(c.frames, c.record["mouth_box"]) for c in clips]
        calibration = MouthCalibration.fit(np.concatenate(truth_raw), openings)
    rows: list[dict[str, float]] = []
    trace: dict[str, list[float]] = {}
    for index, clip in enumerate(clips):
        stream = clip_stream(clip)
        generated, starts = source.generate(stream)
        row = {**metrics.appearance(generated, clip.frames, clip.record["mouth_box"]),
               "flicker": metrics.flicker(generated, clip.frames),
               "chunk_boundary_ratio": metrics.chunk_boundary_ratio(generated, starts)}
        if "identity_seed" in clip.meta:
            still, still_boxes = still_head_frames(stream)
            row.update({f"still_head_{key}": value
                        for key, value in metrics.appearance(generated, still, still_boxes).items()})
        if calibration is not None:
            opening = calibration.apply(measure_mouth_raw(generated, clip.record["mouth_box"]))
            truth = calibration.apply(truth_raw[index])
            lag, lag_r = metrics.lagged_correlation(opening, truth, max_lag)
            windows = metrics.closure_windows(clip.record["phoneme_start"], clip.record["phoneme_end"],
                                              clip.record["phoneme_viseme"], len(truth), clip.fps)
            rate, chance = metrics.closure_rate(opening, windows)
            row.update(pearson=metrics.pearson(opening, truth), best_lag=lag, pearson_at_best_lag=lag_r,
                       closure_rate=rate, closure_chance=chance,
                       listening_closed=metrics.closed_share(opening, clip.record["state"], State.LISTENING),
                       idle_closed=metrics.closed_share(opening, clip.record["state"], State.IDLE))
            if not trace:
                trace = {"generated": opening.tolist(), "truth": truth.tolist(), "clip": clip.meta.get("id")}
        rows.append(row)
    keys = {key for row in rows for key in row}
    summary = {key: _mean([row.get(key) for row in rows]) for key in keys}
    appearance_keys = ("psnr_mouth", "psnr_outside", "ssim_mouth", "ssim_outside")
    report: dict[str, Any] = {
        "appearance": {k: summary[k] for k in appearance_keys},
        "appearance_still_head": ({k: summary[f"still_head_{k}"] for k in appearance_keys}
                                  if "still_head_psnr_outside" in summary else None),
        "temporal": {k: summary[k] for k in ("flicker", "chunk_boundary_ratio")},
        "lip_sync": None, "states": None, "measurer": None, "per_clip": None,
    }
    if calibration is not None:
        report["lip_sync"] = {"pearson": summary["pearson"],
                              "best_lag_frames": _median_lag([row["best_lag"] for row in rows]),
                              "pearson_at_best_lag": summary["pearson_at_best_lag"],
                              "closure_rate": summary["closure_rate"], "closure_chance": summary["closure_chance"]}
        report["states"] = {"listening_mouth_closed": summary["listening_closed"],
                            "idle_mouth_closed": summary["idle_closed"]}
        report["measurer"] = {"slope": calibration.slope, "intercept": calibration.intercept,
                              "ground_truth_r": calibration.fit_r}
        report["per_clip"] = {str(clip.meta.get("id", index)): {key: _mean([row[key]]) for key in PER_CLIP_KEYS}
                              for index, (clip, row) in enumerate(zip(clips, rows))}  # None: no such frames
    return {"report": report, "trace": trace}


EXPRESSION_CHARACTERS = 3
"""Characters (the first distinct ones among the chosen clips) whose slider effects are averaged: on one alone, a
slider the model barely follows gets its sign from that character's noise."""


def expression_response(clips: list[Clip], source: FrameSource) -> tuple[dict[str, float], dict[str, float]] | None:
    """Per slider, over up to EXPRESSION_CHARACTERS characters: (Spearman correlation between its value and its
    mean measured effect, gain). The effect is how far the source's frame moves from its neutral frame along the
    renderer's own direction for that slider (truth(+1) - truth(-1)); the gain is effect(+1) - effect(-1), so 1 is
    the renderer's full effect and 0 none. None without synthetic clips."""
    by_character: dict[int, Clip] = {}
    for clip in clips:
        if "identity_seed" in clip.meta:
            by_character.setdefault(int(clip.meta["identity_seed"]), clip)
    chosen = list(by_character.values())[:EXPRESSION_CHARACTERS]
    if not chosen:
        return None
    effects = np.array([_slider_effects(clip, source) for clip in chosen]).mean(axis=0)  # (sliders, values)
    values = np.array(EXPRESSION_VALUES)
    low, high = EXPRESSION_VALUES.index(-1.0), EXPRESSION_VALUES.index(1.0)
    response = {name: metrics.spearman(values, row) for name, row in zip(EXPRESSION_COMPONENTS, effects)}
    gain = {name: float(row[high] - row[low]) for name, row in zip(EXPRESSION_COMPONENTS, effects)}
    return response, gain


def _slider_effects(clip: Clip, source: FrameSource) -> list[list[float]]:
    """The measured effect (metrics.expression_effect) of each slider at each of EXPRESSION_VALUES on the clip's
    character: (sliders, values)."""
    identity = Identity.from_seed(int(clip.meta["identity_seed"]))
    size = clip.frames.shape[1]
    portrait = clip.portrait()
    neutral = source.still(portrait, {}, portrait)
    result = []
    for index, name in enumerate(EXPRESSION_COMPONENTS):
        truths = {}
        for value in EXPRESSION_VALUES:
            sliders = np.zeros(len(EXPRESSION_COMPONENTS), np.float32)
            sliders[index] = value
            yaw, pitch = expression_pose(sliders)
            truths[value], _ = render_frame(identity, FrameParams(expression=sliders, head_yaw=yaw,
                                                                  head_pitch=pitch), size)
        direction = truths[1.0].astype(np.float64) - truths[-1.0]
        stills = {v: source.still(portrait, {name: v}, truths[v]) if v else neutral for v in EXPRESSION_VALUES}
        result.append([metrics.expression_effect(stills[v], stills[0.0], direction) for v in EXPRESSION_VALUES])
    return result


def long_run(clip: Clip, source: FrameSource, minutes: float) -> dict[str, float]:
    """Appearance over the first window against the last window of a stream of `minutes` (the clip looped);
    the window is one minute, or half the stream when shorter."""
    total = max(2, int(round(minutes * 60 * clip.fps)))
    stream = clip_stream(clip, total)
    window = min(60 * clip.fps, total // 2)
    first, last = np.arange(window), np.arange(total - window, total)
    generated, _ = source.generate(stream, np.concatenate([first, last]))
    boxes = clip.record["mouth_box"]
    first = metrics.appearance(generated[:window], stream.truth_frames(first), boxes[first % len(boxes)])
    last = metrics.appearance(generated[window:], stream.truth_frames(last), boxes[last % len(boxes)])
    return {"minutes": total / clip.fps / 60, "window_seconds": window / clip.fps,
            **{f"first_{k}": v for k, v in first.items()}, **{f"last_{k}": v for k, v in last.items()}}


def evaluate(data: Path, source: FrameSource, *, clips: int = 4, seed: int = 0, minutes: float = 0.0,
             max_lag: int = 8) -> dict[str, Any]:
    """The full report for `source` on up to `clips` clips of the data set (held-out clips first, then the rest,
    in a seeded order). Returns {"report": ..., "trace": ...}; the report names model, data, seed, clips."""
    manifest = load_manifest(data)
    entries = manifest["clips"]
    if not entries:
        raise EvaluationError(f"{data}: the data set has no clips")
    order = np.random.default_rng(seed).permutation(len(entries))
    ranked = sorted(order, key=lambda i: entries[i].get("split") != "heldout")
    chosen = [load_clip(Path(data) / entries[i]["path"]) for i in ranked[: max(1, clips)]]
    result = evaluate_clips(chosen, source, max_lag=max_lag)
    expression = expression_response(chosen, source)
    report = {"model": source.name, "data": str(data), "seed": seed, "clips": [c.meta.get("id") for c in chosen],
              **result["report"],
              "expression_response": expression[0] if expression else None,
              "expression_gain": expression[1] if expression else None,
              "long_run": long_run(chosen[0], source, minutes) if minutes > 0 else None}
    return {"report": report, "trace": result["trace"]}


def plot_trace(trace: dict[str, Any], path: Path, fps: int = 25, width: int = 960, height: int = 320) -> None:
    """PNG of the measured mouth opening over time, ground-truth frames (green) against generated frames
    (magenta), drawn with OpenCV."""
    if not trace:
        raise EvaluationError("nothing to plot: the data has no ground-truth mouth opening")
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, width - 10, 30, height - 30
    cv2.rectangle(image, (left, top), (right, bottom), (0, 0, 0), 1)
    truth, generated = np.array(trace["truth"]), np.array(trace["generated"])
    low, high = min(0.0, generated.min(), truth.min()), max(1.0, generated.max(), truth.max())

    def points(values: np.ndarray) -> np.ndarray:
        x = left + (right - left) * np.arange(len(values)) / max(1, len(values) - 1)
        y = bottom - (bottom - top) * (values - low) / (high - low)
        return np.round(np.stack([x, y], 1) * 16).astype(np.int32)

    cv2.polylines(image, [points(truth)], False, (0, 160, 0), 2, cv2.LINE_AA, 4)
    cv2.polylines(image, [points(generated)], False, (200, 0, 200), 1, cv2.LINE_AA, 4)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, f"mouth opening measured in clip {trace.get('clip')}: ground-truth frames (green), "
                       "generated frames (magenta)",
                (left, 20), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(image, f"0 .. {len(truth) / fps:.1f} s", (left, height - 10), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for value in (0.0, 1.0):
        y = int(bottom - (bottom - top) * (value - low) / (high - low))
        cv2.putText(image, f"{value:.0f}", (10, y + 5), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    write_png_atomic(path, image)
