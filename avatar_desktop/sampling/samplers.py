"""Samplers with one signature (k-diffusion style):

    sampler(denoiser, noise, sigmas, *, generator=None) -> x0

`denoiser(x, sigma)` returns the clean estimate for latents `x` at noise level `sigma` (a 0-d tensor), with all
conditioning bound in. `noise` is standard normal of the latent shape, e.g. (B, T, C, h, w); `sigmas` is the
schedule from `sampling.schedules`. Samplers do not know about models, frames or audio.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence

import torch

from avatar_desktop.config import SamplingConfig
from avatar_desktop.sampling.schedules import consistency_sigmas, karras_sigmas


class Denoiser(Protocol):
    def __call__(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor: ...


@torch.no_grad()
def sample_euler(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, *, generator=None) -> torch.Tensor:
    """Teacher sampler, Euler steps of the probability-flow ODE; sigmas (N + 1,) ending in 0. N evaluations."""
    x = noise * sigmas[0]
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = euler_step(denoiser, x, sigma, sigma_next)
    return x


@torch.no_grad()
def sample_heun(denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, *, generator=None) -> torch.Tensor:
    """Teacher sampler, Heun's 2nd order method (EDM Algorithm 1); sigmas (N + 1,) ending in 0. 2N - 1 evaluations."""
    x = noise * sigmas[0]
    for sigma, sigma_next in zip(sigmas[:-1], sigmas[1:]):
        x = heun_step(denoiser, x, sigma, sigma_next) if sigma_next > 0 else euler_step(denoiser, x, sigma, sigma_next)
    return x


def euler_step(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Euler step of the probability-flow ODE from the level sigma to sigma_next (0-d tensors; sigma_next may
    be 0)."""
    return x + (x - denoiser(x, sigma)) / sigma * (sigma_next - sigma)


def heun_step(denoiser: Denoiser, x: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor) -> torch.Tensor:
    """One Heun step of the probability-flow ODE from sigma to sigma_next (> 0), both (B,) per sample or 0-d for the
    whole batch, for x of any shape (B, ...): the teacher sampler's step, and what consistency distillation asks of
    its teacher. Differentiable (no no_grad)."""
    shape = (-1,) + (1,) * (x.dim() - 1)  # per-sample levels broadcast over each sample; 0-d ones stay 0-d (dtype)
    s, s_next = (level.reshape(shape) if level.dim() else level for level in (sigma, sigma_next))
    slope = (x - denoiser(x, sigma)) / s
    x_euler = x + (s_next - s) * slope
    slope_next = (x_euler - denoiser(x_euler, sigma_next)) / s_next
    return x + (s_next - s) * (slope + slope_next) / 2


@torch.no_grad()
def sample_consistency(
    denoiser: Denoiser, noise: torch.Tensor, sigmas: torch.Tensor, *, generator=None, sigma_min: float = 0.002,
    fresh_noise: Sequence[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Multistep consistency sampling; sigmas (K,) with K in 1..4, no trailing 0. K evaluations.

    Each step maps to a clean estimate, then re-noises it to the next level with fresh noise: `fresh_noise[k]`
    (K - 1 tensors of noise's shape, drawn by the caller: an exported graph takes them as an input) or else drawn
    from `generator` (a CPU generator: the noise is drawn on the CPU and moved, so a seed means the same on every
    device).
    """
    x0 = denoiser(noise * sigmas[0], sigmas[0])
    for step, sigma in enumerate(sigmas[1:]):
        if fresh_noise is None:
            fresh = torch.randn(x0.shape, generator=generator, dtype=torch.float32).to(x0.device, x0.dtype)
        else:
            fresh = fresh_noise[step].to(x0.dtype)
        x0 = denoiser(x0 + fresh * (sigma**2 - sigma_min**2).sqrt(), sigma)
    return x0


Sampler = Callable[..., torch.Tensor]
SAMPLERS: dict[str, Sampler] = {"euler": sample_euler, "heun": sample_heun, "consistency": sample_consistency}


@dataclass(frozen=True)
class ChosenSampler:
    """A sampler ready to run: name, steps, `sample(denoiser, noise, sigmas, generator=...)` and its schedule
    `sigmas` (float32 on the CPU; move it to the device)."""

    name: str
    steps: int
    sample: Sampler
    sigmas: torch.Tensor


def choose_sampler(sampling: SamplingConfig, name: str | None = None, steps: int | None = None) -> ChosenSampler:
    """The sampler a checkpoint's SamplingConfig asks for, or `name` / `steps` instead (an EngineConfig override):
    consistency steps on its own schedule, the others on the teacher's Karras schedule (teacher_steps by default)."""
    name = name or sampling.sampler
    sample = SAMPLERS.get(name)
    if sample is None:
        raise ValueError(f"unknown sampler {name!r}: expected one of {', '.join(SAMPLERS)}")
    steps = steps or (sampling.steps if name == "consistency" else sampling.teacher_steps)
    if name == "consistency":
        return ChosenSampler(name, steps, functools.partial(sample, sigma_min=sampling.sigma_min),
                             consistency_sigmas(steps, sampling))
    return ChosenSampler(name, steps, sample, karras_sigmas(steps, sampling))
