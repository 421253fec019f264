"""Model folders on disk: `model.json` (config, preset, provenance) + one safetensors file per network + MODEL_CARD.md.

Reading a folder's model.json and finding folders by name is models/folders.py (no torch). A folder's `"kind"` says
which path it serves: `"latent"` (an AvatarModel that draws every pixel; the default when
absent) or `"motion"` (a MotionModel of the photo path: `audio_encoder` and `denoiser` networks only).

Only safetensors are read: pickle checkpoints (.pt, .pth, .bin, .ckpt) are refused, never unpickled.
Writes are atomic: a folder is written next to its target and renamed into place.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from avatar_desktop.audio.features import LogMel
from avatar_desktop.config import ModelConfig, MotionModelConfig
from avatar_desktop.errors import CheckpointError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.folders import (  # noqa: F401  (the folder functions are imported from here too)
    DEFAULT_MOTION_MODEL,
    FORMAT,
    FORMAT_VERSION,
    KINDS,
    MODELS_ENV,
    PICKLE_SUFFIXES,
    list_models,
    model_kind,
    model_search_path,
    read_any_model_config,
    read_model_config,
    read_motion_model_config,
    resolve_model,
)
from avatar_desktop.models.motion import MotionModel

NETWORKS = ("autoencoder", "audio_encoder", "denoiser")
MOTION_NETWORKS = ("audio_encoder", "denoiser")


def save_model(model: AvatarModel, folder: str | Path, *, provenance: dict[str, Any] | None = None, card: str | None = None) -> Path:
    """Write `model` to `folder` (replaced atomically if it exists). Returns the folder."""
    return _write_folder(folder, "latent", model.config.preset, model.config.to_dict(),
                         {name: getattr(model, name) for name in NETWORKS}, provenance, card)


def save_motion_model(model: MotionModel, folder: str | Path, *, provenance: dict[str, Any] | None = None,
                      card: str | None = None) -> Path:
    """Write a motion model to `folder` ("kind": "motion"; replaced atomically if it exists). Returns the folder."""
    return _write_folder(folder, "motion", "motion", model.config.to_dict(),
                         {name: getattr(model, name) for name in MOTION_NETWORKS}, provenance, card)


def _write_folder(folder: str | Path, kind: str, preset: str, config: dict[str, Any],
                  networks: dict[str, torch.nn.Module], provenance: dict[str, Any] | None, card: str | None) -> Path:
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "kind": kind,
            "preset": preset,
            "config": config,
            "provenance": provenance or {},
        }
        (staging / "model.json").write_text(json.dumps(meta, indent=2) + "\n")
        for name, network in networks.items():
            state = {k: v.detach().contiguous().cpu() for k, v in network.state_dict().items()}
            save_file(state, staging / f"{name}.safetensors")
        (staging / "MODEL_CARD.md").write_text(card or f"# {folder.name}\n\nPreset `{preset}`. No card written yet.\n")
        if folder.exists():
            backup = folder.with_name(f".{folder.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            folder.rename(backup)
            staging.rename(folder)
            shutil.rmtree(backup)
        else:
            staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def load_model(name_or_dir: str | Path, *, device: str = "cpu", config: ModelConfig | None = None) -> AvatarModel:
    """Load a model folder (or a name on the search path) into an AvatarModel in eval mode. config: the folder's,
    when it was read already (a ModelSpec's): model.json is then not read again."""
    folder = resolve_model(name_or_dir)
    if config is None:
        config, meta = read_model_config(folder)
        _check_torch_folder(folder, meta)
    with torch.device("meta"):
        model = AvatarModel(config)
    for name in NETWORKS:
        file = folder / f"{name}.safetensors"
        if not file.is_file():
            raise CheckpointError(f"{folder} is missing {file.name}: the model folder is incomplete")
        try:
            state = load_file(file, device=device)
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{file} is not a readable safetensors file ({error})") from None
        _check_state(getattr(model, name), state, file)
        getattr(model, name).load_state_dict(state, strict=True, assign=True)
    _materialise_buffers(model, device)
    return model.eval()


def load_motion_model(name_or_dir: str | Path = DEFAULT_MOTION_MODEL, *, device: str = "cpu",
                      config: MotionModelConfig | None = None) -> MotionModel:
    """Load a motion model folder (or a name on the search path, such as default/motion) in eval mode. config: the
    folder's, when it was read already (a ModelSpec's): model.json is then not read again."""
    folder = resolve_model(name_or_dir)
    if config is None:
        config, meta = read_motion_model_config(folder)
        _check_torch_folder(folder, meta)
    try:
        model = MotionModel(config)
    except ValueError as error:
        raise CheckpointError(f"{folder / 'model.json'}: bad config: {error}") from None
    for name in MOTION_NETWORKS:
        file = folder / f"{name}.safetensors"
        if not file.is_file():
            raise CheckpointError(f"{folder} is missing {file.name}: the model folder is incomplete")
        try:
            state = load_file(file, device="cpu")
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{file} is not a readable safetensors file ({error})") from None
        _check_state(getattr(model, name), state, file)
        getattr(model, name).load_state_dict(state, strict=True)
    return model.to(device).eval()


def _check_torch_folder(folder: Path, meta: dict[str, Any]) -> None:
    """CheckpointError when `folder` (whose model.json is `meta`) is an ONNX export, which has no torch weights."""
    if meta.get("backend", "torch") != "torch":
        raise CheckpointError(f"{folder} is an ONNX export (\"backend\": \"onnx\"), which runs on --backend onnx; "
                              "torch needs the model folder it was exported from")


def _check_state(network: torch.nn.Module, state: dict[str, torch.Tensor], file: Path) -> None:
    """CheckpointError naming `file` when `state` does not fit `network` or holds NaN or infinite weights."""
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = [
        f"{k}: file {tuple(state[k].shape)} vs config {tuple(v.shape)}"
        for k, v in expected.items() if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensors missing (e.g. {', '.join(missing[:3])})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {', '.join(unexpected[:3])})")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (e.g. {'; '.join(mismatched[:3])})")
    if problems:
        raise CheckpointError(
            f"{file} does not match the architecture in model.json: {'; '.join(problems)}. "
            "The weights belong to another model or preset."
        )
    broken = {name: int((~torch.isfinite(tensor)).sum()) for name, tensor in state.items()
              if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())}  # counted where needed
    if broken:
        examples = ", ".join(f"{name} ({count})" for name, count in list(broken.items())[:3])
        raise CheckpointError(
            f"{file} holds {sum(broken.values())} weights that are not numbers (NaN or infinity) in {len(broken)} "
            f"tensors, e.g. {examples}: the model is damaged (a diverged training run?); use an earlier or "
            "another model"
        )


def _materialise_buffers(model: AvatarModel, device: str) -> None:
    """Rebuild the non-persistent buffers (mel filters, window) that meta-device construction left empty."""
    model.audio_encoder.log_mel = LogMel(model.config.audio).to(device)
    leftover = [name for name, tensor in [*model.named_parameters(), *model.named_buffers()] if tensor.is_meta]
    if leftover:
        raise CheckpointError(f"internal error: tensors not restored from the checkpoint: {', '.join(leftover[:5])}")
