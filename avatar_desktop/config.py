"""Typed configs, one dataclass per concern, and the vocabulary every part shares.

Entry points (CLI, GUI, training) compose these; models save theirs in `model.json` so that a checkpoint
rebuilds exactly the network it was trained with.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any, Mapping, TypeVar

SAMPLE_RATE = 16_000
"""Audio sample rate (Hz) of everything past the capture/decoding boundary."""


class State(enum.IntEnum):
    """The three conversational states of LLIA; the integer is the label embedding index."""

    SPEAKING = 0
    LISTENING = 1
    IDLE = 2

    @classmethod
    def parse(cls, name: str) -> "State":
        try:
            return cls[name.strip().upper()]
        except KeyError:
            choices = ", ".join(s.name.lower() for s in cls)
            raise ValueError(f"unknown state {name!r}: expected one of {choices}") from None


EXPRESSION_COMPONENTS: tuple[str, ...] = ("smile", "brow", "eye_open", "head_yaw", "head_pitch")
"""Named components of the expression vector, each in [-1, 1] with 0 = neutral.

smile: mouth corners up (+) / down (-); brow: raised (+) / lowered (-); eye_open: wide (+) / narrowed (-);
head_yaw: turned to the viewer's right (+); head_pitch: tilted up (+).
"""

HEAD_SLIDERS = ("head_yaw", "head_pitch")
HEAD_SLIDER_INDICES = tuple(EXPRESSION_COMPONENTS.index(name) for name in HEAD_SLIDERS)
"""The sliders that turn the head (the engine's warp turns it unless the model was taught to)."""


def parse_expression(text: str) -> dict[str, float]:
    """Parse `smile=0.5,brow=-0.2` into a dict; unknown names or values outside [-1, 1] raise ValueError."""
    values: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or name not in EXPRESSION_COMPONENTS:
            raise ValueError(
                f"bad expression item {item!r}: expected NAME=VALUE with NAME one of {', '.join(EXPRESSION_COMPONENTS)}"
            )
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"expression {name}: {raw!r} is not a number") from None
        if not -1.0 <= value <= 1.0:
            raise ValueError(f"expression {name}={value}: values must lie in [-1, 1]")
        values[name] = value
    return values


def check_expression(values: Mapping[str, float]) -> dict[str, float]:
    """`values` as {component: float}: unknown names, non-numbers and values outside [-1, 1] raise ValueError."""
    expression_vector(values)  # unknown names
    if not all(type(value) in (int, float) for value in values.values()):
        raise ValueError("expression values must be numbers")
    if any(not -1.0 <= value <= 1.0 for value in values.values()):
        raise ValueError("expression values must lie in [-1, 1]")
    return {name: float(value) for name, value in values.items()}


def expression_vector(values: Mapping[str, float] | None) -> list[float]:
    """Dict of named components -> list in EXPRESSION_COMPONENTS order (missing components are 0)."""
    values = values or {}
    unknown = set(values) - set(EXPRESSION_COMPONENTS)
    if unknown:
        raise ValueError(f"unknown expression components {sorted(unknown)}; known: {', '.join(EXPRESSION_COMPONENTS)}")
    return [float(values.get(name, 0.0)) for name in EXPRESSION_COMPONENTS]


@dataclass(frozen=True)
class AutoencoderConfig:
    """Image <-> latent. kind: 'tiny' (ours), 'kl' (diffusers AutoencoderKL) or 'taesd' (diffusers AutoencoderTiny).
    tiny_decoder: None, or a second, cheaper decoder of the same latents in diffusers' AutoencoderTiny decoder layout
    (TAESD), with these overrides of its defaults (block_out_channels, num_blocks, act_fn, upsample_fn):
    models/autoencoder.py build_tiny_decoder; trained by the autoencoder stage with decoder = "tiny", chosen by
    EngineConfig.decoder."""

    kind: str = "tiny"
    image_size: int = 256
    latent_channels: int = 8
    downscale: int = 8
    encoder_channels: tuple[int, ...] = (32, 64, 128)
    decoder_channels: tuple[int, ...] = (64, 32, 16)
    scaling_factor: float = 1.0
    diffusers_config: dict[str, Any] = field(default_factory=dict)
    tiny_decoder: dict[str, Any] | None = None

    @property
    def latent_size(self) -> int:
        return self.image_size // self.downscale


