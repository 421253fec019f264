"""Pieces every training stage uses, latent and motion alike: frozen networks, the chunk-length curriculum and the
provenance a stage writes into its model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from avatar_desktop.models.store import model_kind, read_model_config, read_motion_model_config
from avatar_desktop.training.config import CurriculumConfig, LoadedRecipe


def freeze(module: nn.Module) -> nn.Module:
    """`module` with gradients off for all its parameters, in eval mode (returned for chaining)."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def chunk_length(step: int, curriculum: CurriculumConfig, generator: torch.Generator) -> int:
    """L_max while step < fixed_until; then 1..4 with probability short_share, else 5..L_max (uniform within each)."""
    longest = curriculum.max_frames
    if step < curriculum.fixed_until or longest <= 1:
        return longest
    if longest <= 4 or float(torch.rand(1, generator=generator)) < curriculum.short_share:
        return int(torch.randint(1, min(4, longest) + 1, (1,), generator=generator))
    return int(torch.randint(5, longest + 1, (1,), generator=generator))


def recorded_provenance(folder: Path) -> dict[str, Any]:
    """The provenance a model folder (latent or motion) records in its model.json ({} when it records none)."""
    read = read_motion_model_config if model_kind(folder) == "motion" else read_model_config
    return read(folder)[1].get("provenance", {})


def provenance(loaded: LoadedRecipe, data: Path, step: int, started_from: dict[str, Any] | None) -> dict[str, Any]:
    """What a stage's model records of how it was made: the stage, its steps, the data set's folder name, the
    recipe's text and, under "init", `started_from`: the provenance of the model it started from
    (recorded_provenance of that folder), or None when it started from fresh weights (then there is no "init")."""
    made = {"stage": loaded.stage, "steps": step, "data": data.name, "recipe": loaded.text}
    return made if started_from is None else made | {"init": started_from}
