"""Schedules, preconditioning and the samplers' step math, checked against cases with known answers."""

import pytest
import torch

from avatar_desktop.config import SamplingConfig
from avatar_desktop.sampling import (
    audio_guided,
    consistency_sigmas,
    heun_step,
    karras_sigmas,
    preconditioning,
    sample_consistency,
    sample_euler,
    sample_heun,
)

CFG = SamplingConfig()


def test_karras_schedule_runs_from_sigma_max_to_zero():
    sigmas = karras_sigmas(10, CFG)
    assert sigmas.shape == (11,)
    assert sigmas[0] == pytest.approx(CFG.sigma_max) and sigmas[-2] == pytest.approx(CFG.sigma_min) and sigmas[-1] == 0
    assert torch.all(sigmas[:-1] > sigmas[1:])


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_consistency_schedule(steps):
    sigmas = consistency_sigmas(steps, CFG)
    assert sigmas.shape == (steps,) and sigmas[0] == pytest.approx(CFG.sigma_max)
    assert torch.all(sigmas[:-1] > sigmas[1:])


def test_consistency_schedule_refuses_more_than_four_steps():
    with pytest.raises(ValueError, match="1..4"):
        consistency_sigmas(5, CFG)


def test_consistency_boundary_condition():
    c_skip, c_out, _, _ = preconditioning(torch.tensor(CFG.sigma_min), CFG)
    assert c_skip.item() == pytest.approx(1.0) and c_out.item() == pytest.approx(0.0, abs=1e-12)
    edm = SamplingConfig(parameterization="edm")
    c_skip, c_out, c_in, _ = preconditioning(torch.tensor(1.0), edm)
    assert c_skip.item() == pytest.approx(0.25 / 1.25) and c_in.item() == pytest.approx(1 / 1.25**0.5)


def test_unknown_parameterization_is_named():
    with pytest.raises(ValueError, match="'v'"):
        preconditioning(torch.tensor(1.0), SamplingConfig(parameterization="v"))


@pytest.mark.parametrize("sampler", [sample_euler, sample_heun])
def test_teacher_samplers_solve_the_ode_for_a_point_mass(sampler):
    """If the data is a single point mu, the ideal denoiser returns mu and the ODE ends exactly at mu."""
    mu = torch.tensor([0.3, -1.2, 2.0])
    calls = []

    def denoiser(x, sigma):
        calls.append(float(sigma))
        return mu.expand_as(x)

    out = sampler(denoiser, torch.randn(5, 3), karras_sigmas(6, CFG))
    torch.testing.assert_close(out, mu.expand(5, 3))
    assert len(calls) == (6 if sampler is sample_euler else 11)


def test_samplers_converge_at_their_order_on_gaussian_data():
    """Data N(0, s^2): the ideal denoiser is x s^2 / (s^2 + sigma^2), and x / sqrt(s^2 + sigma^2) is constant along
    the ODE. Doubling the steps cuts Heun's error about 4x (2nd order) and Euler's about 2x (1st order)."""
    s = 0.5

    def denoiser(x, sigma):
        return x * s**2 / (s**2 + sigma**2)

    noise = torch.randn(20000, generator=torch.Generator().manual_seed(0))
    exact = noise * CFG.sigma_max * s / (s**2 + CFG.sigma_max**2) ** 0.5

    def error(sampler, steps):
        return (sampler(denoiser, noise, karras_sigmas(steps, CFG)) - exact).abs().max().item()

    assert error(sample_heun, 50) < 0.02
    assert error(sample_heun, 25) / error(sample_heun, 50) > 3.5
    assert 1.7 < error(sample_euler, 25) / error(sample_euler, 50) < 2.5


@pytest.mark.parametrize("steps", [1, 2, 3, 4])
def test_consistency_sampler_evaluates_once_per_step(steps):
    seen = []

    def denoiser(x, sigma):
        seen.append(float(sigma))
        return torch.zeros_like(x)

    out = sample_consistency(denoiser, torch.randn(2, 3), consistency_sigmas(steps, CFG), generator=torch.Generator())
    assert len(seen) == steps and seen == sorted(seen, reverse=True)
    assert torch.all(out == 0)


def test_a_heun_step_takes_one_level_for_the_batch_or_one_per_sample_and_keeps_the_dtype():
    """The teacher sampler passes 0-d levels, distillation (B,) levels: the same step either way, in x's dtype."""
    x = torch.randn(3, 2, 4, generator=torch.Generator().manual_seed(0))

    def denoiser(x, sigma):  # a clean estimate that shrinks x, more at higher noise
        return x / (1 + sigma.reshape(-1, 1, 1) ** 2) if sigma.dim() else x / (1 + sigma**2)

    shared = heun_step(denoiser, x, torch.tensor(2.0), torch.tensor(1.0))
    per_sample = heun_step(denoiser, x, torch.full((3,), 2.0), torch.full((3,), 1.0))
    torch.testing.assert_close(shared, per_sample)
    assert not torch.allclose(shared, x)
    half = heun_step(denoiser, x.bfloat16(), torch.tensor(2.0), torch.tensor(1.0))
    assert half.dtype == torch.bfloat16


def test_audio_guidance_moves_the_estimate_away_from_the_silent_one_by_its_scale():
    with_audio, silent = torch.full((2, 3), 1.0), torch.full((2, 3), 0.25)
    for scale, expected in ((0.0, 0.25), (1.0, 1.0), (2.5, 0.25 + 2.5 * 0.75)):
        guided = audio_guided(lambda x, sigma: (with_audio + x, silent + x), scale)
        torch.testing.assert_close(guided(torch.ones(2, 3), torch.tensor(1.0)), torch.full((2, 3), expected + 1))
