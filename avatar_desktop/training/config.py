"""Training recipes: one typed dataclass per stage, the latent model's and the motion model's, read from a TOML file
(configs/*.toml).

Unknown keys are refused with their name and place. Every value is checked against its field's type and, for the
keys named in RANGES (whatever dataclass holds them), its range, in one line naming the key and the file; a new
field is checked by its type at once, and by its range once its name is in RANGES. Paths inside a recipe (`init`)
are relative to the recipe file.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from avatar_desktop.audio.augment import AugmentConfig
from avatar_desktop.config import EXPRESSION_COMPONENTS, ChunkPlanConfig, MotionDenoiserConfig, _from_dict
from avatar_desktop.errors import AvatarError


@dataclass(frozen=True)
class Range:
    """The values a numeric recipe key allows: at least `low` (above it when `low_open`), at most `high`."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False

    def problem(self, value: float) -> str | None:
        """Why `value` is out of range, or None."""
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        if not too_low and (self.high is None or value <= self.high):
            return None
        if self.low is not None and self.high is not None:
            return f"must be from {self.low:g} to {self.high:g}"
        if self.high is not None:
            return f"must be at most {self.high:g}"
        return f"must be above {self.low:g}" if self.low_open else f"must be at least {self.low:g}"


COUNT = Range(low=1)
NON_NEGATIVE = Range(low=0)
POSITIVE = Range(low=0, low_open=True)
FRACTION = Range(low=0, high=1)
RANGES: dict[str, Range] = {
    # run (lr = 0 is allowed: it trains nothing, which checks a stage without changing its weights)
    "steps": COUNT, "batch_size": COUNT, "save_every": COUNT, "warmup_steps": NON_NEGATIVE, "seed": NON_NEGATIVE,
    "lr": NON_NEGATIVE, "weight_decay": NON_NEGATIVE, "grad_clip": NON_NEGATIVE, "final_lr_fraction": FRACTION,
    # chunk plans and the curriculum
    "first": COUNT, "after_state_change": COUNT, "steady": COUNT, "max_frames": COUNT, "fixed_until": NON_NEGATIVE,
    "short_share": FRACTION,
    # stages
    "frames": COUNT, "pool_clips": COUNT, "refresh_every": COUNT, "teacher_steps": COUNT, "student_steps": COUNT,
    "discretisation": Range(low=2), "ema_decay": FRACTION, "p_std": POSITIVE, "audio_dropout": FRACTION,
    "change_share": FRACTION, "context_dropout": FRACTION, "slider_speed": POSITIVE,
    "audio_guidance": NON_NEGATIVE, "mouth_weight": NON_NEGATIVE, "gradient_weight": NON_NEGATIVE,
    "difference_weight": NON_NEGATIVE, "motion_noise_max": NON_NEGATIVE, "context_noise_max": NON_NEGATIVE,
    "context_noise_sigma": NON_NEGATIVE, "augmented_copies": NON_NEGATIVE, "encoder_channels": NON_NEGATIVE,
    # motion denoiser architecture
    "width": COUNT, "layers": COUNT, "heads": COUNT, "mlp_ratio": COUNT, "context_frames": NON_NEGATIVE,
    "max_chunk_frames": COUNT, "num_states": COUNT, "expression_dim": COUNT,
}
"""Ranges by key name, wherever the key appears (a run's `steps`, a chunk plan's `first`)."""


@dataclass(frozen=True)
class RunConfig:
    """steps: optimiser steps; batch_size: the global batch (split across DDP ranks); save_every: steps between
    resumable checkpoints; seed: data order, noise and initialisation; final_lr_fraction: the learning rate at the
    last step as a fraction of `lr`, reached by a cosine after the warm-up (1.0 keeps it constant)."""

    steps: int = 1000
    batch_size: int = 8
    lr: float = 2e-4
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    warmup_steps: int = 100
    final_lr_fraction: float = 1.0
    save_every: int = 200
    seed: int = 0


