"""Training of the photo path's motion generator (models/motion.py) on `dataset synth` clips.

motion-teacher: EDM denoising loss on chunks of motion codes minus their slider offsets (motion_code.py), normalised
                per component; audio tokens come from the frozen audio encoder of `audio_from` (computed once per
                clip and cached in the run folder); context frames are the clip's own preceding codes, noised as the
                engine's fed-back output is, and at random replaced by the neutral code from the start (a stream's
                first chunks); chunk lengths follow LLIA's curriculum (fixed, then 1..max_frames).
motion-distill: consistency distillation (Song et al. 2023) of a teacher into a 1-2 step student: the student at
                sigma_{n+1} matches the EMA target at sigma_n after one Heun step of the teacher between the levels.
Both write `out/model` (a "kind": "motion" model folder), `out/checkpoint`, `out/loss.csv`, `out/loss.png`. Their
recipes are training.config.MotionTeacherRecipe and MotionDistillRecipe.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from avatar_desktop.audio.augment import AugmentConfig, apply_augmentation, draw_augmentation
from avatar_desktop.audio.features import frame_windows, window_geometry
from avatar_desktop.config import MotionDenoiserConfig, MotionModelConfig, SamplingConfig
from avatar_desktop.data.clips import load_clip
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.motion import MotionInputs, MotionModel
from avatar_desktop.models.store import (
    load_model,
    load_motion_model,
    model_kind,
    save_motion_model,
)
from avatar_desktop.motion_code import (
    MOTION_DIM,
    MOTION_INDEX,
    motion_code_from_record,
    slider_offsets,
)
from avatar_desktop.sampling import heun_step
from avatar_desktop.sampling.schedules import karras_sigmas
from avatar_desktop.training.common import chunk_length, freeze, provenance, recorded_provenance
from avatar_desktop.training.config import LoadedRecipe
from avatar_desktop.training.data import training_clips
from avatar_desktop.training.loop import train

MOUTH_COMPONENTS = ("mouth_open", "lip_press")
"""The components `mouth_weight` weighs: what lip sync is judged by."""
MIN_CLIP_FRAMES = 16
"""Shortest clip the motion stages take (the longest chunk)."""
STD_FLOOR = 0.05
"""Smallest per-component standard deviation used for normalisation (code units): components the data hardly moves
(gaze, which the synthetic characters lack) are not blown up."""


# ----------------------------------------------------------------------------- data


@dataclass
class MotionData:
    """Every training clip's frames laid end to end (F frames in all): residual codes (code minus slider offsets)
    float32 (F, D) in code units, sliders float32 (F, E), labels int64 (F,), audio tokens float16 (V, F, N, A) of
    V versions of the audio (0 clean, then the augmented copies), and clip_start, clip_end int64 (F,): the index of
    the first frame of each frame's clip, and one past its last."""

    residual: torch.Tensor
    sliders: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor
    clip_start: torch.Tensor
    clip_end: torch.Tensor


