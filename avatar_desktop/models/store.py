"""Model folders on disk: `model.json` (config, preset, provenance) + one safetensors file per network + MODEL_CARD.md.

A folder's `"kind"` says which path it serves: `"latent"` (an AvatarModel that draws every pixel; the default when
absent) or `"motion"` (a MotionModel of the photo path: `audio_encoder` and `denoiser` networks only).

Only safetensors are read: pickle checkpoints (.pt, .pth, .bin, .ckpt) are refused, never unpickled.
Writes are atomic: a folder is written next to its target and renamed into place.
"""

from __future__ import annotations

import json
import os
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
from avatar_desktop.files import app_root
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.motion import MotionModel

FORMAT = "avatar-desktop-model"
FORMAT_VERSION = 1
NETWORKS = ("autoencoder", "audio_encoder", "denoiser")
MOTION_NETWORKS = ("audio_encoder", "denoiser")
KINDS = {"latent": "a latent model (it draws every pixel of the characters it was trained on)",
         "motion": "a motion model (the photo path: it moves a photo)"}
DEFAULT_MOTION_MODEL = "default/motion"
PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".ckpt", ".pkl", ".pickle"}
MODELS_ENV = "AVATAR_DESKTOP_MODELS"
"""os.pathsep-separated folders searched for model names before the user and repository folders."""


def model_search_path() -> list[Path]:
    """Folders where model names are looked up, in order: $AVATAR_DESKTOP_MODELS, the user's folder, the models/ of
    the repository or of the installed bundle (files.app_root)."""
    paths = [Path(p) for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    data_home = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    paths.append(data_home / "avatar-desktop" / "models")
    paths.append(app_root() / "models")
    return paths


def list_models() -> dict[str, Path]:
    """Model name -> folder, for every folder with a model.json on the search path (first one wins)."""
    found: dict[str, Path] = {}
    for root in model_search_path():
        if root.is_dir():
            for folder in sorted(root.iterdir()):
                if (folder / "model.json").is_file():
                    found.setdefault(folder.name, folder)
    return found


def resolve_model(name_or_dir: str | Path) -> Path:
    """A folder path, or a model name looked up on the search path; unknown names list the available models."""
    candidate = Path(name_or_dir)
    if candidate.is_dir():
        return candidate
    if not candidate.is_absolute() and not candidate.suffix:  # a nested name such as default/motion
        for root in model_search_path():
            if (root / candidate / "model.json").is_file():
                return root / candidate
    if candidate.suffix or os.sep in str(name_or_dir):
        return candidate
    available = list_models()
    if str(name_or_dir) in available:
        return available[str(name_or_dir)]
    names = ", ".join(sorted(available)) or "none installed"
    raise CheckpointError(
        f"no model named {name_or_dir!r} (available: {names}); pass a model folder, "
        f"or use --preset NAME --random-weights for an untrained network"
    )


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


def read_model_config(folder: str | Path) -> tuple[ModelConfig, dict[str, Any]]:
    """(config, full model.json) of a latent model folder, with clear errors for foreign, unsafe or motion folders."""
    return _read_config(Path(folder), "latent", ModelConfig)


def read_motion_model_config(folder: str | Path) -> tuple[MotionModelConfig, dict[str, Any]]:
    """(config, full model.json) of a motion model folder ("kind": "motion")."""
    return _read_config(Path(folder), "motion", MotionModelConfig)


def read_any_model_config(folder: str | Path) -> tuple[str, ModelConfig | MotionModelConfig]:
    """(kind, config) of a model folder of either kind, model.json read once and checked as the loaders check it
    (engine/model_spec.py's one check of a model before any worker loads it)."""
    folder = Path(folder)
    meta = _read_meta(folder, None)
    kind = meta.get("kind", "latent")
    return kind, _config_from(meta, folder, MotionModelConfig if kind == "motion" else ModelConfig)


def _read_config(folder: Path, kind: str, config_class):
    """(config_class built from model.json's "config", full model.json) of a model folder of `kind`."""
    meta = _read_meta(folder, kind)
    return _config_from(meta, folder, config_class), meta


def _config_from(meta: dict[str, Any], folder: Path, config_class):
    """config_class built from model.json's "config"; CheckpointError naming the file when it does not fit."""
    try:
        return config_class.from_dict(meta["config"])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{folder / 'model.json'}: bad config: {error}") from None


def model_kind(folder: str | Path) -> str:
    """The "kind" a model folder's model.json states ("latent" when it names none)."""
    return _read_meta(Path(folder), None).get("kind", "latent")


def _read_meta(folder: Path, kind: str | None) -> dict[str, Any]:
    """model.json of `folder`, checked to be ours and (unless kind is None) of `kind`."""
    if folder.is_file():
        what = "a pickle checkpoint" if folder.suffix in PICKLE_SUFFIXES else "a file"
        raise CheckpointError(f"{folder} is {what}, not a model folder: a model is a folder with model.json and *.safetensors")
    if not folder.is_dir():
        raise CheckpointError(f"model folder {folder} does not exist")
    meta_file = folder / "model.json"
    if not meta_file.is_file():
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        hint = f" It holds pickle files ({', '.join(pickles)}), which are never loaded: convert them to safetensors." if pickles else ""
        raise CheckpointError(f"{folder} has no model.json, so it is not an avatar-desktop model.{hint}")
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{meta_file} is not valid JSON ({error}); the model folder is damaged") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_file} is not an avatar-desktop model description (format {FORMAT!r} expected)")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{folder} was written by a newer avatar-desktop (format {meta['format_version']}); upgrade to load it")
    found = meta.get("kind", "latent")
    if found not in KINDS:
        raise CheckpointError(f"{meta_file} names an unknown kind {found!r}: expected one of {', '.join(KINDS)}")
    if kind is not None and found != kind:
        hint = (f"pass a motion model folder (such as {DEFAULT_MOTION_MODEL})" if kind == "motion"
                else "pass a latent model folder (such as default), or run it on the photo path")
        raise CheckpointError(f"{folder} is {KINDS[found]} (\"kind\": \"{found}\"), but {KINDS[kind]} "
                              f"(\"kind\": \"{kind}\") is needed here: {hint}")
    return meta


def load_model(name_or_dir: str | Path, *, device: str = "cpu", config: ModelConfig | None = None) -> AvatarModel:
    """Load a model folder (or a name on the search path) into an AvatarModel in eval mode. config: the folder's,
    when it was read already (a ModelSpec's): model.json is then not read again."""
    folder = resolve_model(name_or_dir)
    config = config or read_model_config(folder)[0]
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
    config = config or read_motion_model_config(folder)[0]
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
