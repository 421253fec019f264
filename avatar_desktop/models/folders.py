"""Model folders without torch: where they are looked up by name, and their model.json read and checked
(models/store.py loads the torch weights; engine/onnx_runtime.py runs an exported folder, "backend": "onnx")."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from avatar_desktop.config import ModelConfig, MotionModelConfig
from avatar_desktop.errors import CheckpointError
from avatar_desktop.files import app_root

FORMAT = "avatar-desktop-model"
FORMAT_VERSION = 1
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


def read_model_meta(folder: str | Path) -> dict[str, Any]:
    """The whole model.json of a model folder of either kind, checked to be ours."""
    return _read_meta(Path(folder), None)


def model_backend(folder: str | Path) -> str:
    """The "backend" a model folder's model.json states: "torch" (safetensors weights; when it names none) or
    "onnx" (graphs written by `avatar-desktop export`)."""
    return read_model_meta(folder).get("backend", "torch")


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