def clip_motion(record: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """A record -> (residual (T, D) = code minus slider offsets, sliders (T, E)), both float32."""
    code, sliders = motion_code_from_record(record)
    return (code - slider_offsets(sliders)).astype(np.float32), sliders


@torch.no_grad()
def clip_tokens(model: MotionModel, audio: np.ndarray, frames: int) -> torch.Tensor:
    """Audio tokens (frames, N, A) of a whole clip (float32 (S,) 16 kHz), the lookahead past its end silence: the
    tokens the engine computes chunk by chunk (each frame's tokens depend only on its own window)."""
    cfg, fps = model.config.audio, model.config.fps
    per_frame, _, ahead = window_geometry(cfg, fps)
    padded = np.zeros(frames * per_frame + ahead, np.float32)
    padded[: min(len(audio), len(padded))] = audio[: len(padded)]
    windows = frame_windows(torch.from_numpy(padded), 0, 0, frames, cfg, fps)  # (1, frames, W)
    return torch.cat([model.audio_tokens(windows[:, i : i + 256]) for i in range(0, frames, 256)], dim=1)[0]


BABBLE_SOURCES = 32
"""Babble for an augmented copy is made of the clips loaded just before it (up to this many)."""


def load_motion_data(root: Path, model: MotionModel, cache: Path, split: str = "train",
                     augment: AugmentConfig = AugmentConfig(), copies: int = 0) -> MotionData:
    """The clips of `split`, with the audio tokens of the clean audio and of `copies` augmented versions of it
    (augmented_clip_audio); tokens cached in `cache` (an npz per audio encoder and augmentation, made once)."""
    if copies < 0 or (copies and not augment.enabled):
        raise AvatarError(f"augmented_copies = {copies} needs an [augment] table with probability above 0 "
                          "(or set it to 0)")
    digest = hashlib.sha1()
    for name, tensor in sorted(model.audio_encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().numpy().tobytes())
    if copies:
        digest.update(f"{augment!r} x{copies}".encode())
    cache_file = cache / f"audio_tokens_{split}_{digest.hexdigest()[:12]}.npz"
    cached = dict(np.load(cache_file, allow_pickle=False)) if cache_file.is_file() else {}
    residuals, sliders, labels, tokens, bounds, recent_audio = [], [], [], [], [], []
    for path in tqdm(training_clips(root, split), desc=f"motion data ({split})", unit="clip", disable=None):
        clip = load_clip(path, with_frames=False)
        if not np.isfinite(clip.record["mouth_open"]).all():
            raise AvatarError(f"{path}: its record does not know the motion (real videos don't); the motion stages "
                              "need clips made by `avatar-desktop dataset synth`")
        residual, clip_sliders = clip_motion(clip.record)
        frames = len(residual)
        if frames < MIN_CLIP_FRAMES:
            raise AvatarError(f"{path} has {frames} frames; the motion stages need clips of at least "
                              f"{MIN_CLIP_FRAMES} frames (make data with longer --seconds)")
        audio = clip.audio.astype(np.float32)
        for version in range(copies + 1):
            key = path.name if version == 0 else f"{path.name}@{version}"
            if key not in cached:
                heard = audio if version == 0 else augmented_clip_audio(audio, augment, path.name, version,
                                                                         recent_audio)
                cached[key] = clip_tokens(model, heard, frames).numpy().astype(np.float16)
        recent_audio = (recent_audio + [audio])[-BABBLE_SOURCES:]
        start = sum(len(r) for r in residuals)
        bounds.append((start, start + frames))
        residuals.append(residual)
        sliders.append(clip_sliders)
        labels.append(np.asarray(clip.record["state"], np.int64))
        tokens.append(np.stack([cached[path.name]] + [cached[f"{path.name}@{v}"] for v in range(1, copies + 1)]))
    cache.mkdir(parents=True, exist_ok=True)
    if not cache_file.is_file():
        temp = cache_file.with_suffix(".tmp.npz")
        np.savez(temp, **cached)
        temp.rename(cache_file)
    clip_start = np.concatenate([np.full(b - a, a) for a, b in bounds])
    clip_end = np.concatenate([np.full(b - a, b) for a, b in bounds])
    return MotionData(torch.from_numpy(np.concatenate(residuals)), torch.from_numpy(np.concatenate(sliders)),
                      torch.from_numpy(np.concatenate(labels)), torch.from_numpy(np.concatenate(tokens, axis=1)),
                      torch.from_numpy(clip_start), torch.from_numpy(clip_end))


def augmented_clip_audio(audio: np.ndarray, augment: AugmentConfig, clip_name: str, version: int,
                         babble_sources: list[np.ndarray]) -> np.ndarray:
    """Augmented copy `version` (1, 2, ...) of a clip's audio float32 (N,): seeded by the clip's name and the
    version, so that a rerun makes the same copy; no tempo change (the motion codes keep their timing)."""
    rng = np.random.default_rng(np.random.SeedSequence([zlib.crc32(clip_name.encode()), version, 0xA06]))
    draw = draw_augmentation(augment, rng, allow_tempo=False, babble=bool(babble_sources))
    return apply_augmentation(audio, draw, rng, babble_sources=babble_sources)


def code_statistics(data: MotionData) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-component mean and standard deviation (floored at STD_FLOOR) of the residual codes."""
    mean = data.residual.mean(dim=0)
    std = data.residual.std(dim=0).clamp_min(STD_FLOOR)
    return tuple(round(float(v), 5) for v in mean), tuple(round(float(v), 5) for v in std)


def sample_motion_batch(data: MotionData, model: MotionModel, batch_size: int, frames: int,
                        generator: torch.Generator, context_noise_max: float,
                        context_dropout: float) -> dict[str, torch.Tensor]:
    """A batch of chunks: x0 (B, T, D) normalised residual codes, context (B, M, D) (noised; frames before the clip
    or dropped are the neutral code), audio (B, T, N, A), label (B, T), sliders (B, T, E), noise (B, T, D), and
    first (B,): the index of each chunk's first frame in `data`. Each chunk hears one random version of its audio."""
    context_frames = model.context_frames
    anywhere = torch.randint(len(data.labels), (batch_size,), generator=generator)
    first = torch.minimum(anywhere, data.clip_end[anywhere] - frames)  # (B,): the chunk stays inside its clip
    chunk_index = first[:, None] + torch.arange(frames)  # (B, T)
    context_index = first[:, None] + torch.arange(-context_frames, 0)  # (B, M)
    outside = context_index < data.clip_start[first][:, None]
    dropped = torch.rand(batch_size, generator=generator) < context_dropout
    keep_from = torch.randint(1, context_frames + 1, (batch_size,), generator=generator)
    outside |= dropped[:, None] & (torch.arange(context_frames) < keep_from[:, None])
    neutral = model.normalise(torch.zeros(MOTION_DIM))
    context = torch.where(outside[..., None], neutral, model.normalise(data.residual[context_index.clamp_min(0)]))
    context_sigma = torch.rand(batch_size, 1, 1, generator=generator) * context_noise_max
    context = context + context_sigma * torch.randn(context.shape, generator=generator)
    x0 = model.normalise(data.residual[chunk_index])
    versions = len(data.tokens)
    version = (torch.randint(versions, (batch_size,), generator=generator) if versions > 1
               else torch.zeros(batch_size, dtype=torch.long))
    audio = data.tokens[version[:, None], chunk_index].float()
    return {"x0": x0, "context": context, "audio": audio, "label": data.labels[chunk_index],
            "sliders": data.sliders[chunk_index], "noise": torch.randn(x0.shape, generator=generator), "first": first}


def inputs_of(batch: dict[str, torch.Tensor]) -> MotionInputs:
    return MotionInputs(context=batch["context"], audio=batch["audio"], label=batch["label"], sliders=batch["sliders"])


def component_weights(mouth_weight: float) -> torch.Tensor:
    """(D,) loss weights: 1, and 1 + mouth_weight for MOUTH_COMPONENTS."""
    weights = torch.ones(MOTION_DIM)
    weights[[MOTION_INDEX[name] for name in MOUTH_COMPONENTS]] += mouth_weight
    return weights


# ----------------------------------------------------------------------------- objectives


class MotionTeacherObjective(nn.Module):
    """EDM loss lambda(sigma) sum_d w_d (D(x0 + sigma n, sigma)_d - x0_d)^2 / sum_d w_d over (B, T, D) chunks,
    lambda = (sigma^2 + sd^2) / (sigma sd)^2."""

    def __init__(self, model: MotionModel, mouth_weight: float):
        super().__init__()
        self.model = model
        self.register_buffer("weights", component_weights(mouth_weight), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, sigma = batch["x0"], batch["sigma"]
        denoised = self.model.denoise(x0 + sigma[:, None, None] * batch["noise"], sigma, inputs_of(batch))
        sd = self.model.config.sampling.sigma_data
        error = ((denoised - x0) ** 2 * self.weights).mean(dim=(1, 2)) / self.weights.mean()
        return ((sigma**2 + sd**2) / (sigma * sd) ** 2 * error).mean()


class MotionDistillObjective(nn.Module):
    """Consistency distillation ||f_student(x_{n+1}, s_{n+1}) - f_target(x_hat_n, s_n)||^2, components weighted."""

    def __init__(self, student: MotionModel, teacher: MotionModel, target: MotionModel, sigmas: torch.Tensor,
                 mouth_weight: float):
        super().__init__()
        self.student = student
        self.teacher = teacher  # frozen
        self.target = target  # EMA of the student, frozen
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.register_buffer("weights", component_weights(mouth_weight), persistent=False)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, index, inputs = batch["x0"], batch["level"], inputs_of(batch)
        s_next, s_now = self.sigmas[index + 1], self.sigmas[index]
        x_next = x0 + s_next[:, None, None] * batch["noise"]
        with torch.no_grad():
            x_now = heun_step(lambda x, s: self.teacher.denoise(x, s, inputs), x_next, s_next, s_now)
            target = self.target.denoise(x_now, s_now, inputs)
        prediction = self.student.denoise(x_next, s_next, inputs)
        return (((prediction - target) ** 2 * self.weights).mean(dim=(1, 2)) / self.weights.mean()).mean()


# ----------------------------------------------------------------------------- drivers


def _audio_encoder_of(folder: Path) -> tuple[nn.Module, Any, int]:
    """(audio encoder, AudioConfig, fps) of a latent or motion model folder."""
    model = load_motion_model(folder) if model_kind(folder) == "motion" else load_model(folder)
    return model.audio_encoder, model.config.audio, model.config.fps


def _check_chunks(recipe, config: MotionDenoiserConfig, source: Path) -> None:
    plan = recipe.chunks
    longest = max(recipe.curriculum.max_frames, plan.first, plan.after_state_change, plan.steady)
    if longest > config.max_chunk_frames:
        raise AvatarError(f"{source}: chunks of up to {longest} frames exceed the model's max_chunk_frames="
                          f"{config.max_chunk_frames}")


def train_motion_teacher(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    _check_chunks(recipe, recipe.denoiser, loaded.source)
    encoder, audio, fps = _audio_encoder_of(loaded.resolve(recipe.audio_from))
    started_from = recorded_provenance(loaded.resolve(recipe.audio_from))  # the model its audio encoder comes from
    sampling = SamplingConfig(parameterization="edm", sampler="heun", steps=recipe.teacher_steps,
                              teacher_steps=recipe.teacher_steps, sigma_data=1.0, warped_sliders=())
    config = MotionModelConfig(fps=fps, audio=audio, denoiser=recipe.denoiser, sampling=sampling,
                               chunks=recipe.chunks, context_noise_sigma=recipe.context_noise_sigma)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.run.seed)
        model = MotionModel(config)
    model.audio_encoder.load_state_dict(encoder.state_dict())
    freeze(model.audio_encoder)
    clips = load_motion_data(data, model, out, augment=recipe.augment, copies=recipe.augmented_copies)
    mean, std = code_statistics(clips)
    model = _with_statistics(model, mean, std)
    objective = MotionTeacherObjective(model, recipe.mouth_weight)
    model.denoiser.train()

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        frames = chunk_length(step, recipe.curriculum, generator)
        sample = sample_motion_batch(clips, model, recipe.run.batch_size, frames, generator,
                                     recipe.context_noise_max, recipe.context_dropout)
        normal = torch.randn(recipe.run.batch_size, generator=generator)
        sample["sigma"] = torch.exp(recipe.p_mean + recipe.p_std * normal)
        return sample

    def export(step: int) -> None:
        save_motion_model(model, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="motion teacher", resume=resume, on_save=export,
                 parameters=list(model.denoiser.parameters()))


def _with_statistics(model: MotionModel, mean: tuple[float, ...], std: tuple[float, ...]) -> MotionModel:
    """The same networks with the code normalisation set to mean / std."""
    renewed = MotionModel(dataclasses.replace(model.config, code_mean=mean, code_std=std))
    renewed.load_state_dict(model.state_dict())
    freeze(renewed.audio_encoder)
    return renewed


def train_motion_distill(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    init = loaded.resolve(recipe.init)
    teacher = freeze(load_motion_model(init))
    started_from = recorded_provenance(init)
    if teacher.config.sampling.parameterization != "edm":
        raise AvatarError(f"motion-distill: {recipe.init} is not a teacher (its parameterization is "
                          f"{teacher.config.sampling.parameterization!r}, expected 'edm')")
    _check_chunks(recipe, teacher.config.denoiser, loaded.source)
    sampling = dataclasses.replace(teacher.config.sampling, parameterization="consistency", sampler="consistency",
                                   steps=recipe.student_steps)
    reads_sliders = teacher.config.denoiser.slider_condition and recipe.slider_condition
    denoiser = dataclasses.replace(teacher.config.denoiser, slider_condition=reads_sliders)
    student = MotionModel(dataclasses.replace(teacher.config, sampling=sampling, chunks=recipe.chunks,
                                              denoiser=denoiser))
    student.load_state_dict({k: v for k, v in teacher.state_dict().items() if k in student.state_dict()})
    freeze(student.audio_encoder)
    student.denoiser.requires_grad_(True).train()
    target = freeze(copy.deepcopy(student))
    sigmas = karras_sigmas(recipe.discretisation, teacher.config.sampling)[:-1].flip(0)  # ascending, sigma_min first
    clips = load_motion_data(data, teacher, out, augment=recipe.augment, copies=recipe.augmented_copies)
    objective = MotionDistillObjective(student, teacher, target, sigmas, recipe.mouth_weight)

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        frames = chunk_length(step, recipe.curriculum, generator)
        sample = sample_motion_batch(clips, student, recipe.run.batch_size, frames, generator,
                                     recipe.context_noise_max, recipe.context_dropout)
        sample["level"] = torch.randint(len(sigmas) - 1, (recipe.run.batch_size,), generator=generator)
        return sample

    @torch.no_grad()
    def update_target(step: int) -> None:
        for ema, live in zip(target.denoiser.parameters(), student.denoiser.parameters()):
            ema.lerp_(live, 1 - recipe.ema_decay)

    def export(step: int) -> None:
        save_motion_model(student, out / "model", provenance=provenance(loaded, data, step, started_from))

    return train(objective, batch, run=recipe.run, out=out, title="motion distill", resume=resume,
                 after_step=update_target, on_save=export, parameters=list(student.denoiser.parameters()))


MOTION_STAGES = {"motion-teacher": train_motion_teacher, "motion-distill": train_motion_distill}
