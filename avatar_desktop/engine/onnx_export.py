"""`avatar-desktop export`: a model folder -> ONNX graphs that engine/onnx_runtime.py runs without torch.

Exporter: torch's TorchScript-based exporter (`torch.onnx.export(..., dynamo=False)`, opset 17). It traces the
graphs with the Python loops of the few-step samplers unrolled, names dynamic axes directly, and needs no further
package; the torch.export-based exporter (torch's default since 2.9) would add onnxscript to the export side for
nothing these graphs need.

Graphs (T: the chunk's frames, dynamic; S: noise draws of one chunk, 1 + one per consistency step after the first):

Latent model ("kind": "latent"):
- audio_encoder: windows float32 (1, T, W) 16 kHz audio windows (audio/windows.py) -> tokens (1, T, N, D). The
  log-mel is a fixed convolution (a windowed DFT) in the graph: ONNX's STFT is not exported for this model.
- reference_encoder: portrait float32 (1, 3, S, S) in [-1, 1] -> reference (1, C, h, w) and, with reference
  attention, reference_key_i / reference_value_i (1, L_i, C_i) per spatial attention layer.
- sampler: the whole few-step sampler of one chunk, preconditioning and audio guidance included: tokens
  (1, T, N, D), [silent_tokens (1, T, N, D): the tokens of silence, only when the model's audio guidance is not
  1], reference (1, C, h, w), motion (1, M, C, h, w) the noised motion frames, noise (S, 1, T, C, h, w) standard
  normal, label int64 (1,), expression (1, E) and, for a denoiser that reads it, motion_expression (1, E) (the
  warped sliders at 0), and the reference keys/values -> latents (1, T, C, h, w).
- decoder: latents (T, C, h, w) -> frames uint8 (T, H, W, 3) RGB.

Motion model ("kind": "motion"; the photo renderer itself runs no network):
- audio_encoder: as above.
- sampler: tokens (1, T, N, A), context (1, M, D) normalised past codes (noised), label int64 (1, T), sliders
  (1, T, E) (for a denoiser that reads them), noise (S, 1, T, D) -> motion (1, T, D) in code units, clamped to the
  components' ranges.

With --int8 the sampler and decoder also get a statically quantized copy (*.int8.onnx, QDQ, per-channel int8
weights) calibrated on chunks of real speech; engine/onnx_quantize.py says what stays float and why.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn
from torch.nn import functional as F

from avatar_desktop.audio.features import LogMel
from avatar_desktop.audio.windows import window_geometry
from avatar_desktop.config import EXPRESSION_COMPONENTS
from avatar_desktop.engine.onnx_runtime import FRAMES, ExportedModel
from avatar_desktop.engine.streaming import chunk_denoiser, decode_pixels
from avatar_desktop.engine.torch_motion import fresh_draws, sample_motion
from avatar_desktop.models.audio_encoder import AudioEncoder
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.folders import FORMAT, FORMAT_VERSION, read_model_meta, resolve_model
from avatar_desktop.models.motion import MotionInputs, MotionModel
from avatar_desktop.models.store import load_model, load_motion_model
from avatar_desktop.motion_code import MOTION_DIM
from avatar_desktop.sampling import choose_sampler

OPSET = 17


class DftLogMel(nn.Module):
    """audio.features.LogMel as a strided convolution with a windowed DFT basis (exportable; equal to float
    precision): (N, S) waveform -> (N, n_mels, frames)."""

    def __init__(self, log_mel: LogMel):
        super().__init__()
        n_fft, window = log_mel.n_fft, log_mel.window
        padded = torch.zeros(n_fft, dtype=torch.float64)  # torch.stft centres a shorter window inside n_fft
        left = (n_fft - window) // 2
        padded[left : left + window] = log_mel.hann.double()
        bins = torch.arange(n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * torch.pi * bins * torch.arange(n_fft, dtype=torch.float64)[None] / n_fft
        basis = torch.cat([torch.cos(angle) * padded, -torch.sin(angle) * padded])  # (2F, n_fft)
        self.register_buffer("basis", basis.float()[:, None])
        self.register_buffer("filters", log_mel.filters.float())
        self.hop = log_mel.hop

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        spectrum = F.conv1d(waveform[:, None], self.basis, stride=self.hop)  # (N, 2F, frames)
        real, imaginary = spectrum.chunk(2, dim=1)
        return torch.log(self.filters @ (real**2 + imaginary**2) + 1e-6)


class FixedAdaptivePool(nn.Module):
    """nn.AdaptiveAvgPool1d(outputs) for inputs of a known length, as a matrix product (the exporter cannot pool
    adaptively once the batch axis is dynamic): (N, C, length) -> (N, C, outputs)."""

    def __init__(self, length: int, outputs: int):
        super().__init__()
        weights = torch.zeros(length, outputs)
        for index in range(outputs):  # the bins of AdaptiveAvgPool1d
            start, end = (index * length) // outputs, -(-((index + 1) * length) // outputs)
            weights[start:end, index] = 1 / (end - start)
        self.register_buffer("weights", weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weights


def exportable_audio_encoder(encoder: AudioEncoder, window: int) -> AudioEncoder:
    """A copy of `encoder` for windows of `window` samples whose log-mel is the DFT convolution and whose pooling
    is a fixed matrix."""
    exported = copy.deepcopy(encoder).float().eval()
    exported.log_mel = DftLogMel(encoder.log_mel)
    with torch.no_grad():
        length = exported.convs(exported.log_mel(torch.zeros(1, window))).shape[-1]
    exported.pool = FixedAdaptivePool(length, encoder.cfg.tokens_per_frame)
    return exported


class ReferenceGraph(nn.Module):
    def __init__(self, model: AvatarModel):
        super().__init__()
        self.model = model

    def forward(self, portrait: torch.Tensor):
        reference = self.model.autoencoder.encode(portrait)
        kv = self.model.denoiser.reference_kv(reference) or {}
        return (reference, *[tensor for index in sorted(kv) for tensor in kv[index]])


class LatentSamplerGraph(nn.Module):
    """The sampler graph of a latent model: forward(*tensors) takes the inputs named `names`, in that order."""

    def __init__(self, model: AvatarModel, layers: int, names: list[str]):
        super().__init__()
        self.model = model
        sampling = model.config.sampling
        self.chosen = choose_sampler(sampling)
        self.register_buffer("sigmas", self.chosen.sigmas)
        self.layers, self.names, self.guidance = layers, names, sampling.audio_guidance

    def forward(self, *tensors):
        named = dict(zip(self.names, tensors))
        kv = {i: (named[f"reference_key_{i}"], named[f"reference_value_{i}"]) for i in range(self.layers)}
        cond = DenoiserInputs(reference=named["reference"], motion=named["motion"], audio=named["tokens"],
                              label=named["label"], expression=named["expression"], reference_kv=kv or None,
                              motion_expression=named.get("motion_expression"))
        denoiser = chunk_denoiser(self.model, cond, self.guidance, named.get("silent_tokens"))
        noise = named["noise"]
        extra = {"fresh_noise": noise[1:]} if self.chosen.name == "consistency" else {}
        return self.chosen.sample(denoiser, noise[0], self.sigmas, **extra)


class DecoderGraph(nn.Module):
    def __init__(self, model: AvatarModel):
        super().__init__()
        self.autoencoder = model.autoencoder

    def forward(self, latents):
        return decode_pixels(self.autoencoder, latents)


class MotionSamplerGraph(nn.Module):
    """The sampler graph of a motion model: forward(*tensors) takes the inputs named `names`, in that order."""

    def __init__(self, model: MotionModel, names: list[str]):
        super().__init__()
        self.model, self.names = model, names
        self.chosen = choose_sampler(model.config.sampling)
        self.register_buffer("sigmas", self.chosen.sigmas)

    def forward(self, *tensors):
        named = dict(zip(self.names, tensors))
        inputs = MotionInputs(context=named["context"], audio=named["tokens"], label=named["label"],
                              sliders=named.get("sliders"))
        noise = named["noise"]
        return sample_motion(self.model, self.chosen, self.sigmas, inputs, noise[0], noise[1:])


def _tensor(name: str, dtype: str, shape: list) -> dict[str, Any]:
    return {"name": name, "dtype": dtype, "shape": shape}


def _export(graph: nn.Module, example: tuple, file: Path, inputs: list[dict], outputs: list[dict]) -> None:
    """Trace `graph` on `example` into `file`; the axes named FRAMES in `inputs` / `outputs` stay dynamic."""
    dynamic = {t["name"]: {axis: FRAMES for axis, size in enumerate(t["shape"]) if size == FRAMES}
               for t in inputs + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the deprecation notice and the tracer's notes on unrolled loops
        torch.onnx.export(graph.eval(), example, str(file), dynamo=False, opset_version=OPSET,
                          input_names=[t["name"] for t in inputs], output_names=[t["name"] for t in outputs],
                          dynamic_axes={name: axes for name, axes in dynamic.items() if axes})
    _declare_output_shapes(file, outputs)


def _declare_output_shapes(file: Path, outputs: list[dict]) -> None:
    """Write the documented output shapes into `file` (the tracer leaves some axes of computed shape unnamed)."""
    graph = onnx.load(str(file))
    for output, declared in zip(graph.graph.output, outputs):
        dims = output.type.tensor_type.shape.dim
        del dims[:]
        for size in declared["shape"]:
            dim = dims.add()
            if size == FRAMES:
                dim.dim_param = FRAMES
            else:
                dim.dim_value = size
    onnx.checker.check_model(graph)
    onnx.save(graph, str(file))


def _audio_graph(encoder: AudioEncoder, config, fps: int, folder: Path) -> dict[str, Any]:
    per_frame, past, ahead = window_geometry(config.audio, fps)
    inputs = [_tensor("windows", "float32", [1, FRAMES, past + per_frame + ahead])]
    outputs = [_tensor("tokens", "float32", [1, FRAMES, config.audio.tokens_per_frame, config.audio.token_dim])]
    example = (torch.zeros(1, 2, past + per_frame + ahead),)
    _export(exportable_audio_encoder(encoder, past + per_frame + ahead), example, folder / "audio_encoder.onnx", inputs, outputs)
    return {"files": {"fp32": "audio_encoder.onnx"}, "inputs": inputs, "outputs": outputs}


def export_latent(model: AvatarModel, folder: Path) -> dict[str, dict[str, Any]]:
    """Write the four graphs of a latent model (float32) into `folder`; their model.json entries."""
    mc = model.config
    model = model.float().eval()
    graphs = {"audio_encoder": _audio_graph(model.audio_encoder, mc, mc.fps, folder)}

    size = mc.autoencoder.image_size
    channels, height, width = model.latent_shape
    portrait = torch.zeros(1, 3, size, size)
    with torch.no_grad():
        reference_outputs = ReferenceGraph(model)(portrait)
    layers = (len(reference_outputs) - 1) // 2
    kv_tensors = [_tensor(f"reference_{part}_{i}", "float32", list(reference_outputs[1 + 2 * i + j].shape))
                  for i in range(layers) for j, part in enumerate(("key", "value"))]
    reference = _tensor("reference", "float32", [1, channels, height, width])
    inputs = [_tensor("portrait", "float32", [1, 3, size, size])]
    _export(ReferenceGraph(model), (portrait,), folder / "reference_encoder.onnx", inputs, [reference, *kv_tensors])
    graphs["reference_encoder"] = {"files": {"fp32": "reference_encoder.onnx"}, "inputs": inputs,
                                   "outputs": [reference, *kv_tensors]}

    guided = mc.sampling.audio_guidance != 1.0
    draws = 1 + fresh_draws(choose_sampler(mc.sampling))
    tokens = _tensor("tokens", "float32", [1, FRAMES, mc.audio.tokens_per_frame, mc.audio.token_dim])
    slider_count = len(EXPRESSION_COMPONENTS)
    inputs = [tokens, reference,
              _tensor("motion", "float32", [1, mc.denoiser.num_motion_frames, channels, height, width]),
              _tensor("noise", "float32", [draws, 1, FRAMES, channels, height, width]),
              _tensor("label", "int64", [1]),
              _tensor("expression", "float32", [1, slider_count]),
              *([_tensor("motion_expression", "float32", [1, slider_count])] if mc.denoiser.motion_expression else []),
              *([{**tokens, "name": "silent_tokens"}] if guided else []), *kv_tensors]
    latents = _tensor("latents", "float32", [1, FRAMES, channels, height, width])
    frames = 2
    example = tuple(torch.zeros([frames if size == FRAMES else size for size in t["shape"]],
                                dtype=torch.int64 if t["dtype"] == "int64" else torch.float32) for t in inputs)
    sampler = LatentSamplerGraph(model, layers, [t["name"] for t in inputs])
    _export(sampler, example, folder / "sampler.onnx", inputs, [latents])
    graphs["sampler"] = {"files": {"fp32": "sampler.onnx"}, "inputs": inputs, "outputs": [latents]}

    inputs = [_tensor("latents", "float32", [FRAMES, channels, height, width])]
    outputs = [_tensor("frames", "uint8", [FRAMES, size, size, 3])]
    _export(DecoderGraph(model), (torch.zeros(frames, channels, height, width),), folder / "decoder.onnx", inputs,
            outputs)
    graphs["decoder"] = {"files": {"fp32": "decoder.onnx"}, "inputs": inputs, "outputs": outputs}
    return graphs


def export_motion(model: MotionModel, folder: Path) -> dict[str, dict[str, Any]]:
    """Write the two graphs of a motion model (float32) into `folder`; their model.json entries."""
    mc = model.config
    model = model.float().eval()
    graphs = {"audio_encoder": _audio_graph(model.audio_encoder, mc, mc.fps, folder)}
    draws = 1 + fresh_draws(choose_sampler(mc.sampling))
    inputs = [_tensor("tokens", "float32", [1, FRAMES, mc.audio.tokens_per_frame, mc.audio.token_dim]),
              _tensor("context", "float32", [1, mc.denoiser.context_frames, MOTION_DIM]),
              _tensor("label", "int64", [1, FRAMES]),
              *([_tensor("sliders", "float32", [1, FRAMES, len(EXPRESSION_COMPONENTS)])]
                if mc.denoiser.slider_condition else []),
              _tensor("noise", "float32", [draws, 1, FRAMES, MOTION_DIM])]
    outputs = [_tensor("motion", "float32", [1, FRAMES, MOTION_DIM])]
    frames = 2
    example = tuple(torch.zeros([frames if size == FRAMES else size for size in t["shape"]],
                                dtype=torch.int64 if t["dtype"] == "int64" else torch.float32) for t in inputs)
    sampler = MotionSamplerGraph(model, [t["name"] for t in inputs])
    _export(sampler, example, folder / "sampler.onnx", inputs, outputs)
    graphs["sampler"] = {"files": {"fp32": "sampler.onnx"}, "inputs": inputs, "outputs": outputs}
    return graphs


def export_model(name_or_dir: str | Path, out: str | Path, *, calibration: Path | None = None,
                 calibration_chunks: int = 64, int8_activations: str = "s8") -> Path:
    """Export a torch model folder (or a name on the model search path) to `out` (replaced atomically if it
    exists): the float graphs, and with `calibration` (a `dataset synth` folder) the int8 ones, their activations
    `int8_activations` (onnx_quantize.ACTIVATIONS). Returns `out`."""
    source = resolve_model(name_or_dir)
    meta = read_model_meta(source)
    if meta.get("backend", "torch") != "torch":
        raise ValueError(f"{source} is already an ONNX export: export its torch model folder instead")
    kind = meta.get("kind", "latent")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        if kind == "motion":
            model = load_motion_model(source)
            graphs = export_motion(model, staging)
        else:
            model = load_model(source)
            graphs = export_latent(model, staging)
        chosen = choose_sampler(model.config.sampling)
        exported = {
            "format": FORMAT, "format_version": FORMAT_VERSION, "kind": kind, "preset": meta.get("preset"),
            "backend": "onnx", "default_precision": "fp32", "config": meta["config"],
            "export": {"source": source.name, "opset": OPSET, "torch": torch.__version__, "sampler": chosen.name,
                       "steps": chosen.steps, "fresh_draws": fresh_draws(chosen),
                       "audio_guidance": model.config.sampling.audio_guidance if kind == "latent" else None},
            "graphs": graphs, "provenance": meta.get("provenance", {}),
        }
        (staging / "model.json").write_text(json.dumps(exported, indent=2) + "\n")
        check = ExportedModel(staging, exported)
        for graph in graphs:
            check.session(graph)  # each graph's tensors are what model.json says
        if calibration is not None:
            from avatar_desktop.engine.onnx_quantize import quantize_folder

            quantize_folder(staging, calibration, chunks=calibration_chunks, activations=int8_activations)
        if (source / "MODEL_CARD.md").is_file():
            shutil.copy(source / "MODEL_CARD.md", staging / "MODEL_CARD.md")
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out
