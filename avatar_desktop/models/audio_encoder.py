"""Audio encoder: per-frame audio windows -> audio tokens for the denoiser's cross-attention.

Each video frame's tokens depend only on that frame's own window (past + frame + lookahead), so a stream cut
into chunks of any length gives exactly the tokens of the whole clip.
"""

from __future__ import annotations

import torch
from torch import nn

from avatar_desktop.audio.features import LogMel
from avatar_desktop.config import AudioConfig


class AudioEncoder(nn.Module):
    """(B, T, W) waveform windows at 16 kHz -> (B, T, tokens_per_frame, token_dim) audio tokens."""

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.cfg = cfg
        self.log_mel = LogMel(cfg)
        width = cfg.channels
        self.convs = nn.Sequential(
            nn.Conv1d(cfg.n_mels, width, 3, padding=1),
            nn.GroupNorm(8, width),
            nn.GELU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv1d(width, width, 3, stride=2, padding=1),
            nn.GELU(),
        )
        self.pool = nn.AdaptiveAvgPool1d(cfg.tokens_per_frame)
        self.proj = nn.Linear(width, cfg.token_dim)
        self.slot_embedding = nn.Parameter(torch.zeros(cfg.tokens_per_frame, cfg.token_dim))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        batch, frames, width = windows.shape
        mel = self.log_mel(windows.reshape(batch * frames, width))  # (B*T, n_mels, F), float32
        mel = mel.to(self.proj.weight.dtype)
        features = self.pool(self.convs(mel)).transpose(1, 2)  # (B*T, tokens, channels)
        tokens = self.proj(features) + self.slot_embedding
        return tokens.reshape(batch, frames, self.cfg.tokens_per_frame, self.cfg.token_dim)
