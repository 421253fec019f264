"""AvatarModel: the three networks of one checkpoint and the preconditioned denoiser D(x, sigma)."""

from __future__ import annotations

import torch
from torch import nn

from avatar_desktop.config import ModelConfig
from avatar_desktop.models.audio_encoder import AudioEncoder
from avatar_desktop.models.autoencoder import build_autoencoder
from avatar_desktop.models.denoiser import ChunkDenoiser, DenoiserInputs
from avatar_desktop.sampling.schedules import preconditioning


class AvatarModel(nn.Module):
    """autoencoder (image <-> latent), audio_encoder (windows -> tokens), denoiser (chunk UNet), and their config."""

    def __init__(self, config: ModelConfig, autoencoder: nn.Module | None = None):
        super().__init__()
        self.config = config
        self.autoencoder = autoencoder if autoencoder is not None else build_autoencoder(config.autoencoder)
        self.audio_encoder = AudioEncoder(config.audio)
        self.denoiser = ChunkDenoiser(config.denoiser, config.autoencoder.latent_channels, config.audio.tokens_per_frame)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """(C, h, w) of one frame's latent."""
        ae = self.config.autoencoder
        return ae.latent_channels, ae.latent_size, ae.latent_size

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, cond: DenoiserInputs) -> torch.Tensor:
        """Clean estimate D(x, sigma) = c_skip x + c_out F(c_in x, c_noise); x (B, T, C, h, w), sigma 0-d or (B,).
        With `reference_residual`, D(x) = r + [c_skip (x - r) + c_out F(c_in (x - r))], r the reference (B, C, h, w)."""
        sigma = sigma.to(torch.float32).reshape(-1, 1, 1, 1, 1)
        c_skip, c_out, c_in, c_noise = preconditioning(sigma, self.config.sampling)
        reference = cond.reference[:, None] if self.config.sampling.reference_residual else None
        if reference is not None:
            x = x - reference
        raw = self.denoiser((x * c_in).to(x.dtype), c_noise.reshape(-1), cond)
        denoised = c_skip * x + c_out * raw
        return (denoised if reference is None else denoised + reference).to(x.dtype)
