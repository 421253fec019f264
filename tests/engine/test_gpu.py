"""CUDA paths; skipped with a reason on machines without a CUDA device (conftest.py)."""

import numpy as np
import pytest

from avatar_desktop.config import EngineConfig
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.models.presets import build_model, tiny_test_config


@pytest.mark.gpu
def test_cuda_fp16_matches_cpu_fp32(portrait):
    outputs = []
    for device, precision in (("cpu", "fp32"), ("cuda", "fp16")):
        generator = StreamingGenerator(build_model(tiny_test_config(), seed=0), EngineConfig(device=device, precision=precision))
        generator.prepare(portrait, warmup=False)
        generator.push_audio(benchmark_audio(0.3))
        frames = []
        while (chunk := generator.step(None, end_of_stream=True)) is not None:
            frames.append(chunk.frames)
        outputs.append(np.concatenate(frames).astype(float))
    # noise comes from the same CPU generator on both devices: only the arithmetic precision differs
    assert outputs[0].shape == outputs[1].shape
    assert np.abs(outputs[0] - outputs[1]).mean() < 3
