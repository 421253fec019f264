"""Log-mel features and the per-video-frame audio windows the audio encoder reads.

The windows themselves are cut in numpy by audio/windows.py (the media clock is described there);
`frame_windows` here takes and returns tensors, for training.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from avatar_desktop.audio import windows
from avatar_desktop.audio.windows import window_geometry  # noqa: F401  (imported from here by training)
from avatar_desktop.config import SAMPLE_RATE, AudioConfig


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int = SAMPLE_RATE, f_max: float | None = None) -> torch.Tensor:
    """Triangular HTK-style mel filters, shape (n_mels, n_fft // 2 + 1)."""
    f_max = f_max or sample_rate / 2
    fft_hz = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    mel_max = 2595.0 * math.log10(1.0 + f_max / 700.0)
    edges_hz = _mel_to_hz(torch.linspace(0.0, mel_max, n_mels + 2))
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (fft_hz - lower) / (centre - lower)
    falling = (upper - fft_hz) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0.0)


class LogMel(nn.Module):
    """(N, S) float waveform at 16 kHz -> (N, n_mels, frames) log-mel, frames = 1 + (S - n_fft) // hop.

    The analysis window (window_ms) is zero-padded to n_fft, the next power of two.
    """

    def __init__(self, cfg: AudioConfig):
        super().__init__()
        self.hop = round(SAMPLE_RATE * cfg.hop_ms / 1000)
        self.window = round(SAMPLE_RATE * cfg.window_ms / 1000)
        self.n_fft = 2 ** math.ceil(math.log2(self.window))
        self.register_buffer("hann", torch.hann_window(self.window), persistent=False)
        self.register_buffer("filters", mel_filterbank(self.n_fft, cfg.n_mels), persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spec = torch.stft(
            waveform.float(), self.n_fft, hop_length=self.hop, win_length=self.window,
            window=self.hann.float(), center=False, return_complex=True,
        )  # (N, n_fft // 2 + 1, frames), always computed in float32
        power = spec.real**2 + spec.imag**2
        return torch.log(self.filters.float() @ power + 1e-6)


def frame_windows(audio: torch.Tensor, audio_start: int, first_frame: int, frames: int, cfg: AudioConfig, fps: int) -> torch.Tensor:
    """audio.windows.frame_windows for a CPU tensor (S,) or (B, S): (B, frames, W) windows, a new tensor."""
    return torch.from_numpy(windows.frame_windows(audio.numpy(), audio_start, first_frame, frames, cfg, fps))
