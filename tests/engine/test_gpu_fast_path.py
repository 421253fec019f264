"""The fast path on CUDA (engine/fast_path.py): compiled stages and decode overlap in fp16 give the eager fp16
frames, nothing compiles after prepare(), and queuing a chunk waits for nothing on the device. Skipped with a reason
where there is no CUDA device (conftest.py); the CPU side is tests/engine/test_fast_path.py."""

import numpy as np
import pytest
import torch

from avatar_desktop.config import EngineConfig, State
from avatar_desktop.engine.fast_path import compiled_graph_count
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.eval.metrics import psnr
from avatar_desktop.models.presets import build_model, preset_config
from tests.conftest import stream_chunks

pytestmark = pytest.mark.gpu

# tiny-cpu plans chunks of 1 (first), 2 (after a state change) and 4 (steady) frames: these labels use all three
LABELS = [State.SPEAKING, State.SPEAKING, State.IDLE, State.IDLE, State.SPEAKING]


def _prepared(portrait, **engine) -> StreamingGenerator:
    generator = StreamingGenerator(build_model(preset_config("tiny-cpu"), seed=0),
                                   EngineConfig(device="cuda", precision="fp16", **engine))
    generator.prepare(portrait)
    return generator


def test_compiled_overlapped_fp16_gives_the_eager_fp16_frames_without_recompiling(portrait):
    eager = stream_chunks(_prepared(portrait), 2.0)
    fast = _prepared(portrait, compile=True, overlap_decode=True)
    graphs = compiled_graph_count()
    with torch.compiler.set_stance("fail_on_recompile"):
        chunks = stream_chunks(fast, 2.0)
        fast.reset()
        with_state_changes = stream_chunks(fast, 2.0, LABELS)
    assert {len(chunk.frames) for chunk in with_state_changes} >= {1, 2, 4}
    assert compiled_graph_count() == graphs
    assert fast.describe()["compiled_lengths"] == [1, 2, 4]
    assert [chunk.start_frame for chunk in chunks] == [chunk.start_frame for chunk in eager]
    frames = np.concatenate([chunk.frames for chunk in chunks])
    assert psnr(frames, np.concatenate([chunk.frames for chunk in eager])) >= 35


@pytest.mark.parametrize("engine", [{}, {"compile": True, "overlap_decode": True}], ids=["eager", "fast"])
def test_queuing_a_steady_chunk_waits_for_nothing_on_the_device(portrait, engine):
    generator = _prepared(portrait, **engine)
    stream_chunks(generator, 0.2)  # the first chunks; then a steady one, queued with host syncs made errors
    generator.push_audio(np.zeros(4 * generator.samples_per_frame, np.float32))
    torch.cuda.set_sync_debug_mode("error")
    try:
        queued = generator._queue(4, State.SPEAKING)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    chunk = generator._collect(queued)
    assert chunk.frames.shape == (4, 256, 256, 3)
    assert all(ms > 0 for ms in chunk.stage_ms.values())
