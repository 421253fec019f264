"""The autoencoder stage: L1 + multi-scale gradient loss on frames (the decoder alone, from blurred latents, or the
tiny decoder alone, on request). Its recipe is training.config.AutoencoderRecipe."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from avatar_desktop.errors import AvatarError
from avatar_desktop.models.autoencoder import decoder_parameters
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.presets import build_model, preset_config
from avatar_desktop.models.store import save_model
from avatar_desktop.training.common import freeze, provenance, recorded_provenance
from avatar_desktop.training.config import LoadedRecipe
from avatar_desktop.training.data import FramePool, training_clips
from avatar_desktop.training.loop import train
from avatar_desktop.training.stages.shared import load_init


def image_gradient_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                        scales: int = 3) -> torch.Tensor:
    """Mean L1 distance of horizontal and vertical finite differences at `scales` resolutions (B, 3, H, W), each
    difference weighted by `weight` (B, 1, H, W) at its first pixel (1 everywhere when None)."""
    if weight is None:
        weight = prediction.new_ones(1, 1, *prediction.shape[-2:])
    total = prediction.new_zeros(())
    for _ in range(scales):
        total = total + (weight[..., :, :-1] * (prediction.diff(dim=-1) - target.diff(dim=-1)).abs()).mean()
        total = total + (weight[..., :-1, :] * (prediction.diff(dim=-2) - target.diff(dim=-2)).abs()).mean()
        prediction, target, weight = (F.avg_pool2d(x, 2) for x in (prediction, target, weight))
    return total / scales


def blur_latents(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w), each sample blurred by a separable Gaussian of its own width sigma (B,) in latent
    cells (0: unchanged), with reflected borders."""
    taps = torch.arange(-2, 3, dtype=latents.dtype, device=latents.device)
    kernel = torch.exp(-taps**2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # (B, 5)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    b, c, h, w = latents.shape
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, 5): one kernel per channel of each sample
    x = F.pad(latents.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


class AutoencoderObjective(nn.Module):
    """Reconstruction loss of a batch of images (B, 3, H, W) in [-1, 1] whose mouth masks (B, 1, H, W) weigh
    1 + mouth_weight; a frozen encoder runs without gradients. A batch with `latent_blur` (B,) has its latents
    blurred by that many latent cells before decoding, while the target stays the sharp image. With `tiny`, the
    autoencoder's tiny decoder decodes."""

    def __init__(self, model: AvatarModel, gradient_weight: float, mouth_weight: float = 0.0, train_encoder: bool = True,
                 tiny: bool = False):
        super().__init__()
        self.model = model
        self.gradient_weight = gradient_weight
        self.mouth_weight = mouth_weight
        self.train_encoder = train_encoder
        self.tiny = tiny

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["images"]
        weight = 1 + self.mouth_weight * batch["mouth"]
        ae = self.model.autoencoder
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            latents = ae.encode(images)
        if "latent_blur" in batch:
            latents = blur_latents(latents, batch["latent_blur"])
        reconstruction = ae.tiny_decoder(latents) if self.tiny else ae.decode(latents)
        l1 = (weight * (reconstruction - images).abs()).mean()
        return l1 + self.gradient_weight * image_gradient_loss(reconstruction, images, weight)


def train_autoencoder(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    try:
        preset_config(recipe.preset)
    except ValueError as error:
        raise AvatarError(f"{loaded.source}: {error}") from None
    started_from = None
    if recipe.init:
        model = load_init(loaded)
        started_from = recorded_provenance(loaded.resolve(recipe.init))
        if model.config.preset != recipe.preset:
            raise AvatarError(f"{loaded.source}: init {recipe.init} is a {model.config.preset!r} model, but the recipe's "
                              f"preset is {recipe.preset!r}; set preset = {model.config.preset!r} or start from fresh weights")
    else:
        if not recipe.train_encoder:
            raise AvatarError(f"{loaded.source}: train_encoder = false needs init (a model whose encoder is trained)")
        model = build_model(recipe.preset, seed=recipe.run.seed)
    for network in (model.audio_encoder, model.denoiser):
        freeze(network)
    model.autoencoder.train()
    if recipe.decoder == "tiny":
        if model.autoencoder.tiny_decoder is None:
            raise AvatarError(f"{loaded.source}: decoder = \"tiny\", but preset {recipe.preset!r} has no tiny decoder "
                              f"(AutoencoderConfig.tiny_decoder): choose a preset that has one, e.g. llia-384")
        trained = list(model.autoencoder.tiny_decoder.parameters())
    else:  # a tiny decoder's parameters get no gradient here: the optimiser leaves them as they are
        trained = list(model.autoencoder.parameters()) if recipe.train_encoder else decoder_parameters(model.autoencoder)
    trained_ids = {id(parameter) for parameter in trained}
    for parameter in model.autoencoder.parameters():
        parameter.requires_grad_(id(parameter) in trained_ids)
    pool_generator = torch.Generator().manual_seed(recipe.run.seed + 1)
    pool = FramePool(training_clips(data), recipe.pool_clips, recipe.refresh_every, pool_generator)
    objective = AutoencoderObjective(model, recipe.gradient_weight, recipe.mouth_weight, recipe.train_encoder,
                                     tiny=recipe.decoder == "tiny")

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        images, mouth = pool.sample(recipe.run.batch_size, generator)
        if not recipe.latent_blur:
            return {"images": images, "mouth": mouth}
        blur = torch.rand(recipe.run.batch_size, generator=generator) * recipe.latent_blur
        return {"images": images, "mouth": mouth, "latent_blur": blur}

    def export(step: int) -> None:
        save_model(model, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="autoencoder", resume=resume, on_save=export,
                 parameters=trained)
