"""Model folders: bit-exact round trip, name resolution, and clear refusals of anything else."""

import json
import pickle
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar_desktop.errors import CheckpointError
from avatar_desktop.models.presets import build_model, tiny_test_config
from avatar_desktop.models.store import MODELS_ENV, list_models, load_model, model_search_path, save_model


def test_round_trip_is_bit_exact(tiny_model, tmp_path):
    folder = save_model(tiny_model, tmp_path / "m", provenance={"trained_on": "nothing"})
    assert sorted(p.name for p in folder.iterdir()) == [
        "MODEL_CARD.md", "audio_encoder.safetensors", "autoencoder.safetensors", "denoiser.safetensors", "model.json",
    ]
    loaded = load_model(folder)
    assert loaded.config == tiny_model.config
    original, restored = tiny_model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    for key in original:
        assert torch.equal(original[key], restored[key]), key
    assert torch.equal(loaded.audio_encoder.log_mel.filters, tiny_model.audio_encoder.log_mel.filters)
    assert json.loads((folder / "model.json").read_text())["provenance"] == {"trained_on": "nothing"}


def test_saving_again_replaces_the_folder_atomically(tiny_model, tmp_path):
    save_model(tiny_model, tmp_path / "m")
    other = build_model(tiny_test_config(), seed=7)
    save_model(other, tmp_path / "m")
    assert torch.equal(load_model(tmp_path / "m").denoiser.conv_in.weight, other.denoiser.conv_in.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no staging or backup folders left


def test_names_resolve_on_the_search_path(tiny_model, tmp_path, monkeypatch):
    save_model(tiny_model, tmp_path / "mine")
    monkeypatch.setenv(MODELS_ENV, str(tmp_path))
    assert list_models()["mine"] == tmp_path / "mine"
    assert load_model("mine").config == tiny_model.config
    with pytest.raises(CheckpointError, match=r"no model named 'nope' \(available: .*mine"):
        load_model("nope")


def test_a_frozen_build_finds_the_models_in_its_bundle(tiny_model, tmp_path, monkeypatch):
    """PyInstaller's bootloader sets sys._MEIPASS to the bundle folder, which holds models/ (the spec puts it there)."""
    save_model(tiny_model, tmp_path / "bundle" / "models" / "default")
    monkeypatch.delenv(MODELS_ENV, raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data-home"))
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path / "bundle"), raising=False)
    assert model_search_path()[-1] == tmp_path / "bundle" / "models"
    assert list_models() == {"default": tmp_path / "bundle" / "models" / "default"}
    assert load_model("default").config == tiny_model.config


def test_pickle_file_is_refused_without_unpickling(tmp_path):
    class Bomb:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(CheckpointError, match="pickle checkpoint"):
        load_model(path)
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Bomb()))
    with pytest.raises(CheckpointError, match="never loaded: convert them to safetensors"):
        load_model(folder)


def test_missing_tensors_are_named(tiny_model, tmp_path):
    folder = save_model(tiny_model, tmp_path / "m")
    state = load_file(folder / "denoiser.safetensors")
    del state["conv_in.weight"]
    save_file(state, folder / "denoiser.safetensors")
    with pytest.raises(CheckpointError, match=r"1 tensors missing \(e.g. conv_in.weight\)"):
        load_model(folder)
    (folder / "audio_encoder.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing audio_encoder.safetensors"):
        load_model(folder)


def test_mismatched_shapes_say_the_weights_belong_elsewhere(tiny_model, tmp_path):
    folder = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["denoiser"]["block_channels"] = [32, 32]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape mismatches .*another model or preset"):
        load_model(folder)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda f: (f / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda f: (f / "model.json").write_text('{"format": "other"}'), "not an avatar-desktop model"),
        (lambda f: (f / "model.json").unlink(), "no model.json"),
        (lambda f: (f / "autoencoder.safetensors").write_bytes(b"\x00" * 16), "not a readable safetensors"),
    ],
)
def test_damaged_folders_give_clear_errors(tiny_model, tmp_path, damage, message):
    folder = save_model(tiny_model, tmp_path / "m")
    damage(folder)
    with pytest.raises(CheckpointError, match=message):
        load_model(folder)


def test_unknown_config_key_is_named(tiny_model, tmp_path):
    folder = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["denoiser"]["wings"] = 2
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"model.denoiser: unknown key\(s\) \['wings'\]"):
        load_model(folder)


def test_an_unknown_warped_slider_is_named(tiny_model, tmp_path):
    folder = save_model(tiny_model, tmp_path / "m")
    meta = json.loads((folder / "model.json").read_text())
    meta["config"]["sampling"]["warped_sliders"] = ["smile", "tilt"]
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"sampling.warped_sliders names 'tilt': expected names from smile"):
        load_model(folder)