@dataclass(frozen=True)
class AutoencoderRecipe:
    """Autoencoder of `preset`: L1 + multi-scale image-gradient L1 (sharp edges, no perceptual network needed); the
    pixels of the mouth box weigh 1 + mouth_weight in both (lip edges decide whether a mouth reads as closed).

    init: a model folder to start from instead of fresh weights (its preset must be `preset`); its other networks
    are kept, so the output is that model with the trained autoencoder. train_encoder = false trains the decoder
    alone: every latent stays the same, so a finished model's denoiser and latent cache stay valid.
    latent_blur > 0 blurs each training latent by a Gaussian of a random width in [0, latent_blur] latent cells
    while the target stays sharp: the decoder learns to draw crisp edges from the softer latents a few-step
    generator produces, not only from the encoder's.
    decoder = "tiny" trains the preset's tiny decoder (AutoencoderConfig.tiny_decoder, TAESD layout) alone, to decode
    init's latents (needs init and train_encoder = false); every other weight stays init's."""

    preset: str = "tiny-cpu"
    run: RunConfig = RunConfig()
    gradient_weight: float = 0.5
    mouth_weight: float = 0.0
    pool_clips: int = 16
    refresh_every: int = 50
    init: str = ""
    train_encoder: bool = True
    latent_blur: float = 0.0
    decoder: str = "full"

    def __post_init__(self) -> None:
        if not 0.0 <= self.latent_blur <= 1.0:  # the blur kernel spans 5 cells: wider Gaussians would be cut off
            raise ValueError(f"latent_blur = {self.latent_blur}: choose a width from 0 (off) to 1 latent cell")
        if self.decoder not in ("full", "tiny"):
            raise ValueError(f"decoder = {self.decoder!r}: choose \"full\" or \"tiny\"")
        if self.decoder == "tiny" and self.train_encoder:
            raise ValueError('decoder = "tiny" trains the tiny decoder alone: add train_encoder = false')


@dataclass(frozen=True)
class AudioRecipe:
    """Audio encoder pretraining on clips whose mouth is known (synthetic data): from each frame's audio window the
    encoder's tokens predict that frame's mouth opening, width, rounding and teeth (`data.MOUTH_TARGETS`) through a
    linear head that only this stage uses; squared error. The denoiser then starts from audio tokens that already
    say how the mouth looks, instead of learning phonetics through the diffusion loss alone.

    init: a model folder whose autoencoder is trained. The output holds that autoencoder, the trained audio encoder
    and an untrained denoiser of the preset's architecture; `frames`: consecutive frames per sampled stretch (the
    run's batch_size stretches per step); `augment`: the room and microphone chain ([augment] table; off unless its
    probability is above 0); `encoder_channels`: the encoder's convolution width (a multiple of 8; 0: the preset's,
    AudioConfig.channels), which the model folder records."""

    init: str = ""
    run: RunConfig = RunConfig()
    frames: int = 8
    augment: AugmentConfig = AugmentConfig()
    encoder_channels: int = 0


@dataclass(frozen=True)
class CurriculumConfig:
    """Chunk lengths: L_max until `fixed_until` steps, then sampled; `short_share` of batches use 1..4 frames."""

    max_frames: int = 8
    fixed_until: int = 0
    short_share: float = 0.5


