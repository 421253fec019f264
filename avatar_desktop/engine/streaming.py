"""StreamingGenerator: a portrait plus a stream of audio in, chunks of video frames out.

prepare() encodes everything that depends only on the portrait (reference latent, reference keys/values) and
warms the kernels up; step() appends audio and, once the next chunk's audio (with lookahead) has arrived,
generates it. Motion frames (the last latents of the previous chunk, lightly noised) carry continuity. The sliders
a checkpoint leaves to the engine (SamplingConfig.warped_sliders) warp the decoded frames (engine/slider_warp.py).

On CUDA, step() queues its work without host syncs: the chunk's noise, audio windows and sliders go to the device
from pinned memory, and only the copy of the finished frames waits. EngineConfig.compile and overlap_decode turn on
the fast path of engine/fast_path.py (compiled denoiser and decoder; decoding of one chunk while the next is
denoised, on a second CUDA stream or, on the CPU, on a second thread).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

from avatar_desktop.config import EngineConfig, State, expression_vector
from avatar_desktop.engine.fast_path import ChunkDecoder, CompiledStages, QueuedFrames, StageClock, compiled_graph_count
from avatar_desktop.engine.latent_stream import LATENT_PATH, Chunk, LatentStream  # noqa: F401  (imported from here)
from avatar_desktop.engine.portrait import check_rgb, square_crop
from avatar_desktop.engine.precision import select_backend
from avatar_desktop.errors import CheckpointError
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.sampling import audio_guided, choose_sampler


def chunk_denoiser(model: AvatarModel, cond: DenoiserInputs, guidance: float, silent: torch.Tensor | None = None,
                   denoise=None):
    """The clean estimate x, sigma -> D(x, sigma) of one chunk, with audio guidance (sampling.audio_guided) when
    `guidance` is not 1: both halves in one batch-of-2 denoiser call, `silent` the audio tokens of silence
    (1, T, N, D). `denoise` runs model.denoise (default: the model's own, eager). Also what the ONNX export traces
    (engine/onnx_export.py)."""
    denoise = denoise or model.denoise
    if guidance == 1.0:
        return lambda x, sigma: denoise(x, sigma, cond)
    pair = DenoiserInputs(
        reference=cond.reference.expand(2, -1, -1, -1),
        motion=cond.motion.expand(2, -1, -1, -1, -1),
        audio=torch.cat([cond.audio, silent]),
        label=cond.label.expand(2),
        expression=cond.expression.expand(2, -1),
        reference_kv={index: (k.expand(2, -1, -1), v.expand(2, -1, -1)) for index, (k, v) in cond.reference_kv.items()}
        if cond.reference_kv else None,
        motion_expression=cond.motion_expression.expand(2, -1),
    )
    return audio_guided(lambda x, sigma: denoise(torch.cat([x, x]), sigma, pair).chunk(2), guidance)


@dataclass
class _QueuedChunk:
    """A chunk whose work is queued: first frame index, label, slider values float32 (E,), frames, stage clock."""

    start: int
    label: State
    sliders: np.ndarray
    frames: QueuedFrames
    clock: StageClock


class StreamingGenerator(LatentStream):
    """Generates one stream at a time on torch. The model given is cast and laid out in place for the precision
    backend. With config.compile, prepare() compiles the denoiser and decoder for every planned chunk length."""

    def __init__(self, model: AvatarModel, config: EngineConfig = EngineConfig()):
        self.device = torch.device(config.device)
        self.backend = select_backend(config.precision, self.device)
        self.model = self.backend.prepare(model, self.device).eval()
        self.dtype = self.backend.dtype
        self._init_stream(model.config, config)
        chosen = choose_sampler(model.config.sampling, config.sampler, config.steps)
        self.sampler_name, self.steps, self._sampler = chosen.name, chosen.steps, chosen.sample
        self._sigmas = chosen.sigmas.to(self.device)
        self._generator = torch.Generator()  # noise is drawn on the CPU: the same seed gives the same video on any device
        self._portrait: torch.Tensor | None = None  # (1, 3, H, W) in [-1, 1]
        self._reference: torch.Tensor | None = None  # (1, C, h, w)
        self._reference_kv = None
        sliders = len(expression_vector(None))
        self._expression = torch.zeros(1, sliders)  # float32 on the CPU, eased there; the denoiser gets a copy
        self._kept_sliders = torch.ones(1, sliders)  # 1 for the sliders the denoiser sees, 0 for those the engine warps
        self._kept_sliders[:, self._warped] = 0
        self._labels = {state: torch.full((1,), int(state), device=self.device) for state in State}  # made once
        autoencoder, tiny = self.model.autoencoder, config.decoder == "tiny"
        if config.decoder not in ("full", "tiny"):
            raise ValueError(f"unknown decoder {config.decoder!r}: expected full or tiny")
        if tiny and autoencoder.tiny_decoder is None:
            raise CheckpointError(f"the {model.config.preset} model has no tiny decoder: use --decoder full, or train "
                                  "one (the autoencoder stage with decoder = \"tiny\", on a preset that has one)")
        self._decode = lambda latents: decode_pixels(autoencoder, latents, tiny=tiny)  # (T, C, h, w) -> uint8 frames
        self._compiled = CompiledStages(self.model.denoise, self._decode, config.compile_backend) if config.compile else None
        self._graphs_after_prepare = 0
        self._decoder = ChunkDecoder(self.device, overlap=config.overlap_decode)
        self.reset()

    # ----------------------------------------------------------------- setup
    @torch.no_grad()
    def prepare(self, portrait: np.ndarray, expression: Mapping[str, float] | None = None, *, warmup: bool = True) -> None:
        """Cache everything that depends only on the portrait: uint8 (H, W, 3) RGB, as load_portrait returns it.

        With `warmup`, one chunk of each planned length is generated and thrown away, so that the first real
        chunk does not pay for kernel selection and memory allocation; with config.compile that warm-up always
        runs, and compiles. Starts a new stream (reset()).
        """
        check_rgb(portrait)
        rgb = square_crop(portrait, self.resolution)
        image = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1)[None].to(self.dtype) / 127.5 - 1
        self._portrait = image.contiguous(memory_format=torch.channels_last)
        self._reference, self._reference_kv = self._encode_reference()
        if expression is not None:
            self.set_expression(expression)
        if warmup or self._compiled is not None:
            self._warm_up()
        self._graphs_after_prepare = compiled_graph_count()
        self.reset()

    def set_expression(self, expression: Mapping[str, float]) -> None:
        """Named components in [-1, 1] (config.EXPRESSION_COMPONENTS); missing ones are neutral (0)."""
        self._expression = torch.tensor([expression_vector(expression)])

    def reset(self) -> None:
        """Start a new stream at frame 0 with the same portrait: audio history and motion frames are cleared."""
        self._reset_stream()
        self._motion: torch.Tensor | None = None  # (1, M, C, h, w)
        self._motion_expression = torch.zeros_like(self._expression)  # what the motion frames show (the portrait: 0)
        self._generator.manual_seed(self.config.seed)

    def describe(self) -> dict:
        """What runs, for benchmark reports: preset, dtype, resolution, sampler and steps, chunk plan, caches."""
        mc = self.model.config
        evaluations = 2 * self.steps - 1 if self.sampler_name == "heun" else self.steps
        return {
            "preset": mc.preset,
            "dtype": str(self.dtype).removeprefix("torch."),
            "resolution": self.resolution,
            "sampler": self.sampler_name,
            "steps": self.steps,
            "denoiser_evaluations_per_chunk": evaluations,
            "chunk_plan": {"first": mc.chunks.first, "after_state_change": mc.chunks.after_state_change,
                           "steady": self.config.fixed_chunk or mc.chunks.steady},
            "cached_reference": self.config.cache_reference,
            "compile": self.config.compile,
            "overlap_decode": self.config.overlap_decode,
            "decoder": self.config.decoder,
            **({"compiled_lengths": sorted(self._compiled.lengths),
                "graphs_compiled_while_streaming": compiled_graph_count() - self._graphs_after_prepare}
               if self._compiled is not None else {}),
        }

    @property
    def _prepared(self) -> bool:
        return self._reference is not None

    # ----------------------------------------------------------------- streaming
    @torch.no_grad()
    def _queue(self, frames: int, label: State) -> _QueuedChunk:
        """Queue the next chunk of `frames` frames (audio tokens, denoising, decoding, the copy to the host) and
        advance the stream past it; on CUDA nothing here waits for the device."""
        start = self.frame_index
        clock = StageClock(self.device)
        denoise, decode = self._compiled.for_length(frames) if self._compiled else (self.model.denoise, self._decode)
        with clock.stage("audio"):
            reference, reference_kv = (self._reference, self._reference_kv)
            if not self.config.cache_reference:
                reference, _ = self._encode_reference()  # naive: re-encode; keys/values recomputed in every call
            tokens = self._audio_tokens(start, frames)
        expression = self._eased_expression(frames)
        with clock.stage("denoise"):
            latents = self._denoise(reference, reference_kv, tokens, label, expression, denoise)  # (1, T, C, h, w)
        latents = latents[0].contiguous(memory_format=torch.channels_last)
        queued = self._decoder.queue(latents, decode, clock)
        self._advance_stream(frames, label)
        return _QueuedChunk(start, label, expression[0].numpy(), queued, clock)

    def _collect(self, queued: _QueuedChunk) -> Chunk:
        """The queued chunk's frames, once on the host, re-posed by the warped sliders (timed with the decode)."""
        frames_rgb = self._decoder.collect(queued.frames)
        clock = time.perf_counter()
        chunk = self._chunk_at(queued.start, frames_rgb, queued.sliders, queued.label, queued.clock.milliseconds())
        chunk.stage_ms["decode"] += (time.perf_counter() - clock) * 1000
        return chunk

    def _audio_tokens(self, start: int, frames: int) -> torch.Tensor:
        """Audio tokens (1, T, N, D) for frames start..start+T-1; audio past the received end is silence."""
        windows = self.audio.windows(start, frames)
        return self.model.audio_encoder(self._to_device(torch.from_numpy(windows))).to(self.dtype)

    def _denoise(self, reference, reference_kv, tokens, label: State, expression: torch.Tensor, denoise) -> torch.Tensor:
        """The chunk's latents (1, T, C, h, w) for audio tokens (1, T, N, D) and sliders (1, E), `denoise` running
        model.denoise; keeps the motion frames and the sliders they were made with for the next chunk."""
        mc = self.model.config
        channels, height, width = self.model.latent_shape
        frames = tokens.shape[1]
        motion_shape = (1, mc.denoiser.num_motion_frames, channels, height, width)
        shape = (1, frames, channels, height, width)
        renoising = self.steps - 1 if self.sampler_name == "consistency" else 0
        motion_noise, noise, *fresh_noise = (self._randn(s) for s in [motion_shape, shape] + [shape] * renoising)
        motion = self._motion
        if motion is None:  # the stream starts from the portrait itself
            motion = reference[:, None].expand(motion_shape)
        motion = (motion + mc.sampling.motion_noise_sigma * motion_noise).contiguous()  # one layout: no recompiles
        cond = DenoiserInputs(
            reference=reference,
            motion=motion,
            audio=tokens,
            label=self._labels[label],
            expression=self._denoiser_sliders(expression),
            reference_kv=reference_kv if self.config.cache_reference else None,
            motion_expression=self._denoiser_sliders(self._motion_expression),
        )
        options = {"fresh_noise": fresh_noise} if renoising else {}
        latents = self._sampler(self._denoiser(cond, denoise), noise, self._sigmas, generator=self._generator, **options)
        history = latents if self._motion is None else torch.cat([self._motion, latents], dim=1)
        self._motion = history[:, -mc.denoiser.num_motion_frames :]
        self._motion_expression = expression
        if self._motion.shape[1] < mc.denoiser.num_motion_frames:  # a 1-frame first chunk: pad with the reference
            pad = reference[:, None].expand(1, mc.denoiser.num_motion_frames - self._motion.shape[1], channels, height, width)
            self._motion = torch.cat([pad, self._motion], dim=1)
        return latents

    def _eased_expression(self, frames: int) -> torch.Tensor:
        """The sliders (1, E) for the next chunk of `frames`: those set, reached from the motion frames' values at
        no more than slider_speed per second (SamplingConfig.slider_speed)."""
        if self.slider_speed is None:
            return self._expression
        most = self.slider_speed * frames / self.fps
        return self._motion_expression + (self._expression - self._motion_expression).clamp(-most, most)

    def _denoiser_sliders(self, expression: torch.Tensor) -> torch.Tensor:
        """The sliders (1, E) as the denoiser gets them, on its device in its dtype: those the engine warps at 0."""
        return self._to_device(expression * self._kept_sliders, self.dtype)

    def _denoiser(self, cond: DenoiserInputs, denoise):
        """The clean estimate x, sigma -> D(x, sigma) for this chunk (chunk_denoiser), `denoise` running
        model.denoise."""
        if self.audio_guidance == 1.0:
            return chunk_denoiser(self.model, cond, 1.0, denoise=denoise)
        window = self.samples_per_frame + self.audio.past_samples + self.audio.lookahead_samples
        silent = self.model.audio_encoder(torch.zeros(1, cond.audio.shape[1], window, device=self.device)).to(self.dtype)
        return chunk_denoiser(self.model, cond, self.audio_guidance, silent, denoise=denoise)

    def _randn(self, shape) -> torch.Tensor:
        """Standard normal noise of `shape` in the model's dtype on its device, drawn from the stream's CPU
        generator."""
        return self._to_device(torch.randn(shape, generator=self._generator, dtype=torch.float32), self.dtype)

    def _to_device(self, tensor: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A CPU tensor on the generator's device (as `dtype`); on CUDA copied from pinned memory without waiting,
        then converted there (a copy that converts would stage through pageable memory, which waits)."""
        if self.device.type == "cuda":
            tensor = tensor.pin_memory().to(self.device, non_blocking=True)
        return tensor.to(dtype or tensor.dtype)

    def _encode_reference(self):
        reference = self.model.autoencoder.encode(self._portrait)
        reference_kv = self.model.denoiser.reference_kv(reference) if self.config.cache_reference else None
        return reference, reference_kv

    def _warm_up(self) -> None:
        for length in self._warm_up_lengths():
            if self._compiled is not None:
                self._compiled.lengths.add(length)
            self.reset()
            self.audio.push(np.zeros(length * self.samples_per_frame + self.audio.lookahead_samples, np.float32))
            self._generate(length, State.SPEAKING)


def decode_pixels(autoencoder: torch.nn.Module, latents: torch.Tensor, *, tiny: bool = False) -> torch.Tensor:
    """Latents (T, C, h, w) -> frames uint8 (T, H, W, 3) RGB, on the latents' device, by the autoencoder's decoder
    or, with `tiny`, its tiny decoder. Also what the ONNX export traces."""
    images = autoencoder.tiny_decoder(latents) if tiny else autoencoder.decode(latents)
    pixels = ((images.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1)
