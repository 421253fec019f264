"""The torch generator's fast path on the CPU (engine/fast_path.py): compiled stages built in prepare() only, and
decode overlap's ordering. The CUDA side is tests/engine/test_gpu_fast_path.py."""

from collections import Counter

import numpy as np
import pytest
import torch
from torch.overrides import TorchFunctionMode

from avatar_desktop.config import AutoencoderConfig, EngineConfig, State
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.fast_path import compiled_graph_count
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.eval.metrics import psnr
from avatar_desktop.models.autoencoder import build_autoencoder
from avatar_desktop.models.denoiser import SpatialTransformer, TemporalAttention
from avatar_desktop.models.presets import build_model, tiny_test_config
from tests.conftest import stream_chunks, stream_overlapped

# tiny-test plans chunks of 1 (first), 2 (after a state change) and 4 (steady) frames. These labels, one per step
# over 24 frames of audio, give chunks of 1, 4, 2, 4, 2, 4, 4 and a last one of 3, a length the plan never uses.
LABELS = [State.SPEAKING, State.SPEAKING, State.LISTENING, State.LISTENING, State.SPEAKING]
LENGTHS = [1, 4, 2, 4, 2, 4, 4, 3]


def _prepared(portrait, model_config=None, **engine) -> StreamingGenerator:
    generator = StreamingGenerator(build_model(model_config or tiny_test_config(), seed=0),
                                   EngineConfig(precision="fp32", **engine))
    generator.prepare(portrait, warmup=False)
    return generator


def _frames(chunks) -> np.ndarray:
    return np.concatenate([chunk.frames for chunk in chunks])


def test_compiled_stages_are_built_in_prepare_and_never_while_streaming(portrait):
    eager = stream_chunks(_prepared(portrait), 24 / 25, LABELS)
    # the 'eager' backend traces with dynamo (graphs, guards, recompilations) without generating code: quick
    generator = _prepared(portrait, compile=True, compile_backend="eager")  # compiling is prepare()'s warm-up anyway
    graphs = compiled_graph_count()
    with torch.compiler.set_stance("fail_on_recompile"):  # raises if any chunk would recompile
        compiled = stream_chunks(generator, 24 / 25, LABELS)
    assert [len(chunk.frames) for chunk in compiled] == LENGTHS
    assert compiled_graph_count() == graphs
    described = generator.describe()
    assert described["compiled_lengths"] == [1, 2, 4]  # the last chunk's 3 frames ran eagerly
    assert described["graphs_compiled_while_streaming"] == 0
    assert psnr(_frames(compiled), _frames(eager)) >= 35


@pytest.mark.slow
@pytest.mark.timeout(900)  # inductor's C++ compilation of six graphs takes minutes on two busy cores
def test_inductor_compiled_tiny_cpu_matches_eager(portrait):
    from avatar_desktop.models.presets import preset_config

    tiny_cpu = preset_config("tiny-cpu")
    eager = stream_chunks(_prepared(portrait, tiny_cpu), 1.0, [State.SPEAKING, State.SPEAKING, State.IDLE])
    generator = _prepared(portrait, tiny_cpu, compile=True)
    with torch.compiler.set_stance("fail_on_recompile"):
        compiled = stream_chunks(generator, 1.0, [State.SPEAKING, State.SPEAKING, State.IDLE])
    assert generator.describe()["compiled_lengths"] == [1, 2, 4]
    assert generator.describe()["graphs_compiled_while_streaming"] == 0
    assert [len(chunk.frames) for chunk in compiled] == [len(chunk.frames) for chunk in eager]
    assert psnr(_frames(compiled), _frames(eager)) >= 35


def test_overlap_queues_the_next_chunk_except_behind_the_first_and_gives_the_same_chunks(portrait):
    plain = stream_chunks(_prepared(portrait), 0.6)
    generator = _prepared(portrait, overlap_decode=True)
    overlapped, queued_ahead, decoding_threads = stream_overlapped(generator, 0.6)
    # nothing is generated before the first chunk comes out; then the next chunk is queued before each one
    assert queued_ahead == [0] + [len(chunk.frames) for chunk in overlapped[2:]] + [0]
    assert [(c.start_frame, len(c.frames)) for c in overlapped] == [(c.start_frame, len(c.frames)) for c in plain]
    assert [c.start_frame for c in overlapped] == np.cumsum([0] + [len(c.frames) for c in overlapped])[:-1].tolist()
    np.testing.assert_array_equal(_frames(overlapped), _frames(plain))
    assert all(set(chunk.stage_ms) == {"audio", "denoise", "decode"} for chunk in overlapped)
    assert decoding_threads and all(name.startswith("decode") for name in decoding_threads)  # the CPU's second thread

    generator.reset()  # drops a queued chunk: the new stream starts at frame 0
    generator.push_audio(benchmark_audio(0.2))
    assert generator.step(None).start_frame == 0


def test_overlap_returns_each_chunk_as_soon_as_its_audio_is_there(portrait):
    """Audio in 10 ms blocks, as from a microphone: no chunk comes out later than without overlap."""
    audio = benchmark_audio(0.6)
    blocks = [audio[start : start + 160] for start in range(0, len(audio), 160)]
    arrivals = {}
    for overlap in (False, True):
        generator = _prepared(portrait, overlap_decode=overlap)
        arrivals[overlap] = [(index, chunk.start_frame) for index, block in enumerate(blocks)
                             if (chunk := generator.step(block)) is not None]
    assert len(arrivals[False]) >= 4
    assert arrivals[True] == arrivals[False]


class _TorchCalls(TorchFunctionMode):
    """Counts the torch functions called while active, by name."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()

    def __torch_function__(self, func, types, args=(), kwargs=None):
        self.calls[getattr(func, "__name__", str(func))] += 1
        return func(*args, **(kwargs or {}))


def test_every_attention_runs_through_scaled_dot_product_attention(portrait):
    """Spatial self-attention with the reference tokens, audio cross-attention, temporal attention, and the SD-VAE
    decoder's mid-block attention: one fused SDPA call each, never a softmax of explicit scores."""
    generator = _prepared(portrait)
    modules = list(generator.model.denoiser.modules())
    per_evaluation = (2 * sum(isinstance(m, SpatialTransformer) for m in modules)
                      + sum(isinstance(m, TemporalAttention) for m in modules))
    generator.push_audio(benchmark_audio(0.2))
    with _TorchCalls() as denoising:
        generator.step(None)
    assert denoising.calls["scaled_dot_product_attention"] == per_evaluation * generator.describe()[
        "denoiser_evaluations_per_chunk"]

    kl_layout = {"block_out_channels": [8, 16], "down_block_types": ["DownEncoderBlock2D"] * 2,
                 "up_block_types": ["UpDecoderBlock2D"] * 2, "latent_channels": 4, "norm_num_groups": 4,
                 "layers_per_block": 1}
    kl = build_autoencoder(AutoencoderConfig(kind="kl", image_size=16, latent_channels=4, downscale=2,
                                             diffusers_config=kl_layout))
    with torch.no_grad(), _TorchCalls() as decoding:
        kl.decode(torch.randn(2, 4, 8, 8))
    assert decoding.calls["scaled_dot_product_attention"] == 1
    for calls in (denoising.calls, decoding.calls):
        assert not {"softmax", "bmm", "baddbmm"} & set(calls), calls
