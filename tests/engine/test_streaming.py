"""StreamingGenerator: chunking, timestamps, motion continuity, states, step counts, precision."""

import copy
import dataclasses

import numpy as np
import pytest
import torch

from avatar_desktop.config import EngineConfig, State
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.slider_warp import warp
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel

SAMPLES_PER_FRAME = 640


def _generator(model, portrait, **engine):
    generator = StreamingGenerator(model, EngineConfig(**engine))
    generator.prepare(portrait, warmup=False)
    return generator


def _drain(generator, label=State.SPEAKING, end_of_stream=False):
    chunks = []
    while (chunk := generator.step(None, label, end_of_stream=end_of_stream)) is not None:
        chunks.append(chunk)
    return chunks


@pytest.mark.parametrize("split", [[16, 8], [1, 2, 4, 4, 4, 4, 4, 1], [1] * 24, [3, 5, 7, 9], [12, 12]])
def test_any_split_of_24_frames_gives_24_contiguous_frames(tiny_model, portrait, split):
    generator = _generator(tiny_model, portrait, fixed_chunk=None)
    audio = benchmark_audio(24 / 25)
    frames, timestamps = [], []
    for length in split:
        generator.planner.fixed = length  # this chunk's length
        chunk = generator.step(audio if not frames else None, State.SPEAKING, end_of_stream=True)
        assert chunk.frames.shape == (length, 64, 64, 3) and chunk.frames.dtype == np.uint8
        assert chunk.start_frame == len(frames)
        frames += list(chunk.frames)
        timestamps += list(chunk.timestamps)
    assert len(frames) == 24
    assert generator.step(None, end_of_stream=True) is None
    np.testing.assert_allclose(timestamps, np.arange(24) / 25)


def test_audio_arriving_in_pieces_gives_the_same_video_as_all_at_once(tiny_model, portrait):
    audio = benchmark_audio(1.2)
    whole = _generator(tiny_model, portrait)
    whole.push_audio(audio)
    reference = np.concatenate([c.frames for c in _drain(whole)])

    streamed = _generator(tiny_model, portrait)
    pieces, rng = [], np.random.default_rng(0)
    position = 0
    while position < len(audio):
        size = int(rng.integers(50, 3000))
        chunk = streamed.step(audio[position : position + size])
        position += size
        pieces += ([chunk] if chunk is not None else []) + _drain(streamed)
    got = np.concatenate([c.frames for c in pieces])
    assert len(got) == len(reference) == (len(audio) - streamed.lookahead_s * 16000) // SAMPLES_PER_FRAME
    np.testing.assert_array_equal(got, reference)


def test_no_chunk_until_its_audio_and_lookahead_arrived(tiny_model, portrait):
    generator = _generator(tiny_model, portrait)
    lookahead = round(generator.lookahead_s * 16000)
    assert generator.step(np.zeros(SAMPLES_PER_FRAME + lookahead - 1, np.float32)) is None
    chunk = generator.step(np.zeros(1, np.float32))
    assert chunk is not None and len(chunk.frames) == tiny_model.config.chunks.first


def test_chunk_plan_short_first_short_after_state_change(tiny_model, portrait):
    plan = tiny_model.config.chunks
    generator = _generator(tiny_model, portrait)
    generator.push_audio(benchmark_audio(3.0))
    lengths = [len(generator.step(None, State.SPEAKING).frames) for _ in range(3)]
    lengths.append(len(generator.step(None, State.LISTENING).frames))
    lengths.append(len(generator.step(None, State.LISTENING).frames))
    assert lengths == [plan.first, plan.steady, plan.steady, plan.after_state_change, plan.steady]
    assert plan.first < plan.steady and plan.after_state_change < plan.steady


def test_end_of_stream_frame_count_rounds_the_audio_duration(tiny_model, portrait):
    generator = _generator(tiny_model, portrait)
    generator.push_audio(benchmark_audio(0.95))  # 23.75 frames -> 24
    assert sum(len(c.frames) for c in _drain(generator, end_of_stream=True)) == 24


