"""Noise schedules, preconditioning coefficients and samplers, as plain functions over tensors."""

from avatar_desktop.sampling.guidance import PairedDenoiser, audio_guided
from avatar_desktop.sampling.samplers import (
    SAMPLERS,
    ChosenSampler,
    Denoiser,
    choose_sampler,
    heun_step,
    sample_consistency,
    sample_euler,
    sample_heun,
)
from avatar_desktop.sampling.schedules import consistency_sigmas, karras_sigmas, preconditioning

__all__ = [
    "SAMPLERS",
    "ChosenSampler",
    "Denoiser",
    "PairedDenoiser",
    "audio_guided",
    "choose_sampler",
    "consistency_sigmas",
    "heun_step",
    "karras_sigmas",
    "preconditioning",
    "sample_consistency",
    "sample_euler",
    "sample_heun",
]