@dataclass(frozen=True)
class TeacherRecipe:
    """EDM teacher on cached latents. init: a model folder whose autoencoder is trained (the autoencoder stage's
    output), or a teacher, whose networks are then trained further; noise levels log-normal(p_mean, p_std); motion
    frames noised with sigma ~ U(0, motion_noise_max); the latent cells of the mouth box weigh 1 + mouth_weight
    in the loss (the mouth is a few percent of the frame but all of lip sync). The audio encoder comes from `init`
    (trained by the audio stage, or a teacher's), and stays as it is with `freeze_audio_encoder`. `warm_start`: a
    model folder whose denoiser weights start this one's where names and shapes match (layers it lacks keep their
    initialisation); only when `init` is not a teacher already. `reference_residual` (SamplingConfig): the teacher
    denoises the difference from the reference; its output layer then starts at zero (not warm-started), so its
    first estimate is the portrait itself. A teacher trained further keeps its own setting."""

    init: str = ""
    warm_start: str = ""
    reference_residual: bool = False
    freeze_audio_encoder: bool = False
    run: RunConfig = RunConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    p_mean: float = -0.8
    p_std: float = 1.4
    motion_noise_max: float = 0.3
    audio_dropout: float = 0.05
    teacher_steps: int = 25
    mouth_weight: float = 0.0


@dataclass(frozen=True)
class DistillRecipe:
    """Consistency distillation (Song et al. 2023) of the teacher in `init` into a `student_steps`-step student.

    The teacher's ODE is discretised into `discretisation` Karras levels; one Heun step of the teacher joins
    neighbouring levels; the target network is an EMA of the student with `ema_decay`. The teacher's step uses
    `audio_guidance` (SamplingConfig.audio_guidance), so a guided teacher gives a student that needs no guidance;
    `mouth_weight` and `freeze_audio_encoder` as in TeacherRecipe. `chunks` is the student's chunk plan: the engine
    runs the student, and its speed on the target machine sets how long a steady chunk can be kept short.
    """

    init: str = ""
    freeze_audio_encoder: bool = False
    run: RunConfig = RunConfig()
    curriculum: CurriculumConfig = CurriculumConfig()
    student_steps: int = 2
    discretisation: int = 18
    ema_decay: float = 0.995
    motion_noise_max: float = 0.3
    audio_guidance: float = 1.0
    mouth_weight: float = 0.0
    chunks: ChunkPlanConfig = ChunkPlanConfig()


@dataclass(frozen=True)
class ExpressionRecipe:
    """Slider fine-tune of a one-step student (`init`: the distill stage's output, or its decoder-sharpened model) on
    synthetic clips drawn twice, with the sliders the motion frames show held and with some of them moving on
    (training.expression). Only the denoiser trains. Outside the mouth each rendering is the target; inside it, a
    frozen copy of `init` (the anchor), which keeps the lip sync distillation gave; chunks whose motion frames and
    sliders are the clip's own keep the anchor everywhere. `difference_weight` weighs the loss on the difference
    between the two renderings (the student's changed minus held output against the true changed minus held
    latents): the part of the target that only the sliders explain. `change_share`: the chance that each slider is
    redrawn for the motion frames, and that it moves in the chunk; `slider_speed`: how fast a moving slider moves
    (slider units per second; written to the model as SamplingConfig.slider_speed, at which the engine then eases
    the sliders); motion frames noised with sigma ~ U(0, motion_noise_max) as in distillation. `sliders`: the ones
    the stage redraws and moves (the others keep the clip's own values); the student is told the others at 0, as
    the engine tells it, since the engine warps them (SamplingConfig.warped_sliders)."""

    init: str = ""
    run: RunConfig = RunConfig()
    curriculum: CurriculumConfig = CurriculumConfig(max_frames=4)
    change_share: float = 0.5
    slider_speed: float = 2.0
    difference_weight: float = 1.0
    motion_noise_max: float = 0.5
    sliders: tuple[str, ...] = EXPRESSION_COMPONENTS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sliders) - set(EXPRESSION_COMPONENTS))
        if unknown or not self.sliders:
            raise ValueError(f"sliders = {list(self.sliders)}: name one or more of {', '.join(EXPRESSION_COMPONENTS)}")