def test_motion_frames_carry_across_chunks(tiny_model, portrait):
    """The second chunk depends on what the first chunk generated (through its motion frames)."""
    audio = benchmark_audio(0.6)
    first = _generator(tiny_model, portrait, seed=1)
    first.push_audio(audio)
    chunks_a = _drain(first)
    other = _generator(tiny_model, portrait, seed=1)
    other.push_audio(audio)
    chunk = other.step(None)
    other._motion = other._motion + 0.5  # as if the previous chunk had generated something else
    chunks_b = [chunk] + _drain(other)
    np.testing.assert_array_equal(chunks_a[0].frames, chunks_b[0].frames)
    assert not np.array_equal(chunks_a[1].frames, chunks_b[1].frames)


def test_reset_restarts_the_stream_reproducibly(tiny_model, portrait):
    generator = _generator(tiny_model, portrait, seed=3)
    generator.push_audio(benchmark_audio(0.5))
    first = _drain(generator)
    generator.reset()
    generator.push_audio(benchmark_audio(0.5))
    again = _drain(generator)
    assert [c.start_frame for c in again] == [c.start_frame for c in first]
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.frames, b.frames)


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_consistency_step_counts_run(tiny_model, portrait, steps):
    generator = _generator(tiny_model, portrait, steps=steps)
    assert generator.steps == steps
    generator.push_audio(benchmark_audio(0.3))
    assert len(_drain(generator)) > 0


def test_teacher_sampler_and_uncached_reference_run(tiny_model, portrait):
    generator = _generator(tiny_model, portrait, sampler="heun", steps=3, cache_reference=False, fixed_chunk=4)
    generator.push_audio(benchmark_audio(0.4))
    chunks = _drain(generator, end_of_stream=True)
    assert [len(c.frames) for c in chunks] == [4, 4, 2]


def test_uncached_reference_gives_the_same_frames(tiny_model, portrait):
    audio = benchmark_audio(0.4)
    results = []
    for cache in (True, False):
        generator = _generator(tiny_model, portrait, cache_reference=cache, seed=5)
        generator.push_audio(audio)
        results.append(np.concatenate([c.frames for c in _drain(generator, end_of_stream=True)]))
    assert np.abs(results[0].astype(int) - results[1].astype(int)).max() <= 1


def test_expression_and_state_change_the_frames(tiny_model, portrait):
    audio = benchmark_audio(0.3)

    def frames(label=State.SPEAKING, expression=None):
        generator = _generator(tiny_model, portrait, seed=2)
        generator.push_audio(audio)
        generator.set_expression(expression or {})
        return np.concatenate([c.frames for c in _drain(generator, label)])

    neutral = frames()
    assert not np.array_equal(neutral, frames(expression={"smile": 1.0}))
    assert not np.array_equal(neutral, frames(label=State.IDLE))


def _told_sliders(model, portrait, sliders, **engine):
    """Per chunk of 2 frames, each set to `sliders`' next item: the (expression, motion_expression) the model got."""
    generator = _generator(model, portrait, fixed_chunk=2, **engine)
    told = []
    denoise = model.denoise
    model.denoise = lambda x, sigma, cond: told.append((cond.expression[0], cond.motion_expression[0])) or denoise(
        x, sigma, cond)
    generator.push_audio(benchmark_audio(0.5))
    chunks = []
    for expression in sliders:
        told.clear()
        assert generator.step(None, State.SPEAKING, expression) is not None
        assert all(torch.equal(pair[0], told[0][0]) and torch.equal(pair[1], told[0][1]) for pair in told)
        chunks.append([value.tolist() for value in told[0]])
    return chunks


