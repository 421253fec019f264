"""The expression stage: a one-step student learns what each slider changes from synthetic chunks rendered twice,
with the sliders held and with some of them moving (training.expression makes those chunks), its mouth anchored to
its start; it also reads the slider values its motion frames were made with (DenoiserConfig.motion_expression).
Its recipe is training.config.ExpressionRecipe."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from avatar_desktop.config import EXPRESSION_COMPONENTS
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.store import save_model
from avatar_desktop.training.common import chunk_length, freeze, provenance, recorded_provenance
from avatar_desktop.training.config import LoadedRecipe
from avatar_desktop.training.expression import encode_batch, record_clips, sample_expression_chunks
from avatar_desktop.training.loop import train
from avatar_desktop.training.stages.shared import check_curriculum, load_init, noised_motion


class ExpressionObjective(nn.Module):
    """Slider loss of a one-step student on chunks rendered twice (training.expression.sample_expression_chunks,
    then encode_batch, plus noise (B, T, C, h, w), motion_sigma (B,) and motion_noise (B, M, C, h, w)).

    Each version v (held, changed): ||S_v - target_v||^2 with S_v the student's one-step output from sigma_max,
    target_v the rendered latents outside the mouth box and the frozen anchor's output inside it (chunks whose
    motion frames are `natural` take the anchor everywhere in their held version); plus difference_weight *
    ||(S_changed - S_held) - (x_changed - x_held)||^2, what the changed sliders alone should change."""

    def __init__(self, student: AvatarModel, anchor: AvatarModel, difference_weight: float):
        super().__init__()
        self.student = student
        self.anchor = anchor  # frozen
        self.difference_weight = difference_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noise = batch["noise"]
        sigma = noise.new_full((len(noise),), self.student.config.sampling.sigma_max)
        x = noise * sigma[:, None, None, None, None]
        with torch.no_grad():  # the audio encoder is frozen and the same in both networks
            audio = self.student.audio_encoder(batch["windows"])
        motion = noised_motion(batch)
        outputs = {}
        loss = noise.new_zeros(())
        for version in ("held", "changed"):
            cond = DenoiserInputs(reference=batch["reference"], motion=motion, audio=audio, label=batch["label"],
                                  expression=batch[f"{version}_expression"],
                                  motion_expression=batch["motion_expression"])
            with torch.no_grad():
                anchored = self.anchor.denoise(x, sigma, cond)
            mouth = batch[f"{version}_mouth"]
            target = mouth * anchored + (1 - mouth) * batch[f"{version}_x0"]
            if version == "held":
                target = torch.where(batch["natural"][:, None, None, None, None], anchored, target)
            outputs[version] = self.student.denoise(x, sigma, cond)
            loss = loss + ((outputs[version] - target) ** 2).mean()
        change = outputs["changed"] - outputs["held"]
        true_change = batch["changed_x0"] - batch["held_x0"]
        return loss + self.difference_weight * ((change - true_change) ** 2).mean()


def train_expression(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    student = load_init(loaded)
    sampling = student.config.sampling
    if (sampling.parameterization, sampling.steps) != ("consistency", 1):
        raise AvatarError(f"expression: {recipe.init} is a {sampling.parameterization!r} model with {sampling.steps} "
                          "steps; this stage fine-tunes a one-step consistency student (a distill stage with "
                          "student_steps = 1)")
    check_curriculum(recipe.curriculum, student.config)
    started_from = recorded_provenance(loaded.resolve(recipe.init))
    anchor = freeze(copy.deepcopy(student))
    taught = np.array([name in recipe.sliders for name in EXPRESSION_COMPONENTS])
    warped = np.flatnonzero(~taught).tolist()  # the engine warps them and tells the denoiser 0
    student = expression_student(student, recipe.slider_speed, recipe.sliders)
    for network in (student.autoencoder, student.audio_encoder):
        freeze(network)
    student.denoiser.requires_grad_(True).train()
    clips = record_clips(data, student.autoencoder)
    objective = ExpressionObjective(student, anchor, recipe.difference_weight)
    config = student.config
    size = config.autoencoder.image_size
    latent_size = student.latent_shape[-1]

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        frames = chunk_length(step, recipe.curriculum, generator)
        sample = sample_expression_chunks(clips, recipe.run.batch_size, frames, config.denoiser.num_motion_frames,
                                          config.audio, config.fps, generator, recipe.change_share,
                                          recipe.slider_speed / config.fps, size, latent_size, taught)
        for key in ("held_expression", "changed_expression", "motion_expression"):
            sample[key][:, warped] = 0
        sample = encode_batch(student.autoencoder, sample)
        sample["noise"] = torch.randn(sample["held_x0"].shape, generator=generator)
        sample["motion_sigma"] = torch.rand(recipe.run.batch_size, generator=generator) * recipe.motion_noise_max
        sample["motion_noise"] = torch.randn(sample["motion"].shape, generator=generator)
        return sample

    def export(step: int) -> None:
        save_model(student, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="expression", resume=resume, on_save=export,
                 parameters=list(student.denoiser.parameters()))


def expression_student(model: AvatarModel, slider_speed: float,
                       taught: tuple[str, ...] = EXPRESSION_COMPONENTS) -> AvatarModel:
    """`model` with DenoiserConfig.motion_expression on, SamplingConfig.slider_speed set and the sliders not `taught`
    left to the engine's warp (SamplingConfig.warped_sliders; the taught ones go to the denoiser). The expression
    embedding's new inputs (the motion frames' slider values m) start with the negated weights of the chunk's values
    e, so that its first layer reads W (e - m): a slider held since the motion frames asks for no change (they show
    it already), one that just moved asks for what the model did before. Training then learns what else the pair
    tells."""
    denoiser = dataclasses.replace(model.config.denoiser, motion_expression=True)
    sampling = dataclasses.replace(model.config.sampling, slider_speed=slider_speed,
                                   warped_sliders=tuple(name for name in EXPRESSION_COMPONENTS if name not in taught))
    student = AvatarModel(dataclasses.replace(model.config, denoiser=denoiser, sampling=sampling),
                          autoencoder=model.autoencoder)
    state = model.state_dict()
    if not model.config.denoiser.motion_expression:
        key = "denoiser.expression_embedding.0.weight"
        state[key] = torch.cat([state[key], -state[key]], dim=1)
    student.load_state_dict(state)
    return student