@dataclass(frozen=True)
class MotionTeacherRecipe:
    """EDM teacher of a motion model. `audio_from`: a model folder (latent or motion) whose trained audio encoder is
    copied and frozen; `denoiser`: the architecture; noise levels log-normal(p_mean, p_std); context frames noised
    with sigma ~ U(0, context_noise_max) (normalised units; the engine uses `context_noise_sigma`); with probability
    `context_dropout` the first k context frames (k uniform in 1..M) are the neutral code, as at a stream's start;
    `mouth_weight`: mouth_open and lip_press weigh 1 + mouth_weight in the loss; `teacher_steps`: Heun steps at run
    time; `chunks`: the chunk plan written to the model; `augmented_copies`: how many room-and-microphone versions
    of each clip's audio (`augment`, time kept: no tempo change) the chunks draw their audio tokens from besides the
    clean one (0: clean audio only)."""

    audio_from: str = ""
    denoiser: MotionDenoiserConfig = MotionDenoiserConfig()
    run: RunConfig = RunConfig()
    curriculum: CurriculumConfig = CurriculumConfig(max_frames=16)
    p_mean: float = -1.0
    p_std: float = 1.4
    context_noise_max: float = 0.1
    context_noise_sigma: float = 0.05
    context_dropout: float = 0.1
    mouth_weight: float = 3.0
    teacher_steps: int = 12
    chunks: ChunkPlanConfig = ChunkPlanConfig(first=1, after_state_change=2, steady=4)
    augment: AugmentConfig = AugmentConfig()
    augmented_copies: int = 0


@dataclass(frozen=True)
class MotionDistillRecipe:
    """Consistency distillation of the teacher in `init` into a `student_steps`-step student: the teacher's ODE cut
    into `discretisation` Karras levels, the target an EMA of the student (`ema_decay`); context, curriculum and
    `mouth_weight` as in MotionTeacherRecipe; `chunks`: the student's chunk plan. `slider_condition` = false: the
    student does not read the sliders (the teacher does, for its targets), so that at run time they are exact
    offsets (MotionDenoiserConfig.slider_condition). `augment`, `augmented_copies`: as in MotionTeacherRecipe."""

    init: str = ""
    run: RunConfig = RunConfig()
    curriculum: CurriculumConfig = CurriculumConfig(max_frames=16)
    student_steps: int = 1
    discretisation: int = 18
    ema_decay: float = 0.995
    context_noise_max: float = 0.1
    context_dropout: float = 0.1
    mouth_weight: float = 3.0
    chunks: ChunkPlanConfig = ChunkPlanConfig(first=1, after_state_change=2, steady=4)
    slider_condition: bool = False
    augment: AugmentConfig = AugmentConfig()
    augmented_copies: int = 0


RECIPES = {"autoencoder": AutoencoderRecipe, "audio": AudioRecipe, "teacher": TeacherRecipe, "distill": DistillRecipe,
           "expression": ExpressionRecipe}
MOTION_RECIPES = {"motion-teacher": MotionTeacherRecipe, "motion-distill": MotionDistillRecipe}
"""The photo path's motion stages (training/motion.py); RECIPES are the latent model's (training/stages/)."""


@dataclass(frozen=True)
class LoadedRecipe:
    stage: str
    recipe: (AutoencoderRecipe | AudioRecipe | TeacherRecipe | DistillRecipe | ExpressionRecipe | MotionTeacherRecipe
             | MotionDistillRecipe)
    source: Path
    text: str = field(repr=False, default="")

    def resolve(self, relative: str) -> Path:
        """A path from the recipe, relative to the recipe file's folder."""
        path = Path(relative)
        return path if path.is_absolute() else (self.source.parent / path).resolve()


def load_recipe(stage: str, path: str | Path) -> LoadedRecipe:
    """Read the TOML recipe of `stage` (a key of RECIPES)."""
    if stage not in RECIPES:
        raise AvatarError(f"unknown training stage {stage!r}: expected one of {', '.join(RECIPES)}")
    loaded = read_recipe(stage, RECIPES[stage], path, examples="configs/")
    if stage != "autoencoder" and not loaded.recipe.init:
        raise AvatarError(f"recipe {path}: set `init` to the model folder of the previous stage")
    return loaded


