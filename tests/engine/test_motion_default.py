"""The shipped motion model (models/default/motion) on speech it was not trained on: a `dataset synth` clip of
another seed (new sentences and characters), driven through MotionStreamer as the app drives it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.config import EngineConfig, State
from avatar_desktop.data.clips import load_clip
from avatar_desktop.engine.motion_stream import MotionStreamer
from avatar_desktop.eval.metrics import CLOSED_OPENING, pearson
from avatar_desktop.eval.motion import MOUTH, stream_codes
from avatar_desktop.models.store import DEFAULT_MOTION_MODEL, load_motion_model
from avatar_desktop.motion_code import motion_code_from_record

MIN_PEARSON = 0.75
"""mouth_open against the record on the clips below: the shipped student measured 0.872 and 0.902
(seed 0; 0.83 to 0.92 over engine seeds 0-2)."""


@pytest.fixture(scope="module")
def model():
    return load_motion_model(DEFAULT_MOTION_MODEL)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("speech") / "data"
    assert main(["dataset", "synth", "--out", str(out), "--identities", "2", "--clips-per-identity", "1",
                 "--seconds", "6", "--size", "64", "--seed", "1234", "--no-progress"]) == 0
    return sorted((out / "clips").iterdir())


def test_the_default_motion_model_resolves_by_name_and_is_a_student(model):
    sampling = model.config.sampling
    assert (sampling.parameterization, sampling.sampler) == ("consistency", "consistency")
    assert sampling.steps <= 2 and not model.config.denoiser.slider_condition


@pytest.mark.slow
def test_the_mouth_follows_unseen_speech(model, clips):
    streamer = MotionStreamer(model, EngineConfig(seed=0))
    scores = []
    for path in clips:
        clip = load_clip(path, with_frames=False)
        code, sliders = motion_code_from_record(clip.record)
        generated = stream_codes(streamer, clip.audio.astype(np.float32), np.asarray(clip.record["state"]), sliders)
        scores.append(pearson(generated[:, MOUTH], code[:, MOUTH]))
    assert min(scores) > MIN_PEARSON, scores


@pytest.mark.parametrize("state", [State.LISTENING, State.IDLE])
def test_the_mouth_stays_closed_in_silence(model, state):
    streamer = MotionStreamer(model, EngineConfig(seed=1))
    frames = 100
    codes = stream_codes(streamer, np.zeros(frames * 640, np.float32), np.full(frames, int(state)),
                         np.zeros((frames, 5), np.float32))
    assert np.mean(codes[:, MOUTH] < CLOSED_OPENING) >= 0.98
