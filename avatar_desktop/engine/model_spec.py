"""Which model runs, and on which path (DESIGN.md 5b): `ModelSpec`, and `open_generator()` that builds the generator
for a portrait and prepares it.

Two paths stream through the same prepare()/step() contract:
- the photo renderer (engine/photo.py): a motion model moves the photo's own pixels; any portrait with a face;
- the latent model (engine/streaming.py): a diffusion model draws every pixel; the faces it was trained on (the
  bundled drawn characters, or a user's footage).

A ModelSpec is checked once, when it is made (in the main process: the commands, the window's model picker); the
worker and `open_generator` take its kind, folder and config as they are.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avatar_desktop.config import EngineConfig, ModelConfig, MotionModelConfig
from avatar_desktop.errors import AvatarError, CheckpointError


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run, resolved and checked when made.

    name: a model folder or a name under models/; its model.json says its kind (a motion model runs the photo
    renderer, a latent model draws the frames). None: automatic, the photo renderer with the default motion model
    (models/default/motion, the portrait must show a face; torch weights in a checkout, an ONNX export in the
    installed app). With `random_weights`, `name` is a latent preset built with seeded random weights
    (benchmarks: speed does not depend on the values).
    `backend`: 'torch', 'onnx' (an export, engine/onnx_runtime.py) or 'tensorrt' (an export on an NVIDIA GPU,
    engine/tensorrt_runtime.py; never chosen unless asked for); None: the folder's ("backend" in model.json; torch
    for presets), and once made, the backend that runs.
    Raises CheckpointError (no such model, a damaged or foreign model.json, a backend the folder has no weights
    for, a torch model where torch is not installed, tensorrt without its packages) or AvatarError (no such
    preset), each saying what to do. Made, it holds `kind` ('motion' or 'latent'), `folder` (None for presets) and
    `config` (the folder's or the preset's).
    """

    name: str | None = None
    random_weights: bool = False
    backend: str | None = None
    kind: str = field(init=False)
    folder: Path | None = field(init=False)
    config: ModelConfig | MotionModelConfig | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.random_weights:
            from avatar_desktop.models.presets import PRESETS

            if self.name not in PRESETS:
                raise AvatarError(f"unknown preset {self.name!r}: available presets are {', '.join(PRESETS)}")
            kind, folder, config, backend = "latent", None, PRESETS[self.name], "torch"
        else:
            from avatar_desktop.models.folders import (DEFAULT_MOTION_MODEL, model_backend, read_any_model_config,
                                                       resolve_model)

            folder = resolve_model(self.name or DEFAULT_MOTION_MODEL)
            kind, config = read_any_model_config(folder)
            backend = model_backend(folder)
        what = folder or f"preset {self.name}"
        if self.backend == "tensorrt" and backend == "onnx":
            backend = "tensorrt"  # the export's graphs, built into TensorRT engines
        if self.backend not in (None, backend):
            hint = ("export it first (`avatar-desktop export --model MODEL --out FOLDER`) and pass that folder"
                    if self.backend in ("onnx", "tensorrt") else "pass the torch model folder it was exported from")
            raise CheckpointError(f"{what} runs on --backend {backend}, not {self.backend}: {hint}")
        if backend == "tensorrt":
            from avatar_desktop.engine.tensorrt_runtime import missing_package

            if (missing := missing_package()) is not None:
                raise CheckpointError(missing)
        if backend == "torch" and not torch_installed():
            raise CheckpointError(f"{what} runs on torch, which this install does not have (it runs ONNX exports on "
                                  f"onnxruntime): pass an exported model folder (`avatar-desktop export` in a source "
                                  f"checkout with torch, `pip install .[train]`)")
        for attribute, value in (("kind", kind), ("folder", folder), ("config", config), ("backend", backend)):
            object.__setattr__(self, attribute, value)  # frozen: set once, here

    @property
    def label(self) -> str:
        """What a status line calls it."""
        if self.name is None:
            return "automatic"
        return f"{self.name} (random weights)" if self.random_weights else self.name


def torch_installed() -> bool:
    """Whether torch can be imported (a source install with `.[train]`), without importing it."""
    try:
        return importlib.util.find_spec("torch") is not None
    except ImportError:  # an import hook that refuses it
        return False


def open_generator(spec: ModelSpec, portrait: np.ndarray, config: EngineConfig = EngineConfig(), *,
                   frame_limit: tuple[int, int] | None = None, fps: int | None = None, expression=None,
                   source: str = "portrait"):
    """Build the generator that `spec` names (checked when it was made: used as it is) for `portrait` (uint8
    (H, W, 3) RGB) and prepare it.

    Returns a StreamingGenerator or a PhotoStreamingGenerator; its `path` says which. The photo path raises
    avatar_desktop.face.NoFaceError when the portrait shows no usable face (the message says what to do).
    frame_limit: (width, height) the photo path fits its frames inside (the camera's size); None: the photo's own.
    fps: frames a second the photo path makes (the camera's rate); None: its motion model's. The latent path makes
    its model's rate whatever these say (the camera repeats frames to fill its own).
    """
    if spec.kind == "motion":
        from avatar_desktop.engine.photo import PhotoStreamingGenerator

        generator = PhotoStreamingGenerator(load_spec_model(spec, config), config, frame_limit=frame_limit, fps=fps)
        generator.prepare(portrait, expression, source=source)
        return generator
    generator = latent_generator(spec, config)
    generator.prepare(portrait, expression)
    return generator


def latent_generator(spec: ModelSpec, config: EngineConfig = EngineConfig()):
    """The generator of a latent model spec on its backend, not yet prepared: a StreamingGenerator (torch) or an
    OnnxStreamingGenerator (onnx, tensorrt)."""
    if spec.backend in ("onnx", "tensorrt"):
        from avatar_desktop.engine.onnx_runtime import OnnxStreamingGenerator

        return OnnxStreamingGenerator(load_spec_model(spec, config), config)
    from avatar_desktop.engine.streaming import StreamingGenerator

    return StreamingGenerator(load_spec_model(spec, config), config)


def load_spec_model(spec: ModelSpec, config: EngineConfig = EngineConfig()):
    """The model `spec` names: an ExportedModel opened at config.precision with config.threads (split between
    the sampler and the decoder with config.overlap_decode; engine/onnx_runtime.py) on the ONNX backend, a
    TensorRTModel at config.precision on config.device (engine/tensorrt_runtime.py) on TensorRT; on torch the module
    (a preset's with seeded random weights)."""
    if spec.backend == "onnx":
        from avatar_desktop.engine.onnx_runtime import ExportedModel
        from avatar_desktop.models.folders import read_model_meta

        return ExportedModel(spec.folder, read_model_meta(spec.folder), precision=config.precision,
                             threads=config.threads,
                             overlap_decode=config.overlap_decode and spec.kind == "latent")
    if spec.backend == "tensorrt":
        from avatar_desktop.engine.tensorrt_runtime import TensorRTModel
        from avatar_desktop.models.folders import read_model_meta

        return TensorRTModel(spec.folder, read_model_meta(spec.folder), precision=config.precision,
                             device=config.device)
    if spec.kind == "motion":
        from avatar_desktop.models.store import load_motion_model

        return load_motion_model(spec.folder, config=spec.config)
    if spec.random_weights:
        from avatar_desktop.models.presets import build_model

        return build_model(spec.config, seed=config.seed)
    from avatar_desktop.models.store import load_model

    return load_model(spec.folder, config=spec.config)