def load_motion_recipe(stage: str, path: str | Path) -> LoadedRecipe:
    """Read the TOML recipe of a motion stage (a key of MOTION_RECIPES)."""
    loaded = read_recipe(stage, MOTION_RECIPES[stage], path, examples="configs/motion-*.toml")
    needed = "audio_from" if stage == "motion-teacher" else "init"
    if not getattr(loaded.recipe, needed):
        raise AvatarError(f"recipe {path}: set `{needed}` to a model folder")
    return loaded


def read_recipe(stage: str, recipe_class: type, path: str | Path, *, examples: str) -> LoadedRecipe:
    """Read a TOML recipe into `recipe_class`, every value checked (recipe_problems); AvatarError in one line naming
    the file and the keys otherwise. `examples`: where to find example recipes, for a missing file."""
    path = Path(path)
    if not path.is_file():
        raise AvatarError(f"recipe {path} does not exist (see {examples} for examples)")
    try:
        text = path.read_bytes().decode()
        data = tomllib.loads(text)
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise AvatarError(f"recipe {path} is not valid TOML: {error}") from None
    problems = recipe_problems(recipe_class, data)
    if problems:
        raise AvatarError(f"recipe {path}: {'; '.join(problems)}")
    try:
        recipe = _from_dict(recipe_class, data, stage)
    except (TypeError, ValueError) as error:
        raise AvatarError(f"recipe {path}: {error}") from None
    return LoadedRecipe(stage, recipe, path, text)


def recipe_problems(recipe_class: type, data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """What is wrong with the values in `data` (a TOML table) for the dataclass `recipe_class`, as
    'run.steps = -5: must be at least 1'; nested tables are checked against their dataclass fields. Keys the class
    lacks are left to _from_dict, which names them."""
    hints = typing.get_type_hints(recipe_class)
    problems = []
    for item in dataclasses.fields(recipe_class):
        if item.name not in data:
            continue
        key, value, expected = prefix + item.name, data[item.name], hints[item.name]
        if dataclasses.is_dataclass(expected):
            if isinstance(value, Mapping):
                problems += recipe_problems(expected, value, f"{key}.")
            else:
                problems.append(f"{key} = {_shown(value)}: expected a table ([{key}])")
            continue
        problem = _type_problem(expected, value)
        if problem is None and item.name in RANGES and isinstance(value, (int, float)):
            problem = RANGES[item.name].problem(value)
        if problem is not None:
            problems.append(f"{key} = {_shown(value)}: {problem}")
    return problems


def _type_problem(expected: Any, value: Any) -> str | None:
    """Why `value` (from TOML) does not fit the type annotation `expected`, or None (types it does not know pass)."""
    origin, args = typing.get_origin(expected), typing.get_args(expected)
    if origin in (typing.Union, types.UnionType):
        options = [option for option in args if option is not type(None)]
        found = [_type_problem(option, value) for option in options]
        return None if None in found else found[0]
    if expected is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if expected is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected a whole number"
    if expected is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            return "expected a number"
        return None if math.isfinite(value) else "expected a finite number"
    if expected is str:
        return None if isinstance(value, str) else "expected text in quotes"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        if not isinstance(value, list):
            return "expected a list"
        found = [_type_problem(args[0], element) for element in value]
        return next((f"in the list: {problem}" for problem in found if problem is not None), None)
    if origin is tuple and args:  # a fixed-length tuple, e.g. a (low, high) range
        if not isinstance(value, list) or len(value) != len(args):
            return f"expected a list of {len(args)} values"
        found = [_type_problem(kind, element) for kind, element in zip(args, value)]
        return next((f"in the list: {problem}" for problem in found if problem is not None), None)
    return None


def _shown(value: Any) -> str:
    """A value as it would be written in TOML (strings in quotes)."""
    return f'"{value}"' if isinstance(value, str) else str(value).lower() if isinstance(value, bool) else str(value)
