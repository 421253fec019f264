"""The photo path's motion generator: a denoiser over chunks of motion codes (motion_code.py), conditioned per frame
on the frozen audio encoder's tokens, the state label and the sliders, after past motion frames as context.

The network sees codes minus their slider offsets (the engine adds the offsets after sampling), normalised per
component by the training data's mean and standard deviation (MotionModelConfig.code_mean / code_std), so that
sampling.sigma_data is 1. `MotionModel.denoise` owns the EDM / consistency preconditioning (sampling.schedules).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from avatar_desktop.config import AudioConfig, MotionDenoiserConfig, MotionModelConfig
from avatar_desktop.models.audio_encoder import AudioEncoder
from avatar_desktop.motion_code import MOTION_DIM
from avatar_desktop.sampling.schedules import preconditioning


@dataclass
class MotionInputs:
    """Conditioning of one chunk: context float (B, M, D) normalised past codes (slider offsets removed);
    audio float (B, T, N, A) audio tokens; label int64 (B, T) State ids; sliders float (B, T, E) in [-1, 1] (read
    only by a denoiser with MotionDenoiserConfig.slider_condition)."""

    context: torch.Tensor
    audio: torch.Tensor
    label: torch.Tensor
    sliders: torch.Tensor


class _Block(nn.Module):
    """Pre-norm transformer block, bidirectional attention over the whole (context + chunk) sequence."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, mlp_ratio * width), nn.GELU(), nn.Linear(mlp_ratio * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(batch, length, width)
        x = x + self.proj(attended)
        return x + self.mlp(self.norm2(x))


class MotionDenoiser(nn.Module):
    """F(c_in x, c_noise | inputs): (B, T, D) -> (B, T, D), T in 1..max_chunk_frames, D = MOTION_DIM."""

    def __init__(self, cfg: MotionDenoiserConfig, audio: AudioConfig):
        super().__init__()
        self.cfg = cfg
        width = cfg.width
        self.context_in = nn.Linear(MOTION_DIM, width)
        self.chunk_in = nn.Linear(MOTION_DIM, width)
        self.audio_in = nn.Sequential(nn.Linear(audio.tokens_per_frame * audio.token_dim, width), nn.GELU(),
                                      nn.Linear(width, width))
        self.label_embedding = nn.Embedding(cfg.num_states, width)
        self.slider_in = nn.Linear(cfg.expression_dim, width) if cfg.slider_condition else None
        self.position = nn.Parameter(torch.randn(cfg.context_frames + cfg.max_chunk_frames, width) * 0.02)
        self.register_buffer("frequencies", torch.exp(torch.linspace(0, math.log(64), width // 2)), persistent=False)
        self.noise_mlp = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Linear(width, width))
        self.blocks = nn.ModuleList(_Block(width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.layers))
        self.norm_out = nn.LayerNorm(width)
        self.out = nn.Linear(width, MOTION_DIM)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, inputs: MotionInputs) -> torch.Tensor:
        frames = x.shape[1]
        if not 1 <= frames <= self.cfg.max_chunk_frames:
            raise ValueError(f"a chunk has 1..{self.cfg.max_chunk_frames} frames, got {frames}")
        context = inputs.context.shape[1]
        if context != self.cfg.context_frames:
            raise ValueError(f"expected {self.cfg.context_frames} context frames, got {context}")
        phase = c_noise.reshape(-1, 1) * self.frequencies  # (B, W/2)
        noise = self.noise_mlp(torch.cat([phase.sin(), phase.cos()], dim=1))[:, None]  # (B, 1, W)
        chunk = self.chunk_in(x) + self.audio_in(inputs.audio.flatten(2)) + self.label_embedding(inputs.label)
        if self.slider_in is not None:
            chunk = chunk + self.slider_in(inputs.sliders)  # (B, T, W)
        tokens = torch.cat([self.context_in(inputs.context), chunk], dim=1) + self.position[: context + frames] + noise
        for block in self.blocks:
            tokens = block(tokens)
        return self.out(self.norm_out(tokens[:, context:]))


class MotionModel(nn.Module):
    """The frozen audio encoder plus the motion denoiser, with the code normalisation of MotionModelConfig."""

    def __init__(self, config: MotionModelConfig):
        super().__init__()
        self.config = config
        self.audio_encoder = AudioEncoder(config.audio)
        self.denoiser = MotionDenoiser(config.denoiser, config.audio)
        mean = torch.tensor(config.code_mean or (0.0,) * MOTION_DIM, dtype=torch.float32)
        std = torch.tensor(config.code_std or (1.0,) * MOTION_DIM, dtype=torch.float32)
        if mean.shape != (MOTION_DIM,) or std.shape != (MOTION_DIM,) or bool((std <= 0).any()):
            raise ValueError(f"code_mean and code_std need {MOTION_DIM} values each (std > 0), got {len(mean)} and "
                             f"{len(std)}")
        self.register_buffer("code_mean", mean, persistent=False)
        self.register_buffer("code_std", std, persistent=False)

    @property
    def context_frames(self) -> int:
        return self.config.denoiser.context_frames

    def normalise(self, code: torch.Tensor) -> torch.Tensor:
        """Codes (..., D) minus slider offsets, in code units -> the denoiser's units."""
        return (code - self.code_mean) / self.code_std

    def denormalise(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.code_std + self.code_mean

    def audio_tokens(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, W) audio windows (audio.features.frame_windows) -> (B, T, N, A) tokens."""
        return self.audio_encoder(windows)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, inputs: MotionInputs) -> torch.Tensor:
        """Clean estimate D(x, sigma) of normalised codes x (B, T, D) at noise levels sigma (0-d or (B,))."""
        sigma = sigma.to(x.dtype).reshape(-1).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = (c[:, None, None] for c in preconditioning(sigma, self.config.sampling))
        return c_skip * x + c_out * self.denoiser(c_in * x, c_noise, inputs)


TINY_DENOISER = MotionDenoiserConfig(width=32, layers=1, heads=2, mlp_ratio=2, context_frames=4)
TINY_AUDIO = AudioConfig(channels=16, token_dim=16, tokens_per_frame=2)


def build_motion_model(seed: int = 0, **overrides) -> MotionModel:
    """A tiny motion model with seeded random weights (for tests). `overrides` name fields of MotionDenoiserConfig
    (width, layers, context_frames, ...) or of MotionModelConfig (audio, sampling, chunks, code_mean, ...)."""
    denoiser_fields = {f.name for f in dataclasses.fields(MotionDenoiserConfig)}
    model_fields = {f.name for f in dataclasses.fields(MotionModelConfig)}
    unknown = sorted(set(overrides) - denoiser_fields - model_fields)
    if unknown:
        raise ValueError(f"unknown motion model settings {unknown}; known: {sorted(denoiser_fields | model_fields)}")
    denoiser = dataclasses.replace(TINY_DENOISER, **{k: v for k, v in overrides.items() if k in denoiser_fields})
    config = MotionModelConfig(audio=TINY_AUDIO, denoiser=denoiser)
    config = dataclasses.replace(config, **{k: v for k, v in overrides.items() if k in model_fields})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MotionModel(config).eval()
