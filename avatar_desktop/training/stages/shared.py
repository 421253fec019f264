"""What the latent model's stages share: the model they start from, the latent cache, and the diffusion chunks and
conditioning of the teacher and distill stages (the expression stage noises its motion frames the same way)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from avatar_desktop.config import ModelConfig
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.store import load_model
from avatar_desktop.training.common import chunk_length
from avatar_desktop.training.config import CurriculumConfig, DistillRecipe, LoadedRecipe, TeacherRecipe
from avatar_desktop.training.data import CachedClip, cache_latents, sample_chunks
from avatar_desktop.training.loop import Distributed


def load_init(loaded: LoadedRecipe) -> AvatarModel:
    """The model in the recipe's `init` folder: the previous stage's output."""
    return load_model(loaded.resolve(loaded.recipe.init))


def check_curriculum(curriculum: CurriculumConfig, config: ModelConfig) -> None:
    if curriculum.max_frames > config.denoiser.max_chunk_frames:
        raise AvatarError(f"curriculum.max_frames={curriculum.max_frames} exceeds the model's max_chunk_frames="
                          f"{config.denoiser.max_chunk_frames}")


def latent_cache(data: Path, model: AvatarModel) -> list[CachedClip]:
    """The training clips encoded by `model`'s autoencoder (training.data.cache_latents); under torchrun rank 0
    writes the cache and the other ranks wait for it, then read it."""
    ranks = Distributed.from_environment()
    if ranks.world > 1 and not ranks.is_main:
        torch.distributed.barrier()  # rank 0 writes the cache first
    clips = cache_latents(data, model.autoencoder)
    if ranks.world > 1 and ranks.is_main:
        torch.distributed.barrier()
    return clips


def diffusion_batch(recipe: TeacherRecipe | DistillRecipe, config: ModelConfig, clips: list[CachedClip], step: int,
                    generator: torch.Generator, audio_dropout: float = 0.0) -> dict[str, Any]:
    """sample_chunks of the curriculum's length for this step, with noise (B, T, C, h, w), motion_sigma (B,) up to
    the recipe's motion_noise_max, motion_noise (B, M, C, h, w) and keep_audio (B,): 0 for the `audio_dropout`
    share of chunks, which then hear silence."""
    size = recipe.run.batch_size
    frames = chunk_length(step, recipe.curriculum, generator)
    batch = sample_chunks(clips, size, frames, config.denoiser.num_motion_frames, config.audio, config.fps, generator)
    batch["noise"] = torch.randn(batch["x0"].shape, generator=generator)
    batch["motion_sigma"] = torch.rand(size, generator=generator) * recipe.motion_noise_max
    batch["motion_noise"] = torch.randn(batch["motion"].shape, generator=generator)
    batch["keep_audio"] = (torch.rand(size, generator=generator) >= audio_dropout).float()
    return batch


def conditioning(model: AvatarModel, batch: dict[str, torch.Tensor], motion: torch.Tensor) -> DenoiserInputs:
    """The denoiser's inputs for a diffusion batch, its audio silenced where keep_audio is 0."""
    windows = batch["windows"] * batch["keep_audio"][:, None, None]
    return DenoiserInputs(
        reference=batch["reference"], motion=motion, audio=model.audio_encoder(windows),
        label=batch["label"], expression=batch["expression"],
    )


def noised_motion(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The batch's motion frames (B, M, C, h, w) plus motion_noise scaled by each chunk's motion_sigma."""
    return batch["motion"] + batch["motion_sigma"][:, None, None, None, None] * batch["motion_noise"]


def weighted_mean(error: torch.Tensor, batch: dict[str, torch.Tensor], mouth_weight: float) -> torch.Tensor:
    """Squared error (B, T, C, h, w) -> per-sample mean (B,), the mouth cells weighted by 1 + mouth_weight."""
    if mouth_weight:
        error = error * (1 + mouth_weight * batch["mouth"])
    return error.mean(dim=(1, 2, 3, 4))
