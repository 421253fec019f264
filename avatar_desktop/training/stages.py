"""The training stages as objectives (nn.Modules whose forward returns the batch loss) and their drivers.

autoencoder: L1 + multi-scale gradient loss on frames (the decoder alone, and from blurred latents, on request).
audio:       the audio encoder predicts each frame's mouth (opening, width, rounding, teeth) from its audio window.
teacher:     EDM denoising loss (Karras et al. 2022) on chunks of cached latents, with the variable-length
             curriculum, noise-augmented motion frames and audio dropout.
distill:     consistency distillation (Song et al. 2023): the student at level sigma_{n+1} matches the EMA target at
             sigma_n after one Heun step of the teacher's ODE between the two levels.
expression:  a one-step student learns what each slider changes from synthetic chunks rendered twice, with the
             sliders held and with some of them moving (training.expression), its mouth anchored to its start;
             it also reads the slider values its motion frames were made with (DenoiserConfig.motion_expression).
Every stage writes `out/model` (a model folder the engine loads), `out/checkpoint`, `out/loss.csv`, `out/loss.png`.
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from avatar_desktop.config import EXPRESSION_COMPONENTS, ModelConfig
from avatar_desktop.errors import AvatarError
from avatar_desktop.files import write_json_atomic
from avatar_desktop.models.autoencoder import decoder_parameters
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.presets import build_model, preset_config
from avatar_desktop.models.store import load_model, read_model_config, save_model
from avatar_desktop.sampling import heun_step
from avatar_desktop.sampling.schedules import karras_sigmas
from avatar_desktop.training.config import CurriculumConfig, LoadedRecipe, RunConfig
from avatar_desktop.training.data import (
    MOUTH_TARGETS,
    FramePool,
    MouthClip,
    cache_latents,
    chunk_windows,
    mouth_clips,
    sample_chunks,
    sample_mouth_windows,
    training_clips,
)
from avatar_desktop.training.expression import encode_batch, record_clips, sample_expression_chunks
from avatar_desktop.training.loop import Distributed, train

# ----------------------------------------------------------------------------- autoencoder


def image_gradient_loss(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None,
                        scales: int = 3) -> torch.Tensor:
    """Mean L1 distance of horizontal and vertical finite differences at `scales` resolutions (B, 3, H, W), each
    difference weighted by `weight` (B, 1, H, W) at its first pixel (1 everywhere when None)."""
    if weight is None:
        weight = prediction.new_ones(1, 1, *prediction.shape[-2:])
    total = prediction.new_zeros(())
    for _ in range(scales):
        total = total + (weight[..., :, :-1] * (prediction.diff(dim=-1) - target.diff(dim=-1)).abs()).mean()
        total = total + (weight[..., :-1, :] * (prediction.diff(dim=-2) - target.diff(dim=-2)).abs()).mean()
        prediction, target, weight = (F.avg_pool2d(x, 2) for x in (prediction, target, weight))
    return total / scales


def blur_latents(latents: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Latents (B, C, h, w), each sample blurred by a separable Gaussian of its own width sigma (B,) in latent
    cells (0: unchanged), with reflected borders."""
    taps = torch.arange(-2, 3, dtype=latents.dtype, device=latents.device)
    kernel = torch.exp(-taps**2 / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # (B, 5)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    b, c, h, w = latents.shape
    kernel = kernel.repeat_interleave(c, dim=0)  # (B*C, 5): one kernel per channel of each sample
    x = F.pad(latents.reshape(1, b * c, h, w), (2, 2, 2, 2), mode="reflect")
    x = F.conv2d(x, kernel[:, None, None, :], groups=b * c)
    x = F.conv2d(x, kernel[:, None, :, None], groups=b * c)
    return x.reshape(b, c, h, w)


class AutoencoderObjective(nn.Module):
    """Reconstruction loss of a batch of images (B, 3, H, W) in [-1, 1] whose mouth masks (B, 1, H, W) weigh
    1 + mouth_weight; a frozen encoder runs without gradients. A batch with `latent_blur` (B,) has its latents
    blurred by that many latent cells before decoding, while the target stays the sharp image."""

    def __init__(self, model: AvatarModel, gradient_weight: float, mouth_weight: float = 0.0, train_encoder: bool = True):
        super().__init__()
        self.model = model
        self.gradient_weight = gradient_weight
        self.mouth_weight = mouth_weight
        self.train_encoder = train_encoder

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        images = batch["images"]
        weight = 1 + self.mouth_weight * batch["mouth"]
        ae = self.model.autoencoder
        with torch.set_grad_enabled(self.train_encoder and torch.is_grad_enabled()):
            latents = ae.encode(images)
        if "latent_blur" in batch:
            latents = blur_latents(latents, batch["latent_blur"])
        reconstruction = ae.decode(latents)
        l1 = (weight * (reconstruction - images).abs()).mean()
        return l1 + self.gradient_weight * image_gradient_loss(reconstruction, images, weight)


# ----------------------------------------------------------------------------- audio encoder


class AudioObjective(nn.Module):
    """Squared error of the mouth predicted from audio: encoder tokens (B, T, N, D) -> linear head -> (B, T, 4)."""

    def __init__(self, model: AvatarModel):
        super().__init__()
        self.model = model
        audio = model.config.audio
        self.head = nn.Linear(audio.tokens_per_frame * audio.token_dim, len(MOUTH_TARGETS))

    def predict(self, windows: torch.Tensor) -> torch.Tensor:
        """(B, T, W) audio windows -> (B, T, 4) predicted MOUTH_TARGETS."""
        return self.head(self.model.audio_encoder(windows).flatten(2))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return ((self.predict(batch["windows"]) - batch["mouth"]) ** 2).mean()


@torch.no_grad()
def mouth_prediction_scores(objective: AudioObjective, clips: list[MouthClip]) -> dict[str, float]:
    """Pearson r between predicted and true values of each MOUTH_TARGETS column over all frames of `clips`."""
    model = objective.model
    predicted, truth = [], []
    for clip in clips:
        windows = chunk_windows(clip.audio, 0, len(clip.mouth), model.config.audio, model.config.fps)
        predicted.append(objective.predict(windows[None])[0])
        truth.append(clip.mouth)
    p, t = torch.cat(predicted), torch.cat(truth)
    return {name: float(torch.corrcoef(torch.stack([p[:, i], t[:, i]]))[0, 1]) for i, name in enumerate(MOUTH_TARGETS)}


# ----------------------------------------------------------------------------- diffusion


def chunk_length(step: int, curriculum: CurriculumConfig, generator: torch.Generator) -> int:
    """L_max while step < fixed_until; then 1..4 with probability short_share, else 5..L_max (uniform within each)."""
    longest = curriculum.max_frames
    if step < curriculum.fixed_until or longest <= 1:
        return longest
    if longest <= 4 or float(torch.rand(1, generator=generator)) < curriculum.short_share:
        return int(torch.randint(1, min(4, longest) + 1, (1,), generator=generator))
    return int(torch.randint(5, longest + 1, (1,), generator=generator))


def conditioning(model: AvatarModel, batch: dict[str, torch.Tensor], motion: torch.Tensor) -> DenoiserInputs:
    windows = batch["windows"] * batch["keep_audio"][:, None, None]
    return DenoiserInputs(
        reference=batch["reference"], motion=motion, audio=model.audio_encoder(windows),
        label=batch["label"], expression=batch["expression"],
    )


def _noised_motion(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return batch["motion"] + batch["motion_sigma"][:, None, None, None, None] * batch["motion_noise"]


def _silent(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with its audio dropped (silence), the condition audio guidance steers away from."""
    return {**batch, "keep_audio": torch.zeros_like(batch["keep_audio"])}


def _weighted_mean(error: torch.Tensor, batch: dict[str, torch.Tensor], mouth_weight: float) -> torch.Tensor:
    """Squared error (B, T, C, h, w) -> per-sample mean (B,), the mouth cells weighted by 1 + mouth_weight."""
    if mouth_weight:
        error = error * (1 + mouth_weight * batch["mouth"])
    return error.mean(dim=(1, 2, 3, 4))


class TeacherObjective(nn.Module):
    """EDM loss: lambda(sigma) ||D(x0 + sigma n, sigma) - x0||^2 with lambda = (sigma^2 + sd^2) / (sigma sd)^2."""

    def __init__(self, model: AvatarModel, mouth_weight: float = 0.0):
        super().__init__()
        self.model = model
        self.mouth_weight = mouth_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, sigma = batch["x0"], batch["sigma"]
        cond = conditioning(self.model, batch, _noised_motion(batch))
        denoised = self.model.denoise(x0 + sigma[:, None, None, None, None] * batch["noise"], sigma, cond)
        sd = self.model.config.sampling.sigma_data
        weight = (sigma**2 + sd**2) / (sigma * sd) ** 2
        return (weight * _weighted_mean((denoised - x0) ** 2, batch, self.mouth_weight)).mean()


class DistillObjective(nn.Module):
    """Consistency distillation loss ||f_student(x_{n+1}, s_{n+1}) - f_target(x_hat_n, s_n)||^2."""

    def __init__(self, student: AvatarModel, teacher: AvatarModel, target: AvatarModel, sigmas: torch.Tensor,
                 audio_guidance: float = 1.0, mouth_weight: float = 0.0):
        super().__init__()
        self.student = student
        self.teacher = teacher  # frozen
        self.target = target  # EMA of the student, frozen
        self.register_buffer("sigmas", sigmas, persistent=False)
        self.audio_guidance = audio_guidance
        self.mouth_weight = mouth_weight

    def _teacher_denoiser(self, batch: dict[str, torch.Tensor], motion: torch.Tensor):
        """The teacher's clean estimate (x, sigma) -> x0, guided against silence when audio_guidance != 1."""
        cond = conditioning(self.teacher, batch, motion)
        if self.audio_guidance == 1.0:
            return lambda x, sigma: self.teacher.denoise(x, sigma, cond)
        silent = conditioning(self.teacher, _silent(batch), motion)

        def guided(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
            without = self.teacher.denoise(x, sigma, silent)
            return without + self.audio_guidance * (self.teacher.denoise(x, sigma, cond) - without)

        return guided

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        x0, index = batch["x0"], batch["level"]
        s_next, s_now = self.sigmas[index + 1], self.sigmas[index]
        x_next = x0 + s_next[:, None, None, None, None] * batch["noise"]
        motion = _noised_motion(batch)
        with torch.no_grad():
            x_now = heun_step(self._teacher_denoiser(batch, motion), x_next, s_next, s_now)
            target = self.target.denoise(x_now, s_now, conditioning(self.target, batch, motion))
        prediction = self.student.denoise(x_next, s_next, conditioning(self.student, batch, motion))
        return _weighted_mean((prediction - target) ** 2, batch, self.mouth_weight).mean()


class ExpressionObjective(nn.Module):
    """Slider loss of a one-step student on chunks rendered twice (training.expression.sample_expression_chunks,
    then encode_batch, plus noise (B, T, C, h, w), motion_sigma (B,) and motion_noise (B, M, C, h, w)).

    Each version v (held, changed): ||S_v - target_v||^2 with S_v the student's one-step output from sigma_max,
    target_v the rendered latents outside the mouth box and the frozen anchor's output inside it (chunks whose
    motion frames are `natural` take the anchor everywhere in their held version); plus difference_weight *
    ||(S_changed - S_held) - (x_changed - x_held)||^2, what the changed sliders alone should change."""

    def __init__(self, student: AvatarModel, anchor: AvatarModel, difference_weight: float):
        super().__init__()
        self.student = student
        self.anchor = anchor  # frozen
        self.difference_weight = difference_weight

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        noise = batch["noise"]
        sigma = noise.new_full((len(noise),), self.student.config.sampling.sigma_max)
        x = noise * sigma[:, None, None, None, None]
        with torch.no_grad():  # the audio encoder is frozen and the same in both networks
            audio = self.student.audio_encoder(batch["windows"])
        motion = _noised_motion(batch)
        outputs = {}
        loss = noise.new_zeros(())
        for version in ("held", "changed"):
            cond = DenoiserInputs(reference=batch["reference"], motion=motion, audio=audio, label=batch["label"],
                                  expression=batch[f"{version}_expression"],
                                  motion_expression=batch["motion_expression"])
            with torch.no_grad():
                anchored = self.anchor.denoise(x, sigma, cond)
            mouth = batch[f"{version}_mouth"]
            target = mouth * anchored + (1 - mouth) * batch[f"{version}_x0"]
            if version == "held":
                target = torch.where(batch["natural"][:, None, None, None, None], anchored, target)
            outputs[version] = self.student.denoise(x, sigma, cond)
            loss = loss + ((outputs[version] - target) ** 2).mean()
        change = outputs["changed"] - outputs["held"]
        true_change = batch["changed_x0"] - batch["held_x0"]
        return loss + self.difference_weight * ((change - true_change) ** 2).mean()


# ----------------------------------------------------------------------------- drivers


def _freeze(module: nn.Module) -> nn.Module:
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module.eval()


def _diffusion_batch(step: int, generator: torch.Generator, clips, model_config: ModelConfig, run: RunConfig,
                     curriculum: CurriculumConfig, motion_noise_max: float, audio_dropout: float,
                     stale_motion: float, portrait_reference: bool) -> dict[str, Any]:
    frames = chunk_length(step, curriculum, generator)
    batch = sample_chunks(clips, run.batch_size, frames, model_config.denoiser.num_motion_frames,
                          model_config.audio, model_config.fps, generator, stale_motion, portrait_reference)
    size = run.batch_size
    batch["noise"] = torch.randn(batch["x0"].shape, generator=generator)
    batch["motion_sigma"] = torch.rand(size, generator=generator) * motion_noise_max
    batch["motion_noise"] = torch.randn(batch["motion"].shape, generator=generator)
    batch["keep_audio"] = (torch.rand(size, generator=generator) >= audio_dropout).float()
    return batch


def train_autoencoder(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    try:
        preset_config(recipe.preset)
    except ValueError as error:
        raise AvatarError(f"{loaded.source}: {error}") from None
    earlier: dict[str, Any] = {}
    if recipe.init:
        model = _load_previous_stage(loaded)
        earlier = {"init": read_model_config(loaded.resolve(recipe.init))[1].get("provenance", {})}
        if model.config.preset != recipe.preset:
            raise AvatarError(f"{loaded.source}: init {recipe.init} is a {model.config.preset!r} model, but the recipe's "
                              f"preset is {recipe.preset!r}; set preset = {model.config.preset!r} or start from fresh weights")
    else:
        if not recipe.train_encoder:
            raise AvatarError(f"{loaded.source}: train_encoder = false needs init (a model whose encoder is trained)")
        model = build_model(recipe.preset, seed=recipe.run.seed)
    for network in (model.audio_encoder, model.denoiser):
        _freeze(network)
    model.autoencoder.train()
    trained = list(model.autoencoder.parameters()) if recipe.train_encoder else decoder_parameters(model.autoencoder)
    trained_ids = {id(parameter) for parameter in trained}
    for parameter in model.autoencoder.parameters():
        parameter.requires_grad_(id(parameter) in trained_ids)
    pool_generator = torch.Generator().manual_seed(recipe.run.seed + 1)
    pool = FramePool(training_clips(data), recipe.pool_clips, recipe.refresh_every, pool_generator)
    objective = AutoencoderObjective(model, recipe.gradient_weight, recipe.mouth_weight, recipe.train_encoder)

    def batch(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        images, mouth = pool.sample(recipe.run.batch_size, generator)
        if not recipe.latent_blur:
            return {"images": images, "mouth": mouth}
        blur = torch.rand(recipe.run.batch_size, generator=generator) * recipe.latent_blur
        return {"images": images, "mouth": mouth, "latent_blur": blur}

    def export(step: int) -> None:  # a model started from `init` also records how that one was made
        save_model(model, out / "model", provenance=_provenance(loaded, data, step) | earlier)

    return train(objective, batch, run=recipe.run, out=out, title="autoencoder", resume=resume, on_save=export,
                 parameters=trained)


def train_audio(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    previous = _load_previous_stage(loaded)
    architecture = preset_config(previous.config.preset)
    config = dataclasses.replace(architecture, autoencoder=previous.config.autoencoder)
    model = build_model(config, seed=recipe.run.seed)
    model.autoencoder.load_state_dict(previous.autoencoder.state_dict())
    for network in (model.autoencoder, model.denoiser):
        _freeze(network)
    model.audio_encoder.train()
    clips = mouth_clips(data)
    objective = AudioObjective(model)

    def batch(step: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return sample_mouth_windows(clips, recipe.run.batch_size, recipe.frames, config.audio, config.fps, generator,
                                    recipe.augment)

    def export(step: int) -> None:
        save_model(model, out / "model", provenance=_provenance(loaded, data, step))

    rows = train(objective, batch, run=recipe.run, out=out, title="audio encoder", resume=resume, on_save=export)
    if Distributed.from_environment().is_main:
        _report_mouth_prediction(objective.eval(), data, out)
    return rows


def _report_mouth_prediction(objective: AudioObjective, data: Path, out: Path) -> None:
    """Write out/mouth_prediction.json: the Pearson r of each predicted mouth value on held-out (else training) clips."""
    try:
        clips, split = mouth_clips(data, "heldout"), "heldout"
    except AvatarError:
        clips, split = mouth_clips(data), "train"
    scores = mouth_prediction_scores(objective, clips)
    write_json_atomic(out / "mouth_prediction.json", {"split": split, "clips": len(clips), "pearson_r": scores})
    print(f"mouth from audio, {split} clips: " + ", ".join(f"{name} r={r:.3f}" for name, r in scores.items()))


def _load_previous_stage(loaded: LoadedRecipe) -> AvatarModel:
    folder = loaded.resolve(loaded.recipe.init)
    return load_model(folder)


def train_teacher(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    previous = _load_previous_stage(loaded)
    _check_curriculum(recipe.curriculum, previous.config)
    further = previous.config.sampling.parameterization == "edm"  # init is a teacher: train it further
    if further and previous.config.sampling.reference_residual != recipe.reference_residual:
        raise AvatarError(f"{loaded.source}: init {recipe.init} is a teacher with reference_residual = "
                          f"{str(previous.config.sampling.reference_residual).lower()}; a teacher trained further keeps "
                          "it: set the same value, or start a new teacher from its audio stage with warm_start")
    sampling = dataclasses.replace(previous.config.sampling, parameterization="edm", sampler="heun",
                                   teacher_steps=recipe.teacher_steps, reference_residual=recipe.reference_residual)
    fresh = build_model(dataclasses.replace(previous.config, sampling=sampling), seed=recipe.run.seed)
    fresh.autoencoder.load_state_dict(previous.autoencoder.state_dict())
    fresh.audio_encoder.load_state_dict(previous.audio_encoder.state_dict())
    if further:
        fresh.denoiser.load_state_dict(previous.denoiser.state_dict())
    else:
        if recipe.warm_start:
            _warm_start(fresh.denoiser, load_model(loaded.resolve(recipe.warm_start)).denoiser, recipe.warm_start)
        if recipe.reference_residual:  # a zero output: the first estimate is the reference itself
            nn.init.zeros_(fresh.denoiser.conv_out.weight)
            nn.init.zeros_(fresh.denoiser.conv_out.bias)
    frozen = [fresh.autoencoder] + ([fresh.audio_encoder] if recipe.freeze_audio_encoder else [])
    clips = _latent_cache(data, fresh)
    objective = TeacherObjective(fresh.train(), recipe.mouth_weight)
    for network in frozen:
        _freeze(network)

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        sample = _diffusion_batch(step, generator, clips, fresh.config, recipe.run, recipe.curriculum,
                                  recipe.motion_noise_max, recipe.audio_dropout, recipe.stale_motion,
                                  recipe.portrait_reference)
        sample["sigma"] = torch.exp(recipe.p_mean + recipe.p_std * torch.randn(recipe.run.batch_size, generator=generator))
        return sample

    def export(step: int) -> None:
        save_model(fresh, out / "model", provenance=_provenance(loaded, data, step))

    return train(objective, batch, run=recipe.run, out=out, title="teacher", resume=resume, on_save=export)


def train_distill(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    teacher = _freeze(_load_previous_stage(loaded))
    if teacher.config.sampling.parameterization != "edm":
        raise AvatarError(f"distill: {recipe.init} is not a teacher (its parameterization is "
                          f"{teacher.config.sampling.parameterization!r}, expected 'edm')")
    _check_curriculum(recipe.curriculum, teacher.config)
    sampling = dataclasses.replace(teacher.config.sampling, parameterization="consistency", sampler="consistency",
                                   steps=recipe.student_steps)
    student = copy.deepcopy(teacher)
    student.config = dataclasses.replace(teacher.config, sampling=sampling, chunks=recipe.chunks)
    student.denoiser.requires_grad_(True)
    student.audio_encoder.requires_grad_(not recipe.freeze_audio_encoder)
    student.train()
    student.autoencoder.eval()
    target = _freeze(copy.deepcopy(student))
    sigmas = karras_sigmas(recipe.discretisation, teacher.config.sampling)[:-1].flip(0)  # ascending, sigma_min first
    clips = _latent_cache(data, teacher)
    objective = DistillObjective(student, teacher, target, sigmas, recipe.audio_guidance, recipe.mouth_weight)

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        sample = _diffusion_batch(step, generator, clips, teacher.config, recipe.run, recipe.curriculum,
                                  recipe.motion_noise_max, 0.0, recipe.stale_motion,
                                  recipe.portrait_reference)
        sample["level"] = torch.randint(len(sigmas) - 1, (recipe.run.batch_size,), generator=generator)
        return sample

    trained = [p for p in student.parameters() if p.requires_grad]

    @torch.no_grad()
    def update_target(step: int) -> None:
        for ema, live in zip(target.parameters(), student.parameters()):
            ema.lerp_(live, 1 - recipe.ema_decay)

    def export(step: int) -> None:
        save_model(student, out / "model", provenance=_provenance(loaded, data, step))

    return train(objective, batch, run=recipe.run, out=out, title="distill", resume=resume,
                 after_step=update_target, on_save=export, parameters=trained)


def train_expression(loaded: LoadedRecipe, data: Path, out: Path, resume: bool) -> list[tuple[int, float]]:
    recipe = loaded.recipe
    student = _load_previous_stage(loaded)
    sampling = student.config.sampling
    if (sampling.parameterization, sampling.steps) != ("consistency", 1):
        raise AvatarError(f"expression: {recipe.init} is a {sampling.parameterization!r} model with {sampling.steps} "
                          "steps; this stage fine-tunes a one-step consistency student (a distill stage with "
                          "student_steps = 1)")
    _check_curriculum(recipe.curriculum, student.config)
    earlier = {"init": read_model_config(loaded.resolve(recipe.init))[1].get("provenance", {})}
    anchor = _freeze(copy.deepcopy(student))
    taught = np.array([name in recipe.sliders for name in EXPRESSION_COMPONENTS])
    warped = np.flatnonzero(~taught).tolist()  # the engine warps them and tells the denoiser 0
    student = _expression_student(student, recipe.slider_speed, recipe.sliders)
    for network in (student.autoencoder, student.audio_encoder):
        _freeze(network)
    student.denoiser.requires_grad_(True).train()
    clips = record_clips(data, student.autoencoder)
    objective = ExpressionObjective(student, anchor, recipe.difference_weight)
    config = student.config
    size = config.autoencoder.image_size
    latent_size = student.latent_shape[-1]

    def batch(step: int, generator: torch.Generator) -> dict[str, Any]:
        frames = chunk_length(step, recipe.curriculum, generator)
        sample = sample_expression_chunks(clips, recipe.run.batch_size, frames, config.denoiser.num_motion_frames,
                                          config.audio, config.fps, generator, recipe.change_share,
                                          recipe.slider_speed / config.fps, size, latent_size, taught)
        for key in ("held_expression", "changed_expression", "motion_expression"):
            sample[key][:, warped] = 0
        sample = encode_batch(student.autoencoder, sample)
        sample["noise"] = torch.randn(sample["held_x0"].shape, generator=generator)
        sample["motion_sigma"] = torch.rand(recipe.run.batch_size, generator=generator) * recipe.motion_noise_max
        sample["motion_noise"] = torch.randn(sample["motion"].shape, generator=generator)
        return sample

    def export(step: int) -> None:
        save_model(student, out / "model", provenance=_provenance(loaded, data, step) | earlier)

    return train(objective, batch, run=recipe.run, out=out, title="expression", resume=resume, on_save=export,
                 parameters=list(student.denoiser.parameters()))


def _expression_student(model: AvatarModel, slider_speed: float,
                        taught: tuple[str, ...] = EXPRESSION_COMPONENTS) -> AvatarModel:
    """`model` with DenoiserConfig.motion_expression on, SamplingConfig.slider_speed set and the sliders not `taught`
    left to the engine's warp (SamplingConfig.warped_sliders; the taught ones go to the denoiser). The expression
    embedding's new inputs (the motion frames' slider values m) start with the negated weights of the chunk's values
    e, so that its first layer reads W (e - m): a slider held since the motion frames asks for no change (they show
    it already), one that just moved asks for what the model did before. Training then learns what else the pair
    tells."""
    denoiser = dataclasses.replace(model.config.denoiser, motion_expression=True)
    sampling = dataclasses.replace(model.config.sampling, slider_speed=slider_speed,
                                   warped_sliders=tuple(name for name in EXPRESSION_COMPONENTS if name not in taught))
    student = AvatarModel(dataclasses.replace(model.config, denoiser=denoiser, sampling=sampling),
                          autoencoder=model.autoencoder)
    state = model.state_dict()
    if not model.config.denoiser.motion_expression:
        key = "denoiser.expression_embedding.0.weight"
        state[key] = torch.cat([state[key], -state[key]], dim=1)
    student.load_state_dict(state)
    return student


def _warm_start(denoiser: nn.Module, source: nn.Module, name: str) -> None:
    """Copy `source`'s weights into `denoiser` wherever a name and shape match; the rest keep their initialisation."""
    own = denoiser.state_dict()
    matching = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise AvatarError(f"warm_start {name}: its denoiser shares no layer with this one (another preset?)")
    denoiser.load_state_dict(matching, strict=False)
    kept = len(own) - len(matching)
    print(f"warm start from {name}: {len(matching)} of {len(own)} tensors copied, {kept} keep their initialisation")


def _check_curriculum(curriculum: CurriculumConfig, config: ModelConfig) -> None:
    if curriculum.max_frames > config.denoiser.max_chunk_frames:
        raise AvatarError(f"curriculum.max_frames={curriculum.max_frames} exceeds the model's max_chunk_frames="
                          f"{config.denoiser.max_chunk_frames}")


def _latent_cache(data: Path, model: AvatarModel):
    ranks = Distributed.from_environment()
    if ranks.world > 1 and not ranks.is_main:
        torch.distributed.barrier()  # rank 0 writes the cache first
    clips = cache_latents(data, model.autoencoder)
    if ranks.world > 1 and ranks.is_main:
        torch.distributed.barrier()
    return clips


def _provenance(loaded: LoadedRecipe, data: Path, step: int) -> dict[str, Any]:
    return {"stage": loaded.stage, "steps": step, "data": data.name, "recipe": loaded.text}


STAGES = {"autoencoder": train_autoencoder, "audio": train_audio, "teacher": train_teacher, "distill": train_distill,
          "expression": train_expression}
