"""The streaming benchmark behind `avatar-desktop bench`: steady fps, first-frame latency, frame-time percentiles,
peak memory and a per-stage breakdown, for one model under one engine configuration."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import replace
from typing import Mapping

import cv2
import numpy as np

from avatar_desktop.config import SAMPLE_RATE, EngineConfig, State
from avatar_desktop.output.camera import CameraConfig, Canvas


def naive_config(config: EngineConfig, steady_chunk: int) -> EngineConfig:
    """The slow baseline for the same weights: teacher sampler (the checkpoint's teacher_steps unless `config.steps`
    says otherwise), no reference caches, fp32, one chunk length (the plan's steady one)."""
    return replace(config, precision="fp32", sampler="heun", cache_reference=False, fixed_chunk=steady_chunk)


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


def _peak_memory_mb(device: str) -> float | None:
    """Peak GPU memory allocated by torch, or the process's peak resident set on the CPU (None where unknown)."""
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # macOS reports bytes, Linux KiB


def _cuda_synchronize() -> None:
    import torch

    torch.cuda.synchronize()


def _default_threads() -> int:
    """The threads a generator given no thread count runs on: torch's when torch runs it (then it is loaded), else
    onnxruntime's (all cores)."""
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else os.cpu_count() or 1


def run_benchmark(generator, *, seconds: float = 10.0, expression: Mapping[str, float] | None = None,
                  camera: CameraConfig | None = None) -> dict:
    """Stream `seconds` of audio through a prepared generator (either path), with the `expression` sliders held,
    and report the numbers of DESIGN.md section 7.

    first_frame_ms: audio arrives in 10 ms blocks; from the block that completes the first chunk's audio (with
    lookahead) to its frames out.
    fps: frames of the chunks after the first / their generation time (audio already available: pure throughput).
    p50/p99_frame_ms: per frame, its chunk's generation time divided by the chunk's frames.
    camera: also compose every frame onto the camera canvas (stage "camera"), as the live session's sender does.
    """
    device = generator.config.device
    sync = (lambda: None) if device == "cpu" else _cuda_synchronize
    canvas = Canvas(camera) if camera is not None else None
    generator.set_expression(expression or {})
    generator.reset()
    audio = benchmark_audio(seconds)

    def timed_step(pending: np.ndarray | None, end_of_stream: bool):
        clock = time.perf_counter()
        chunk = generator.step(pending, State.SPEAKING, end_of_stream=end_of_stream)
        if chunk is not None and canvas is not None:
            composed = time.perf_counter()
            for frame in chunk.frames:
                canvas.compose(frame)
            chunk.stage_ms["camera"] = (time.perf_counter() - composed) * 1000
        sync()
        return chunk, (time.perf_counter() - clock) * 1000

    block = SAMPLE_RATE // 100
    chunk, sent = None, 0
    while chunk is None and sent < len(audio):
        chunk, first_frame_ms = timed_step(audio[sent : sent + block], False)
        sent += block
    if chunk is None:
        raise RuntimeError(f"internal error: {seconds} s of audio were handed over but no chunk came out")

    first_frames = len(chunk.frames)
    generator.push_audio(audio[sent:])
    chunk_times, chunk_frames, stage_totals = [], [], dict.fromkeys(chunk.stage_ms, 0.0)
    while True:
        chunk, chunk_ms = timed_step(None, True)
        if chunk is None:
            break
        chunk_times.append(chunk_ms)
        chunk_frames.append(len(chunk.frames))
        for stage, ms in chunk.stage_ms.items():
            stage_totals[stage] += ms
    frames = sum(chunk_frames)
    per_frame = np.repeat(np.array(chunk_times) / np.array(chunk_frames), chunk_frames)
    peak_mb = _peak_memory_mb(device)
    width, height = generator.frame_size
    return {
        "path": generator.path,
        **generator.describe(),
        "device": device,
        "frame_size": f"{width}x{height}",
        "camera": None if camera is None else f"{camera.width}x{camera.height}",
        "threads": generator.config.threads or _default_threads(),
        "seconds": seconds,
        "expression": dict(expression or {}),
        "frames": first_frames + frames,
        "fps": round(frames / (sum(chunk_times) / 1000), 2),
        "first_frame_ms": round(first_frame_ms, 1),
        "p50_frame_ms": round(float(np.percentile(per_frame, 50)), 2),
        "p99_frame_ms": round(float(np.percentile(per_frame, 99)), 2),
        "peak_mem_mb": None if peak_mb is None else round(peak_mb, 1),
        "stages_ms_per_frame": {stage: round(total / frames, 2) for stage, total in stage_totals.items()},
    }


def compare_backends(torch_spec, onnx_spec, portrait: np.ndarray, config: EngineConfig, thread_counts: list[int],
                     **options) -> list[dict]:
    """run_benchmark of one model on torch fp32, onnx fp32 and (when exported) onnx int8, on each of
    `thread_counts` CPU threads, in this one process; `options`: open_generator's frame_limit and fps,
    run_benchmark's seconds, expression and camera. One result per run, with its backend and precision."""
    import torch

    from avatar_desktop.engine.model_spec import open_generator

    frame_limit, fps = options.pop("frame_limit", None), options.pop("fps", None)
    runs = [(torch_spec, "fp32"), (onnx_spec, "fp32")]
    if "int8" in onnx_spec_precisions(onnx_spec):
        runs.append((onnx_spec, "int8"))
    results = []
    for threads in thread_counts:
        torch.set_num_threads(threads)
        cv2.setNumThreads(threads)
        for spec, precision in runs:
            run_config = replace(config, precision=precision, threads=threads)
            generator = open_generator(spec, portrait, run_config, frame_limit=frame_limit, fps=fps)
            results.append({"backend": spec.backend, "precision": precision,
                            **run_benchmark(generator, **options), "threads": threads})
    return results


def onnx_spec_precisions(spec) -> list[str]:
    """The precisions an exported model folder holds (engine/onnx_runtime.py PRECISIONS)."""
    import json

    from avatar_desktop.engine.onnx_runtime import PRECISIONS

    graphs = json.loads((spec.folder / "model.json").read_text())["graphs"].values()
    return [name for name in PRECISIONS if all(name in graph["files"] for graph in graphs)]
