"""The distill stage: consistency distillation (Song et al. 2023): the student at level sigma_{n+1} matches the EMA
target at sigma_n after one Heun step of the teacher's ODE between the two levels, the teacher guided against
silence when the recipe asks. Its recipe is training.config.DistillRecipe."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.store import save_model
from avatar_desktop.sampling import Denoiser, audio_guided, heun_step
from avatar_desktop.sampling.schedules import karras_sigmas
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


class DistillObjective(nn.Module):
    """Consistency distillation loss ||f_student(x_{n+1}, s_{n+1}) - f_target(x_hat_n, s_n)||^2."""

    def __init__(self, student: AvatarModel, teacher: AvatarModel, target: AvatarModel, sigmas: torch.Tensor,
                 audio_guidance: float = 1.0, mouth_weight: float = 0.0):
        super().__init__()
        self.student = student
        self.teacher = teacher  # frozen
        self.target = target  # EMA of the student, frozen
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.audio_guidance = audio_guidance
        self.mouth_weight = mouth_weight

    def _teacher_denoiser(self, batch: dict[str, torch.Tensor], motion: torch.Tensor) -> Denoiser:
        """The teacher's clean estimate (x, sigma) -> x0, guided against silence when audio_guidance != 1."""
        cond = conditioning(self.teacher, batch, motion)
        if self.audio_guidance == 1.0:
            return lambda x, sigma: self.teacher.denoise(x, sigma, cond)
        silent = conditioning(self.teacher, {**batch, "keep_audio": torch.zeros_like(batch["keep_audio"])}, motion)
        return audio_guided(lambda x, sigma: (self.teacher.denoise(x, sigma, cond),
                                              self.teacher.denoise(x, sigma, silent)), self.audio_guidance)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, index = batch["x0"], batch["level"]
        s_next, s_now = self.sigmas[index + 1], self.sigmas[index]
        x_next = x0 + s_next[:, None, None, None, None] * batch["noise"]
        motion = noised_motion(batch)
        with torch.no_grad():
            x_now = heun_step(self._teacher_denoiser(batch, motion), x_next, s_next, s_now)
            target = self.target.denoise(x_now, s_now, conditioning(self.target, batch, motion))
        prediction = self.student.denoise(x_next, s_next, conditioning(self.student, batch, motion))
        return weighted_mean((prediction - target) ** 2, batch, self.mouth_weight).mean()


def train_distill(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    teacher = freeze(load_init(loaded))
    started_from = recorded_provenance(loaded.resolve(recipe.init))
    if teacher.config.sampling.parameterization != "edm":
        raise AvatarError(f"distill: {recipe.init} is not a teacher (its parameterization is "
                          f"{teacher.config.sampling.parameterization!r}, expected 'edm')")
    check_curriculum(recipe.curriculum, teacher.config)
    sampling = dataclasses.replace(teacher.config.sampling, parameterization="consistency", sampler="consistency",
                                   steps=recipe.student_steps)
    student = copy.deepcopy(teacher)
    student.config = dataclasses.replace(teacher.config, sampling=sampling, chunks=recipe.chunks)
    student.denoiser.requires_grad_(True)
    student.audio_encoder.requires_grad_(not recipe.freeze_audio_encoder)
    student.train()
    student.autoencoder.eval()
    target = freeze(copy.deepcopy(student))
    sigmas = karras_sigmas(recipe.discretisation, teacher.config.sampling)[:-1].flip(0)  # ascending, sigma_min first
    clips = latent_cache(data, teacher)
    objective = DistillObjective(student, teacher, target, sigmas, recipe.audio_guidance, recipe.mouth_weight)

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        sample = diffusion_batch(recipe, teacher.config, clips, step, generator)
        sample["level"] = torch.randint(len(sigmas) - 1, (recipe.run.batch_size,), generator=generator)
        return sample

    trained = [p for p in student.parameters() if p.requires_grad]

    @torch.no_grad()
    def update_target(step: int) -> None:
        for ema, live in zip(target.parameters(), student.parameters()):
            ema.lerp_(live, 1 - recipe.ema_decay)

    def export(step: int) -> None:
        save_model(student, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="distill", resume=resume,
                 after_step=update_target, on_save=export, parameters=trained)
