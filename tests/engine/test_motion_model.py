"""The motion model (models/motion.py) and its model folders ("kind": "motion") in the store."""

from __future__ import annotations

import json

import pytest
import torch

from avatar_desktop.errors import CheckpointError
from avatar_desktop.models.motion import MotionInputs, build_motion_model
from avatar_desktop.models.store import (
    load_model,
    load_motion_model,
    model_kind,
    save_motion_model,
)
from avatar_desktop.motion_code import MOTION_DIM


def _inputs(model, frames: int, batch: int = 1) -> MotionInputs:
    generator = torch.Generator().manual_seed(frames)
    audio = model.config.audio
    return MotionInputs(
        context=torch.randn(batch, model.context_frames, MOTION_DIM, generator=generator),
        audio=torch.randn(batch, frames, audio.tokens_per_frame, audio.token_dim, generator=generator),
        label=torch.zeros(batch, frames, dtype=torch.long),
        sliders=torch.zeros(batch, frames, 5),
    )


@pytest.mark.parametrize("frames", range(1, 17))
def test_any_chunk_length_from_1_to_16_denoises_to_its_own_shape(frames):
    model = build_motion_model(seed=0)
    x = torch.randn(2, frames, MOTION_DIM)
    out = model.denoise(x, torch.tensor([0.5, 3.0]), _inputs(model, frames, batch=2))
    assert out.shape == (2, frames, MOTION_DIM)
    assert torch.isfinite(out).all()


def test_chunks_longer_than_16_or_the_wrong_context_are_refused():
    model = build_motion_model(seed=0)
    with pytest.raises(ValueError, match="1..16 frames, got 17"):
        model.denoise(torch.randn(1, 17, MOTION_DIM), torch.tensor(1.0), _inputs(model, 17))
    inputs = _inputs(model, 4)
    inputs.context = inputs.context[:, :2]
    with pytest.raises(ValueError, match="expected 4 context frames, got 2"):
        model.denoise(torch.randn(1, 4, MOTION_DIM), torch.tensor(1.0), inputs)


def test_a_seed_gives_the_same_weights_and_the_sample_depends_on_the_context_and_the_audio():
    a, b, other = build_motion_model(seed=3), build_motion_model(seed=3), build_motion_model(seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), other.state_dict().values()))
    torch.nn.init.normal_(a.denoiser.out.weight, std=0.1)  # the output layer starts at zero: give it a say
    x, sigma, inputs = torch.randn(1, 4, MOTION_DIM), torch.tensor(1.0), _inputs(a, 4)
    reference = a.denoise(x, sigma, inputs)
    for name in ("context", "audio"):
        changed = MotionInputs(**{**vars(inputs), name: getattr(inputs, name) + 1})
        assert not torch.allclose(a.denoise(x, sigma, changed), reference)


def test_a_motion_folder_round_trips_and_says_its_kind(tmp_path):
    model = build_motion_model(seed=1, code_mean=(0.1,) * MOTION_DIM, code_std=(0.5,) * MOTION_DIM)
    torch.nn.init.normal_(model.denoiser.out.weight, std=0.1)
    folder = save_motion_model(model, tmp_path / "motion")
    assert json.loads((folder / "model.json").read_text())["kind"] == "motion"
    assert model_kind(folder) == "motion"
    loaded = load_motion_model(folder)
    x, sigma, inputs = torch.randn(1, 3, MOTION_DIM), torch.tensor(2.0), _inputs(model, 3)
    assert torch.equal(loaded.denoise(x, sigma, inputs), model.denoise(x, sigma, inputs))
    assert torch.equal(loaded.code_std, torch.full((MOTION_DIM,), 0.5))
    message = r'is a motion model .*"kind": "motion".* a latent model .*"kind": "latent"'
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_a_latent_folder_is_refused_as_motion_and_folders_without_a_kind_are_latent(tiny_model_dir, tmp_path):
    meta = json.loads((tiny_model_dir / "model.json").read_text())
    assert meta["kind"] == "latent"
    meta.pop("kind")
    copy = tmp_path / "old"
    copy.mkdir()
    for file in tiny_model_dir.iterdir():
        (copy / file.name).write_bytes(file.read_bytes())
    (copy / "model.json").write_text(json.dumps(meta))
    assert model_kind(copy) == "latent"
    load_model(copy)  # models written before "kind" existed keep loading
    with pytest.raises(CheckpointError, match=r'is a latent model .*but a motion model .*default/motion'):
        load_motion_model(copy)


def test_an_unknown_kind_is_named(tmp_path):
    folder = save_motion_model(build_motion_model(), tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps(meta | {"kind": "voxels"}))
    with pytest.raises(CheckpointError, match="unknown kind 'voxels'"):
        load_motion_model(folder)


def test_unknown_build_settings_are_named():
    with pytest.raises(ValueError, match="unknown motion model settings \\['depth'\\]"):
        build_motion_model(depth=3)