def test_the_engine_eases_sliders_and_tells_the_model_what_its_motion_frames_show(tiny_model, portrait):
    """A model trained for sliders at 2/s (25 fps): a 2-frame chunk moves a slider by at most 0.16, from the values
    of the chunk before (0 for the portrait); each chunk is told those values. EngineConfig overrides the speed; a
    model without one takes the sliders at once. (The models were taught every slider: warped_sliders empty.)"""
    config = tiny_model.config
    denoiser = dataclasses.replace(config.denoiser, motion_expression=True)
    sampling = dataclasses.replace(config.sampling, warped_sliders=())
    eased_model = AvatarModel(dataclasses.replace(config, denoiser=denoiser,
                                                  sampling=dataclasses.replace(sampling, slider_speed=2.0)))
    sliders = [{"smile": 1.0}, {"smile": 1.0}, {"smile": 0.2, "head_pitch": -0.1}, {"smile": 0.2}]
    within = 0.005  # the CPU engine runs in bfloat16
    eased = _told_sliders(eased_model, portrait, sliders)
    assert [(told[0], shown[0]) for told, shown in eased] == [
        pytest.approx(pair, abs=within) for pair in [(0.16, 0.0), (0.32, 0.16), (0.2, 0.32), (0.2, 0.2)]]
    assert [told[4] for told, _ in eased] == pytest.approx([0.0, 0.0, -0.1, 0.0], abs=within)
    slower = _told_sliders(eased_model, portrait, sliders[:1], slider_speed=1.0)
    assert slower[0][0][0] == pytest.approx(0.08, abs=within)
    jumped = _told_sliders(AvatarModel(dataclasses.replace(config, denoiser=denoiser, sampling=sampling)), portrait,
                           sliders)
    assert [(told[0], shown[0]) for told, shown in jumped] == [
        pytest.approx(pair, abs=within) for pair in [(1, 0), (1, 1), (0.2, 1), (0.2, 0.2)]]


def test_the_sliders_a_model_leaves_to_the_engine_warp_the_frames_instead_of_reaching_the_denoiser(tiny_model,
                                                                                                   portrait):
    """The denoiser is told 0 for the sliders in SamplingConfig.warped_sliders (by default all of them), so it makes
    the latents of the neutral face for those, and the engine hands out those frames warped by the sliders (eased at
    the model's speed); the other sliders reach the denoiser."""
    sliders = {"smile": 0.5, "brow": 0.6, "head_yaw": 0.8, "head_pitch": -0.4}
    config = tiny_model.config
    motion_config = dataclasses.replace(config, denoiser=dataclasses.replace(config.denoiser, motion_expression=True))
    assert [values for pair in _told_sliders(AvatarModel(motion_config), portrait, [sliders]) for values in pair] == [
        [0.0] * 5] * 2
    warps_some = dataclasses.replace(config.sampling, warped_sliders=("brow", "head_yaw", "head_pitch"))
    told = _told_sliders(AvatarModel(dataclasses.replace(motion_config, sampling=warps_some)), portrait,
                         [sliders, sliders])
    assert [values[1:] for pair in told for values in pair] == [[0.0] * 4] * 4
    assert told[0][0][0] == pytest.approx(0.5, abs=0.005)

    model = AvatarModel(dataclasses.replace(config, sampling=warps_some))
    model.load_state_dict(tiny_model.state_dict())

    def frames(expression, slider_speed=None):
        generator = _generator(model, portrait, seed=2, slider_speed=slider_speed)
        generator.set_expression(expression)
        generator.push_audio(benchmark_audio(0.4))
        return [chunk.frames for chunk in _drain(generator)]

    unwarped = frames({"smile": 0.5})
    for plain, warped in zip(unwarped, frames(sliders)):
        assert np.array_equal(warped, warp(plain, np.array([0.0, 0.6, 0.0, 0.8, -0.4], np.float32)))
    eased = frames(sliders, slider_speed=2.0)
    reach = 2.0 / 25  # a 1-frame first chunk at 2 slider units per second
    assert np.array_equal(eased[0], warp(frames({"smile": reach}, slider_speed=2.0)[0],
                                         np.array([0.0, reach, 0.0, reach, -reach], np.float32)))