@dataclass(frozen=True)
class AudioConfig:
    """16 kHz mono -> log-mel -> `tokens_per_frame` audio tokens of width `token_dim` per video frame."""

    n_mels: int = 40
    hop_ms: float = 10.0
    window_ms: float = 25.0
    past_ms: float = 200.0
    audio_lookahead_ms: float = 40.0
    channels: int = 128
    token_dim: int = 128
    tokens_per_frame: int = 4


@dataclass(frozen=True)
class DenoiserConfig:
    """The chunk denoiser: a UNet over (B, T, C, h, w) with audio cross-attention and temporal layers.

    audio_embedding: each frame's audio tokens also enter the time embedding of that frame (off in models made
    before it existed, whose model.json does not name it).
    motion_expression: the expression embedding also reads the slider values the motion frames were made with
    (DenoiserInputs.motion_expression), so that the network can tell a slider that just moved from one held
    since the motion frames, which already show it (off in models made before it existed)."""

    patch_size: int = 2
    block_channels: tuple[int, ...] = (64, 128, 160)
    layers_per_block: int = 1
    attention_levels: tuple[bool, ...] = (False, True, True)
    temporal_levels: tuple[bool, ...] = (False, True, True)
    attention_head_dim: int = 32
    cross_attention_dim: int = 128
    reference_attention: bool = False
    num_motion_frames: int = 2
    num_states: int = 3
    expression_dim: int = len(EXPRESSION_COMPONENTS)
    norm_groups: int = 16
    max_chunk_frames: int = 16
    audio_embedding: bool = False
    motion_expression: bool = False


@dataclass(frozen=True)
class SamplingConfig:
    """Noise parameterisation (EDM, Karras et al. 2022) and the sampler this checkpoint is meant for.

    parameterization: 'edm' for a teacher (many steps), 'consistency' for a distilled student whose
    boundary condition holds at sigma_min; `steps` is the student's step count (a property of the checkpoint);
    `teacher_steps` is what the teacher sampler (and the naive benchmark) uses. `audio_guidance` is the
    classifier-free guidance scale against silence (the condition that audio dropout trains): the denoiser's clean
    estimate becomes D_silent + w (D_audio - D_silent), which strengthens what the audio does to the face at twice
    the cost per step; 1 turns it off. A student distilled from a guided teacher has the guidance built in and keeps 1.
    `reference_residual`: the network denoises the chunk's difference from the reference latent r,
    D(x) = r + D_net(x - r), so that a network whose output is zero already returns the portrait and training learns
    only what moves (the identity is kept by construction, not learnt).
    `slider_speed`: the most an expression slider's value moves per second of video (slider units; the range is
    -1..1) in the chunks this checkpoint was trained on: the engine eases a slider moved further over the next
    chunks, so that no chunk asks the model for a jump it can only draw as a cross-fade. None: every chunk takes the
    sliders as they are.
    `warped_sliders`: the sliders the engine carries out by warping the generated frames (engine/slider_warp.py);
    the denoiser gets them at 0. The others go to the denoiser: those a model was taught (the expression stage
    teaches its recipe's `sliders` and warps the rest).
    """

    parameterization: str = "consistency"
    sampler: str = "consistency"
    steps: int = 2
    teacher_steps: int = 25
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    sigma_data: float = 0.5
    rho: float = 7.0
    motion_noise_sigma: float = 0.05
    audio_guidance: float = 1.0
    reference_residual: bool = False
    slider_speed: float | None = None
    warped_sliders: tuple[str, ...] = EXPRESSION_COMPONENTS

    def __post_init__(self) -> None:
        unknown = sorted(set(self.warped_sliders) - set(EXPRESSION_COMPONENTS))
        if unknown:
            raise ValueError(f"sampling.warped_sliders names {', '.join(map(repr, unknown))}: expected names from "
                             f"{', '.join(EXPRESSION_COMPONENTS)}")


@dataclass(frozen=True)
class ChunkPlanConfig:
    """Chunk lengths in frames: short first chunk (first-frame latency), short after a state change, then steady."""

    first: int = 1
    after_state_change: int = 2
    steady: int = 4


@dataclass(frozen=True)
class ModelConfig:
    """Everything needed to rebuild a model; saved as `model.json` next to the weights."""

    preset: str = "tiny-cpu"
    fps: int = 25
    autoencoder: AutoencoderConfig = AutoencoderConfig()
    audio: AudioConfig = AudioConfig()
    denoiser: DenoiserConfig = DenoiserConfig()
    sampling: SamplingConfig = SamplingConfig()
    chunks: ChunkPlanConfig = ChunkPlanConfig()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelConfig":
        return _from_dict(cls, data, "model")


PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
"""Precision names (engine/precision.py's for torch, fp32 and int8 for ONNX, and 'auto'), listed here so that the
CLI can offer them without importing torch."""
BACKENDS = ("torch", "onnx", "tensorrt")
"""Inference backends: torch (a model folder's safetensors), onnxruntime (a folder written by `export`, on the CPU) or
TensorRT (the same folder on an NVIDIA GPU; chosen by --backend tensorrt only)."""


@dataclass(frozen=True)
class EngineConfig:
    """How the streaming engine runs a model.

    precision: a backend name from engine/precision.py ('auto' picks per device). steps/sampler: override the
    checkpoint's sampler (the naive baseline runs the teacher sampler). cache_reference: encode the portrait and its
    reference keys/values once in prepare() (True) or again for every chunk and denoiser call (False, naive).
    fixed_chunk: generate every chunk with this many frames instead of following the chunk plan.
    audio_guidance: override the checkpoint's audio guidance scale (SamplingConfig.audio_guidance).
    slider_speed: override the checkpoint's slider easing (SamplingConfig.slider_speed; slider units per second).
    threads: CPU threads of the ONNX backend's sessions (None: all cores; torch's are set process-wide by --threads).
    compile: torch.compile the denoiser and decoder for each planned chunk length in prepare() (torch backend);
    compile_backend: torch.compile's backend ('eager' only traces: it checks graphs and guards quickly, for tests).
    overlap_decode: decode a chunk while the next one is denoised (a second CUDA stream; on the CPU a second thread).
    decoder: 'full' (the autoencoder's decoder) or 'tiny' (the model's tiny decoder, AutoencoderConfig.tiny_decoder).
    """

    device: str = "cpu"
    precision: str = "auto"
    steps: int | None = None
    sampler: str | None = None
    cache_reference: bool = True
    fixed_chunk: int | None = None
    audio_guidance: float | None = None
    slider_speed: float | None = None
    threads: int | None = None
    seed: int = 0
    compile: bool = False
    compile_backend: str = "inductor"
    overlap_decode: bool = False
    decoder: str = "full"


T = TypeVar("T")


def _from_dict(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    """Build a (nested) frozen dataclass from plain JSON data; unknown keys raise, naming the key and its place."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: expected an object, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {sorted(unknown)}; known: {sorted(fields)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        default = fields[name].default
        if dataclasses.is_dataclass(default):
            kwargs[name] = _from_dict(type(default), value, f"{where}.{name}")
        elif isinstance(default, tuple) and isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


@dataclass(frozen=True)
class MotionDenoiserConfig:
    """The motion denoiser: a transformer over `context_frames` past motion codes followed by the chunk's noisy codes
    (1..max_chunk_frames of them), each frame a token of width `width`; per frame it adds that frame's audio tokens
    (flattened), state label and (with `slider_condition`) sliders; the noise level is added to every token.
    Without `slider_condition` the network never sees the sliders, so that they act only as the engine's exact
    offsets: what a slider changes is exactly its offset (motion_code.slider_offsets) and nothing else."""

    width: int = 192
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 2
    context_frames: int = 8
    max_chunk_frames: int = 16
    num_states: int = 3
    expression_dim: int = len(EXPRESSION_COMPONENTS)
    slider_condition: bool = True


@dataclass(frozen=True)
class MotionModelConfig:
    """Everything needed to rebuild a motion model (models/motion.py); saved as `model.json` with "kind": "motion".

    code_mean / code_std: per motion-code component (motion_code.MOTION_NAMES order), the mean and standard
    deviation of the training data's codes minus their slider offsets; the denoiser works on codes normalised by
    them (sampling.sigma_data then is 1). Empty tuples: not normalised (mean 0, std 1).
    `context_noise_sigma`: the noise (in normalised units) added to the context frames at run time, as in training.
    """

    fps: int = 25
    audio: AudioConfig = AudioConfig()
    denoiser: MotionDenoiserConfig = MotionDenoiserConfig()
    sampling: SamplingConfig = SamplingConfig(sigma_data=1.0, warped_sliders=())
    chunks: ChunkPlanConfig = ChunkPlanConfig(first=1, after_state_change=2, steady=4)
    code_mean: tuple[float, ...] = ()
    code_std: tuple[float, ...] = ()
    context_noise_sigma: float = 0.05

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "MotionModelConfig":
        return _from_dict(cls, data, "model")
