"""Which model runs, and on which path (DESIGN.md 5b): `ModelSpec`, and `open_generator()` that builds the generator
for a portrait and prepares it.

Two paths stream through the same prepare()/step() contract:
- the photo renderer (engine/photo.py): a motion model moves the photo's own pixels; any portrait with a face;
- the latent model (engine/streaming.py): a diffusion model draws every pixel; the faces it was trained on (the
  bundled drawn characters, or a user's footage).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from avatar_desktop.config import EngineConfig


@dataclass(frozen=True)
class ModelSpec:
    """Which model to run.

    name: a model folder or a name under models/; its model.json says its kind (a motion model runs the photo
    renderer, a latent model draws the frames). None: automatic, the photo renderer with the default motion model
    (the portrait must show a face). With `random_weights`, `name` is a latent preset built with seeded random
    weights (benchmarks: speed does not depend on the values)."""

    name: str | None = None
    random_weights: bool = False

    @property
    def label(self) -> str:
        """What a status line calls it."""
        if self.name is None:
            return "automatic"
        return f"{self.name} (random weights)" if self.random_weights else self.name

    def kind(self) -> str:
        """'motion' or 'latent'."""
        if self.random_weights:
            return "latent"
        if self.name is None:
            return "motion"
        from avatar_desktop.models.store import model_kind, resolve_model

        return model_kind(resolve_model(self.name))


def open_generator(spec: ModelSpec, portrait: np.ndarray, config: EngineConfig = EngineConfig(), *,
                   frame_limit: tuple[int, int] | None = None, fps: int | None = None, expression=None,
                   source: str = "portrait"):
    """Build the generator that `spec` names for `portrait` (uint8 (H, W, 3) RGB) and prepare it.

    Returns a StreamingGenerator or a PhotoStreamingGenerator; its `path` says which. The photo path raises
    avatar_desktop.face.NoFaceError when the portrait shows no usable face (the message says what to do).
    frame_limit: (width, height) the photo path fits its frames inside (the camera's size); None: the photo's own.
    fps: frames a second the photo path makes (the camera's rate); None: its motion model's. The latent path makes
    its model's rate whatever these say (the camera repeats frames to fill its own).
    """
    if spec.kind() == "motion":
        from avatar_desktop.engine.photo import PhotoStreamingGenerator
        from avatar_desktop.models.store import DEFAULT_MOTION_MODEL, load_motion_model

        generator = PhotoStreamingGenerator(load_motion_model(spec.name or DEFAULT_MOTION_MODEL), config,
                                            frame_limit=frame_limit, fps=fps)
        generator.prepare(portrait, expression, source=source)
        return generator
    from avatar_desktop.engine.streaming import StreamingGenerator

    if spec.random_weights:
        from avatar_desktop.models.presets import build_model

        model = build_model(spec.name, seed=config.seed)
    else:
        from avatar_desktop.models.store import load_model

        model = load_model(spec.name)
    generator = StreamingGenerator(model, config)
    generator.prepare(portrait, expression)
    return generator
