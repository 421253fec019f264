"""MotionStreamer: the streaming contract of StreamingGenerator, for motion codes (tiny seeded model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from avatar_desktop.config import ChunkPlanConfig, EngineConfig, State
from avatar_desktop.engine.motion_stream import SLIDER_EASE_S, MotionStreamer
from avatar_desktop.models.motion import build_motion_model
from avatar_desktop.motion_code import (
    MOTION_HIGH,
    MOTION_INDEX,
    MOTION_LOW,
    slider_array,
    slider_offsets,
)

PER_FRAME = 640


@pytest.fixture(scope="module")
def model():
    model = build_motion_model(seed=0, chunks=ChunkPlanConfig(first=1, after_state_change=2, steady=4),
                               slider_condition=False)
    # a zero output layer would make every code equal; seeded apart from whatever used the global generator before
    torch.nn.init.normal_(model.denoiser.out.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    return model


def _speech(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * 16000)) / 16000
    voiced = 0.3 * np.sin(2 * np.pi * 180 * t) * (np.sin(2 * np.pi * 3 * t) > 0)  # 3 syllables a second
    return (voiced + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def _run(streamer: MotionStreamer, audio: np.ndarray, piece: int = PER_FRAME, labels=None, expression=None):
    """Feed `audio` in pieces; returns the chunks. labels: callable frame index -> State."""
    chunks = []
    label = lambda: (labels(streamer.frame_index) if labels else State.SPEAKING)
    for start in range(0, len(audio), piece):
        chunk = streamer.step(audio[start : start + piece], label(), expression)
        while chunk is not None:
            chunks.append(chunk)
            chunk = streamer.step(None, label())
    while (chunk := streamer.step(None, label(), end_of_stream=True)) is not None:
        chunks.append(chunk)
    return chunks


def test_chunks_follow_the_plan_and_a_state_change_gets_a_short_chunk(model):
    streamer = MotionStreamer(model)
    streamer.prepare()
    chunks = _run(streamer, _speech(2.0), labels=lambda f: State.SPEAKING if f < 21 else State.LISTENING)
    lengths = [len(c.codes) for c in chunks]
    assert lengths[:6] == [1, 4, 4, 4, 4, 4]  # frames 0..20 speaking
    assert lengths[6] == 2 and chunks[6].label == State.LISTENING and chunks[6].start_frame == 21
    assert sum(lengths) == 50
    assert [c.start_frame for c in chunks] == list(np.cumsum([0] + lengths[:-1]))
    np.testing.assert_allclose(chunks[3].timestamps, np.arange(9, 13) / 25)
    assert chunks[0].codes.dtype == np.float32 and chunks[0].codes.shape == (1, 17)
    assert set(chunks[1].stage_ms) == {"audio", "motion"}


def test_a_chunk_waits_for_its_audio_and_lookahead(model):
    streamer = MotionStreamer(model)
    streamer.prepare(warmup=False)
    assert streamer.step(np.zeros(PER_FRAME, np.float32)) is None  # frame 0 needs 40 ms past its end
    assert streamer.step(np.zeros(PER_FRAME, np.float32)) is not None
    assert streamer.lookahead_s == pytest.approx(0.04)


def test_the_same_seed_gives_the_same_codes_whatever_the_audio_pieces(model):
    audio = _speech(1.5)
    runs = []
    for piece, seed in ((PER_FRAME, 0), (1000, 0), (PER_FRAME, 1)):
        streamer = MotionStreamer(model, EngineConfig(seed=seed))
        streamer.prepare()
        runs.append(np.concatenate([c.codes for c in _run(streamer, audio, piece)]))
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.allclose(runs[0], runs[2])
    assert len(runs[0]) == round(len(audio) / PER_FRAME)


def test_codes_stay_in_their_ranges(model):
    streamer = MotionStreamer(model)
    streamer.prepare()
    codes = np.concatenate([c.codes for c in _run(streamer, _speech(1.0), expression={"smile": 1, "eye_open": -1})])
    assert (codes >= MOTION_LOW).all() and (codes <= MOTION_HIGH).all()


def test_sliders_are_exact_offsets_on_the_codes(model):
    audio = _speech(1.0)
    codes = {}
    for smile in (0.0, 0.5):
        streamer = MotionStreamer(model, EngineConfig(seed=2))
        streamer.prepare({"smile": smile, "head_yaw": -0.5})
        codes[smile] = np.concatenate([c.codes for c in _run(streamer, audio)])
    offset = np.broadcast_to(slider_offsets(slider_array({"smile": 0.5})), codes[0.0].shape)
    low, high = MOTION_LOW + 1e-6, MOTION_HIGH - 1e-6
    inside = (codes[0.0] > low) & (codes[0.0] < high) & (codes[0.5] > low) & (codes[0.5] < high)  # (F, D) unclipped
    assert inside[:, MOTION_INDEX["smile"]].sum() >= 5
    np.testing.assert_allclose((codes[0.5] - codes[0.0])[inside], offset[inside], atol=1e-6)
    untouched = offset == 0
    np.testing.assert_array_equal(codes[0.5][untouched], codes[0.0][untouched])


def test_a_moved_slider_is_eased_in_within_a_fifth_of_a_second(model):
    streamer = MotionStreamer(model, EngineConfig(fixed_chunk=2))
    reference = MotionStreamer(model, EngineConfig(fixed_chunk=2))
    for s in (streamer, reference):
        s.prepare(warmup=False)
    audio, smile = _speech(1.2), MOTION_INDEX["smile"]
    moved, held = [], []
    for start in range(0, len(audio), PER_FRAME):
        expression = {"smile": 1.0} if start >= 10 * PER_FRAME else {}
        if (chunk := streamer.step(audio[start : start + PER_FRAME], State.IDLE, expression)) is not None:
            moved.append(chunk.codes)
        if (chunk := reference.step(audio[start : start + PER_FRAME], State.IDLE)) is not None:
            held.append(chunk.codes)
    moved, held = np.concatenate(moved)[:, smile], np.concatenate(held)[:, smile]
    first = np.flatnonzero(np.abs(moved - held) > 1e-6)[0]
    assert first == 8  # the first chunk made after the change (frames 8, 9: audio with lookahead is there)
    ease = round(SLIDER_EASE_S * 25)
    expected = np.minimum(1.0, np.arange(1, len(held) - first + 1) / ease)  # 0.2, 0.4, ... 1, 1, ...
    unclipped = (np.abs(moved[first:]) < 1 - 1e-6) & (np.abs(held[first:]) < 1 - 1e-6)
    assert unclipped[ease:].sum() >= 5
    np.testing.assert_allclose((moved - held)[first:][unclipped], expected[unclipped], atol=1e-6)


def test_end_of_stream_makes_every_frame_once(model):
    streamer = MotionStreamer(model)
    streamer.prepare(warmup=False)
    streamer.push_audio(np.zeros(PER_FRAME * 7 + 100, np.float32))
    made = []
    while (chunk := streamer.step(None, end_of_stream=True)) is not None:
        made.append(len(chunk.codes))
    assert sum(made) == 7 and streamer.step(None, end_of_stream=True) is None


def test_the_teacher_sampler_overrides_the_student(model):
    streamer = MotionStreamer(model, EngineConfig(sampler="heun", steps=3))
    assert streamer.sampler_name == "heun" and streamer.steps == 3
    with pytest.raises(ValueError, match="unknown sampler 'ddim'"):
        MotionStreamer(model, EngineConfig(sampler="ddim"))


def test_unknown_sliders_are_named(model):
    streamer = MotionStreamer(model)
    with pytest.raises(ValueError, match="unknown expression components \\['grin'\\]"):
        streamer.set_expression({"grin": 1.0})


def test_idle_keeps_the_head_nearly_still_and_speech_brings_its_motion_back(model, monkeypatch):
    """The generated head motion is scaled by HEAD_MOTION[state], eased over HEAD_EASE_S at a change;
    everything else in the code is the model's own."""
    from avatar_desktop.engine import motion_stream

    head = [MOTION_INDEX[name] for name in ("head_yaw", "head_pitch", "head_roll", "head_x", "head_y")]
    idle_then_speaking = lambda frame: State.IDLE if frame < 25 else State.SPEAKING  # noqa: E731

    def codes(head_motion) -> np.ndarray:
        monkeypatch.setattr(motion_stream, "HEAD_MOTION", head_motion)
        streamer = MotionStreamer(model, EngineConfig(seed=2))
        streamer.prepare(warmup=False)
        return np.concatenate([c.codes for c in _run(streamer, _speech(2.0), labels=idle_then_speaking)])

    shipped = dict(motion_stream.HEAD_MOTION)
    scaled = codes(shipped)
    full = codes(dict.fromkeys(State, 1.0))
    others = [index for index in range(full.shape[1]) if index not in head]
    np.testing.assert_array_equal(scaled[:, others], full[:, others])
    moving = np.abs(full[:, head]) > 1e-3
    ratio = np.where(moving, scaled[:, head] / np.where(moving, full[:, head], 1), np.nan)
    idle, speaking = shipped[State.IDLE], shipped[State.SPEAKING]
    assert idle < speaking
    np.testing.assert_allclose(np.nanmean(ratio[:25], 1), idle, atol=1e-4)  # idle from the stream's start
    ramp = round((speaking - idle) * motion_stream.HEAD_EASE_S * 25)  # frames from idle's scale to speaking's
    assert np.all(np.diff(np.nanmean(ratio[25 : 25 + ramp], 1)) > 0)
    np.testing.assert_allclose(np.nanmean(ratio[25 + ramp :], 1), speaking, atol=1e-4)
