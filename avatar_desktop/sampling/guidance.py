"""Audio guidance (classifier-free guidance against silence), the one step that both the engine
(engine/streaming.py) and the distillation stage (training/stages/distill.py) take with a guided model."""

from __future__ import annotations

from typing import Callable

import torch

from avatar_desktop.sampling.samplers import Denoiser

PairedDenoiser = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
"""x, sigma -> (the clean estimate with the audio, the clean estimate with silence), both of x's shape."""


def audio_guided(paired: PairedDenoiser, scale: float) -> Denoiser:
    """The guided denoiser x, sigma -> D_silent + scale (D_audio - D_silent), with (D_audio, D_silent) from
    `paired` (which may run both halves as one batch): scale 1 is the plain estimate with the audio, 0 the
    estimate with silence, above 1 a mouth that follows the audio more decisively (SamplingConfig.audio_guidance)."""

    def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        with_audio, silent = paired(x, sigma)
        return silent + scale * (with_audio - silent)

    return guided
