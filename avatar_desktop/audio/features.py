"""Log-mel features and the per-video-frame audio windows the audio encoder reads.

Media clock: video frame f covers audio samples [f * S, (f + 1) * S) with S = SAMPLE_RATE / fps. Its audio window
adds `past_ms` before and `audio_lookahead_ms` after that span; samples before the start of the stream are silence.
"""

from __future__ import annotations

import math

import torch
from torch import nn

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


def window_geometry(cfg: AudioConfig, fps: int) -> tuple[int, int, int]:
    """(samples per video frame, past samples, lookahead samples) for the audio window of one frame."""
    per_frame = SAMPLE_RATE // fps
    if per_frame * fps != SAMPLE_RATE:
        raise ValueError(f"fps {fps} must divide {SAMPLE_RATE} so that frames align with samples")
    return per_frame, round(SAMPLE_RATE * cfg.past_ms / 1000), round(SAMPLE_RATE * cfg.audio_lookahead_ms / 1000)


def frame_windows(audio: torch.Tensor, audio_start: int, first_frame: int, frames: int, cfg: AudioConfig, fps: int) -> torch.Tensor:
    """Cut per-frame audio windows out of a stretch of the stream.

    audio: (S,) or (B, S) samples of the stream starting at absolute sample `audio_start`; it must reach the end of
    the last frame's lookahead. Samples before absolute 0 are silence. Returns (B, frames, W) with
    W = past + per_frame + lookahead.
    """
    if audio.dim() == 1:
        audio = audio[None]
    per_frame, past, ahead = window_geometry(cfg, fps)
    first_needed = first_frame * per_frame - past
    last_needed = (first_frame + frames) * per_frame + ahead
    pad_front = max(0, audio_start - first_needed)
    if audio_start + audio.shape[1] < last_needed:
        raise ValueError(
            f"audio ends at sample {audio_start + audio.shape[1]} but frames {first_frame}..{first_frame + frames - 1} "
            f"need audio up to sample {last_needed}"
        )
    if pad_front > 0 and audio_start > 0:
        raise ValueError(f"audio starts at sample {audio_start} but frame {first_frame} needs it from {first_needed}")
    audio = nn.functional.pad(audio, (pad_front, 0))
    offset = first_needed - (audio_start - pad_front)
    width = past + per_frame + ahead
    span = audio[:, offset : offset + (frames - 1) * per_frame + width]
    return span.unfold(1, width, per_frame)  # (B, frames, W)
