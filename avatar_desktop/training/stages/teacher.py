"""The teacher stage: EDM denoising loss (Karras et al. 2022) on chunks of cached latents, with the variable-length
curriculum, noise-augmented motion frames and audio dropout. Its recipe is training.config.TeacherRecipe."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.presets import build_model
from avatar_desktop.models.store import load_model, save_model
from avatar_desktop.training.common import freeze, provenance, recorded_provenance
from avatar_desktop.training.config import LoadedRecipe
from avatar_desktop.training.loop import train
from avatar_desktop.training.stages.shared import (
    check_curriculum,
    conditioning,
    diffusion_batch,
    latent_cache,
    load_init,
    noised_motion,
    weighted_mean,
)


class TeacherObjective(nn.Module):
    """EDM loss: lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2."""

    def __init__(self, model: AvatarModel, mouth_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.mouth_weight = mouth_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, sigma = batch["x0"], batch["sigma"]
        cond = conditioning(self.model, batch, noised_motion(batch))
        denoised = self.model.denoise(x0 + sigma[:, None, None, None, None] * batch["noise"], sigma, cond)
        sd = self.model.config.sampling.sigma_data
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        return (weight * weighted_mean((denoised - x0) ** 2, batch, self.mouth_weight)).mean()


def train_teacher(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    previous = load_init(loaded)
    started_from = recorded_provenance(loaded.resolve(recipe.init))
    check_curriculum(recipe.curriculum, previous.config)
    further = previous.config.sampling.parameterization == "edm"  # init is a teacher: train it further
    if further and previous.config.sampling.reference_residual != recipe.reference_residual:
        raise AvatarError(f"{loaded.source}: init {recipe.init} is a teacher with reference_residual = "
                          f"{str(previous.config.sampling.reference_residual).lower()}; a teacher trained further keeps "
                          "it: set the same value, or start a new teacher from its audio stage with warm_start")
    sampling = dataclasses.replace(previous.config.sampling, parameterization="edm", sampler="heun",
                                   teacher_steps=recipe.teacher_steps, reference_residual=recipe.reference_residual)
    fresh = build_model(dataclasses.replace(previous.config, sampling=sampling), seed=recipe.run.seed)
    fresh.autoencoder.load_state_dict(previous.autoencoder.state_dict())
    fresh.audio_encoder.load_state_dict(previous.audio_encoder.state_dict())
    if further:
        fresh.denoiser.load_state_dict(previous.denoiser.state_dict())
    else:
        if recipe.warm_start:
            warm_start(fresh.denoiser, load_model(loaded.resolve(recipe.warm_start)).denoiser, recipe.warm_start)
        if recipe.reference_residual:  # a zero output: the first estimate is the reference itself
            nn.init.zeros_(fresh.denoiser.conv_out.weight)
            nn.init.zeros_(fresh.denoiser.conv_out.bias)
    frozen = [fresh.autoencoder] + ([fresh.audio_encoder] if recipe.freeze_audio_encoder else [])
    clips = latent_cache(data, fresh)
    objective = TeacherObjective(fresh.train(), recipe.mouth_weight)
    for network in frozen:
        freeze(network)

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        sample = diffusion_batch(recipe, fresh.config, clips, step, generator, recipe.audio_dropout)
        sample["sigma"] = torch.exp(recipe.p_mean + recipe.p_std * torch.randn(recipe.run.batch_size, generator=generator))
        return sample

    def export(step: int) -> None:
        save_model(fresh, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="teacher", resume=resume, on_save=export)


def warm_start(denoiser: nn.Module, source: nn.Module, name: str) -> None:
    """Copy `source`'s weights into `denoiser` wherever a name and shape match; the rest keep their initialisation."""
    own = denoiser.state_dict()
    matching = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise AvatarError(f"warm_start {name}: its denoiser shares no layer with this one (another preset?)")
    denoiser.load_state_dict(matching, strict=False)
    kept = len(own) - len(matching)
    print(f"warm start from {name}: {len(matching)} of {len(own)} tensors copied, {kept} keep their initialisation")
