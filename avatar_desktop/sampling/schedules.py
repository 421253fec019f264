"""Noise levels and EDM-style preconditioning (Karras et al. 2022; consistency models, Song et al. 2023).

A noise level is a standard deviation `sigma` in latent units. All functions take and return tensors on the
caller's device; nothing here holds state.
"""

from __future__ import annotations

import math

import torch

from avatar_desktop.config import SamplingConfig


def karras_sigmas(steps: int, cfg: SamplingConfig) -> torch.Tensor:
    """Teacher schedule: `steps` levels from sigma_max down to sigma_min (rho spacing), then 0. Shape (steps + 1,)."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    ramp = torch.linspace(0, 1, steps, dtype=torch.float64)
    lo, hi = cfg.sigma_min ** (1 / cfg.rho), cfg.sigma_max ** (1 / cfg.rho)
    sigmas = (hi + ramp * (lo - hi)) ** cfg.rho
    return torch.cat([sigmas, sigmas.new_zeros(1)]).float()


def consistency_sigmas(steps: int, cfg: SamplingConfig) -> torch.Tensor:
    """Student schedule: `steps` levels from sigma_max, spaced like the teacher's Karras schedule. Shape (steps,).

    With one step only sigma_max is used; more steps re-noise the estimate to lower levels.
    """
    if not 1 <= steps <= 4:
        raise ValueError(f"a consistency student runs 1..4 steps, got {steps}")
    full = karras_sigmas(8, cfg)[:-1]  # 8 reference levels; pick `steps` of them, always starting at sigma_max
    picks = [round(i * (len(full) - 1) / steps) for i in range(steps)]
    return full[picks]


def preconditioning(sigma: torch.Tensor, cfg: SamplingConfig) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for noise levels `sigma` (any shape); D(x) = c_skip x + c_out F(c_in x, c_noise).

    'edm' is the teacher's parameterisation; 'consistency' shifts the boundary so that D(x, sigma_min) = x exactly.
    """
    sd = cfg.sigma_data
    if cfg.parameterization == "edm":
        c_skip = sd**2 / (sigma**2 + sd**2)
        c_out = sigma * sd / torch.sqrt(sigma**2 + sd**2)
    elif cfg.parameterization == "consistency":
        shifted = sigma - cfg.sigma_min
        c_skip = sd**2 / (shifted**2 + sd**2)
        c_out = shifted * sd / torch.sqrt(sigma**2 + sd**2)
    else:
        raise ValueError(f"unknown parameterization {cfg.parameterization!r}: expected 'edm' or 'consistency'")
    c_in = 1 / torch.sqrt(sigma**2 + sd**2)
    c_noise = torch.log(sigma.clamp_min(1e-12)) / 4
    return c_skip, c_out, c_in, c_noise


def log_sigma_range(cfg: SamplingConfig) -> tuple[float, float]:
    """(log sigma_min, log sigma_max), for samplers of training noise levels."""
    return math.log(cfg.sigma_min), math.log(cfg.sigma_max)
