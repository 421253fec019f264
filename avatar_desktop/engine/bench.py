"""The streaming benchmark behind `avatar-desktop bench`: steady fps, first-frame latency, frame-time percentiles,
peak memory and a per-stage breakdown, for one model under one engine configuration."""

from __future__ import annotations

import sys
import time
from dataclasses import replace
from typing import Mapping

import cv2
import numpy as np
import torch

from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.models.avatar import AvatarModel


def naive_config(config: EngineConfig, model: AvatarModel) -> EngineConfig:
    """The slow baseline for the same weights: teacher sampler (the checkpoint's teacher_steps unless `config.steps`
    says otherwise), no reference caches, fp32, one chunk length."""
    return replace(
        config, precision="fp32", sampler="heun", cache_reference=False, fixed_chunk=model.config.chunks.steady
    )


def benchmark_portrait(size: int = 512) -> np.ndarray:
    """A deterministic stand-in portrait (uint8 (size, size, 3)): face-like shapes; speed does not depend on content."""
    image = np.full((size, size, 3), (70, 110, 160), np.uint8)
    centre = (size // 2, size // 2)
    cv2.ellipse(image, centre, (size // 4, size // 3), 0, 0, 360, (225, 185, 160), -1, cv2.LINE_AA)
    for dx in (-1, 1):
        cv2.circle(image, (centre[0] + dx * size // 10, centre[1] - size // 12), size // 30, (40, 30, 30), -1, cv2.LINE_AA)
    cv2.ellipse(image, (centre[0], centre[1] + size // 8), (size // 10, size // 40), 0, 0, 360, (150, 60, 60), -1, cv2.LINE_AA)
    return image


def benchmark_audio(seconds: float, seed: int = 0) -> np.ndarray:
    """Speech-like float32 (N,) at 16 kHz: voiced harmonic bursts of syllable length with pauses."""
    rng = np.random.default_rng(seed)
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    pitch = 120 + 30 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = np.clip(np.sin(2 * np.pi * 3.5 * t + rng.uniform(0, 6)), 0, None) * (np.sin(2 * np.pi * 0.25 * t) > -0.6)
    return (0.2 * voiced * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def _peak_memory_mb(device: torch.device) -> float | None:
    """Peak GPU memory allocated by torch, or the process's peak resident set on the CPU (None where unknown)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


def run_benchmark(model: AvatarModel, config: EngineConfig, *, seconds: float = 10.0,
                  expression: Mapping[str, float] | None = None) -> dict:
    """Stream `seconds` of audio through a prepared generator, with the `expression` sliders held, and report the
    numbers of DESIGN.md section 7.

    first_frame_ms: the first chunk's audio (with lookahead) is handed over at once -> its frames are out.
    fps: frames of the chunks after the first / their generation time (audio already available: pure throughput).
    p50/p99_frame_ms: per frame, its chunk's generation time divided by the chunk's frames.
    """
    generator = StreamingGenerator(model, config)
    generator.prepare(benchmark_portrait(), expression or {})
    audio = benchmark_audio(seconds)
    device = generator.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    first_samples = generator.planner.length(state_changed=False) * generator.samples_per_frame
    first_samples += round(generator.lookahead_s * SAMPLE_RATE)
    clock = time.perf_counter()
    chunk = generator.step(audio[:first_samples], State.SPEAKING)
    sync()
    first_frame_ms = (time.perf_counter() - clock) * 1000
    if chunk is None:
        raise RuntimeError("internal error: the first chunk's audio was handed over but no chunk came out")

    generator.push_audio(audio[first_samples:])
    chunk_times, chunk_frames, stage_totals = [], [], dict.fromkeys(chunk.stage_ms, 0.0)
    while True:
        clock = time.perf_counter()
        chunk = generator.step(None, State.SPEAKING, end_of_stream=True)
        sync()
        if chunk is None:
            break
        chunk_times.append((time.perf_counter() - clock) * 1000)
        chunk_frames.append(len(chunk.frames))
        for stage, ms in chunk.stage_ms.items():
            stage_totals[stage] += ms
    frames = sum(chunk_frames)
    per_frame = np.repeat(np.array(chunk_times) / np.array(chunk_frames), chunk_frames)
    peak_mb = _peak_memory_mb(device)
    mc = model.config
    return {
        "preset": mc.preset,
        "device": str(device),
        "dtype": str(generator.dtype).removeprefix("torch."),
        "resolution": generator.resolution,
        "sampler": generator.sampler_name,
        "steps": generator.steps,
        "denoiser_evaluations_per_chunk": generator.steps if generator.sampler_name != "heun" else 2 * generator.steps - 1,
        "chunk_plan": {"first": mc.chunks.first, "after_state_change": mc.chunks.after_state_change,
                       "steady": config.fixed_chunk or mc.chunks.steady},
        "cached_reference": config.cache_reference,
        "threads": torch.get_num_threads(),
        "seconds": seconds,
        "expression": dict(expression or {}),
        "frames": frames + 1,
        "fps": round(frames / (sum(chunk_times) / 1000), 2),
        "first_frame_ms": round(first_frame_ms, 1),
        "p50_frame_ms": round(float(np.percentile(per_frame, 50)), 2),
        "p99_frame_ms": round(float(np.percentile(per_frame, 99)), 2),
        "peak_mem_mb": None if peak_mb is None else round(peak_mb, 1),
        "stages_ms_per_frame": {stage: round(total / frames, 2) for stage, total in stage_totals.items()},
    }
