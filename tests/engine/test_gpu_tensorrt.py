"""The TensorRT backend on a GPU (engine/tensorrt_runtime.py): a tiny seeded export gives the onnxruntime float
frames in fp16, and a second prepare loads the cached engines instead of building them. Skipped with a reason
where there is no CUDA device (conftest.py) or no tensorrt; the CPU side is tests/engine/test_tensorrt_backend.py."""

from __future__ import annotations

import pytest

from avatar_desktop.config import EngineConfig
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.model_spec import ModelSpec, open_generator
from avatar_desktop.eval.metrics import psnr
from tests.conftest import stream_frames

pytestmark = pytest.mark.gpu


def test_tensorrt_fp16_gives_the_float_frames_and_the_second_prepare_loads_the_cache(tiny_model_dir, portrait,
                                                                                    tmp_path, monkeypatch):
    pytest.importorskip("tensorrt", reason="needs the tensorrt package (pip install tensorrt)")
    from avatar_desktop.engine.onnx_export import export_model

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    exported = export_model(tiny_model_dir, tmp_path / "export")
    audio = benchmark_audio(1.6)
    float_frames = stream_frames(open_generator(ModelSpec(str(exported)), portrait, EngineConfig(precision="fp32")), audio)
    spec = ModelSpec(str(exported), backend="tensorrt")
    first = open_generator(spec, portrait, EngineConfig(device="cuda", precision="fp16"))
    fp16_frames = stream_frames(first, audio)
    assert fp16_frames.shape == float_frames.shape == (40, 64, 64, 3)
    assert psnr(fp16_frames, float_frames) >= 35
    engines = first.describe()["engines"]
    assert set(engines.values()) == {"built"} and len(engines) == 4  # one per graph

    again = open_generator(spec, portrait, EngineConfig(device="cuda", precision="fp16"))
    assert again.describe()["engines"] == dict.fromkeys(engines, "cached")
    assert psnr(stream_frames(again, audio), fp16_frames) >= 45  # the same engines and noise (kernels may add in any order)