def test_audio_guidance_scales_the_difference_from_silence(tiny_model, portrait):
    """Scale 0 gives exactly the silent stream's frames; scale 2 moves the frames further from them than scale 1.
    The model's audio embedding, which starts at zero, gets random weights so that audio changes whole pixels."""
    audio = benchmark_audio(0.4)
    model = copy.deepcopy(tiny_model)
    torch.nn.init.normal_(model.denoiser.audio_embedding[-1].weight, std=0.5, generator=torch.Generator().manual_seed(0))

    def frames(samples, guidance=None):
        generator = _generator(model, portrait, seed=3, audio_guidance=guidance)
        generator.push_audio(samples)
        return np.concatenate([c.frames for c in _drain(generator, end_of_stream=True)]).astype(int)

    silent = frames(np.zeros_like(audio))
    assert np.abs(frames(audio, guidance=0.0) - silent).max() <= 1
    plain, doubled = frames(audio), frames(audio, guidance=2.0)
    assert np.abs(doubled - silent).mean() > 1.5 * np.abs(plain - silent).mean()


def test_bf16_backend_matches_fp32(tiny_model, portrait):
    """bf16 really computes in bf16 (its frames are not fp32's bit for bit), and its frames stay far closer to
    fp32's than another seed's are (measured: 0.025 against 1.4 grey levels on average)."""
    audio = benchmark_audio(0.2)

    def frames(precision: str, seed: int) -> np.ndarray:
        generator = StreamingGenerator(copy.deepcopy(tiny_model), EngineConfig(precision=precision, seed=seed))
        assert generator.dtype == {"fp32": torch.float32, "bf16": torch.bfloat16}[precision]
        generator.prepare(portrait, warmup=False)
        generator.push_audio(audio)
        return np.concatenate([c.frames for c in _drain(generator, end_of_stream=True)]).astype(float)

    fp32, bf16, other_seed = frames("fp32", 4), frames("bf16", 4), frames("fp32", 5)
    assert fp32.shape == bf16.shape == (5, 64, 64, 3)
    error = np.abs(fp32 - bf16).mean()
    assert 0 < error < 0.5  # grey levels of 255
    assert error < 0.1 * np.abs(fp32 - other_seed).mean()


def test_warm_up_leaves_a_fresh_stream(tiny_model, portrait):
    generator = StreamingGenerator(tiny_model, EngineConfig(seed=6))
    generator.prepare(portrait, warmup=True)
    assert generator.frame_index == 0 and generator.samples_received == 0
    generator.push_audio(benchmark_audio(0.3))
    warmed = np.concatenate([c.frames for c in _drain(generator)])
    cold = _generator(tiny_model, portrait, seed=6)
    cold.push_audio(benchmark_audio(0.3))
    np.testing.assert_array_equal(np.concatenate([c.frames for c in _drain(cold)]), warmed)


def test_bad_inputs_are_refused(tiny_model, portrait):
    generator = StreamingGenerator(tiny_model)
    with pytest.raises(RuntimeError, match="prepare"):
        generator.step(np.zeros(100, np.float32))
    generator.prepare(portrait, warmup=False)
    with pytest.raises(ValueError, match="mono"):
        generator.push_audio(np.zeros((100, 2), np.float32))
    with pytest.raises(ValueError, match="unknown precision"):
        StreamingGenerator(tiny_model, EngineConfig(precision="fp8"))
    with pytest.raises(AvatarError, match="--precision fp16 runs on cuda, not on cpu: use --precision fp32, bf16 or auto"):
        StreamingGenerator(tiny_model, EngineConfig(precision="fp16", device="cpu"))
