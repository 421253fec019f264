"""Int8 graphs of an exported model: static QDQ quantization (onnxruntime.quantization), per-channel int8 weights,
symmetric int8 activations whose ranges (MinMax) are calibrated on chunks of real speech from a data set (`dataset
synth` clips, each streamed through the float model with its own portrait and states, as `render` would).

What is quantized, and what stays float (and why); numbers: the shipped latent model on 16 held-out clips, int8 minus
float on the same noise, docs/PERFORMANCE.md "int8 quality on 16 clips":
- Quantized: the weights and inputs of the convolutions and of the matrix products with a weight (linear layers)
  in the sampler (the denoiser, every step) and the decoder: nearly all of the compute of a chunk.
- Two activation types (ACTIVATIONS), biases float in both:
  - `s8` (the default): signed, symmetric activations (zero point 0) by signed weights: the int8 graph TensorRT's
    ONNX parser reads as it is (engine/tensorrt_runtime.py).
  - `u8` (`export --int8-activations u8`, onnxruntime only; what the installed app ships,
    packaging/export_models.sh): unsigned, asymmetric activations by signed 7-bit weights. onnxruntime's u8 x s8
    kernels are the faster ones: a chunk's quantized graphs 1.3x as fast as s8 on an AMD EPYC with AVX-512 VNNI,
    the sampler 1.5x on an Intel Xeon with AMX, where s8 runs no faster than float. The 7-bit weights keep the
    kernel's pairwise 16-bit sums from saturating on CPUs without VNNI (onnxruntime's quantization docs); they cost
    lip-sync r 0.005 against 8-bit u8 weights (docs/PERFORMANCE.md). TensorRT cannot read u8 graphs (non-zero zero
    points).
- Float: the denoiser's first and last layers and its conditioning embeddings (noise level, state, sliders, audio;
  `FLOAT_LAYERS`): little compute (the same chunk time within 1%); with them int8 too, lip-sync r fell by 0.008
  (95% interval 0.001 to 0.015), with them float by 0.001 (-0.004 to +0.002). The decoder's int8 costs nothing
  measurable (a decoder kept float measured the same, on 4 clips) and stays.
- Calibration: MinMax over the default 64 chunks of 2 clips. Percentile and Entropy ranges, asymmetric activations
  and float audio keys/values of the cross-attention measured the same within the noise at the same speed; 256
  chunks of 17 clips cost r 0.007 (more chunks can only widen MinMax's ranges).
- Float: every other operation of those graphs: normalisations, softmax, the residual additions and the sampler's
  own arithmetic (the noise at sigma_max is hundreds of times larger than the clean latent, so one int8 scale for
  both would erase the latent), and the attention products of two activations (queries by keys, weights by
  values: no weight to quantize per channel, and ranges that change with every chunk and portrait).
- Float: the audio encoder (its log-mel spans six decades of power; it is a small share of the time) and the
  reference encoder (it runs once per portrait).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from avatar_desktop.config import EngineConfig, State
from avatar_desktop.data.clips import load_clip, load_manifest
from avatar_desktop.engine.int8_choice import int8_pays, time_precisions
from avatar_desktop.engine.onnx_runtime import ExportedModel
from avatar_desktop.errors import InputFileError

QUANTIZED_GRAPHS = {"latent": ("sampler", "decoder"), "motion": ("sampler",)}
QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]
FLOAT_LAYERS = ("/denoiser/conv_in/", "/denoiser/conv_out/", "_embedding/",  # latent denoiser
                "/denoiser/context_in/", "/denoiser/chunk_in/", "/denoiser/audio_in/", "/denoiser/slider_in/",
                "/denoiser/noise_mlp/", "/denoiser/out/")  # motion denoiser
"""Parts of the exported node names (module paths) of the layers kept float."""
ACTIVATIONS = {"s8": ("QInt8", True, False), "u8": ("QUInt8", False, True)}
"""The int8 activation types export offers: onnxruntime's QuantType name, whether the ranges are symmetric, and
whether the weights keep to 7 bits (u8: so that a u8 x s8 product's pairwise 16-bit sums cannot saturate on CPUs
without VNNI, onnxruntime's advice for them)."""


class RecordingModel(ExportedModel):
    """An ExportedModel (float) that keeps the inputs of every run of the graphs in `graphs`."""

    def __init__(self, folder: Path, meta: dict[str, Any], graphs: tuple[str, ...]):
        super().__init__(folder, meta, precision="fp32")
        self.recorded: dict[str, list[dict[str, np.ndarray]]] = {graph: [] for graph in graphs}

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        if graph in self.recorded:
            taken = {tensor["name"] for tensor in self.meta["graphs"][graph]["inputs"]}
            self.recorded[graph].append({name: array.copy() for name, array in feeds.items() if name in taken})
        return super().run(graph, feeds)


def calibration_feeds(folder: Path, data: Path, chunks: int) -> dict[str, list[dict[str, np.ndarray]]]:
    """Inputs of the quantized graphs of the exported float model in `folder` over at least `chunks` chunks of the
    training clips of data set `data` (its other clips when it has no training split)."""
    meta = json.loads((folder / "model.json").read_text())
    model = RecordingModel(folder, meta, QUANTIZED_GRAPHS[meta["kind"]])
    manifest = load_manifest(data)
    entries = [e for e in manifest["clips"] if e.get("split", "train") == "train"] or manifest["clips"]
    if not entries:
        raise InputFileError(f"data set {data} holds no clips: calibration needs speech; build one with "
                             "`avatar-desktop dataset synth`")
    recorded = model.recorded["sampler"]
    while len(recorded) < chunks:
        for entry in entries:
            clip = load_clip(Path(data) / entry["path"], with_frames=meta["kind"] == "latent")  # the portrait's size
            _stream_clip(model, clip, meta["kind"])
            if len(recorded) >= chunks:
                break
    return model.recorded


def _stream_clip(model: ExportedModel, clip, kind: str) -> None:
    """Stream one clip's speech through the model, one video frame of audio at a time, with its states."""
    config = EngineConfig()
    if kind == "motion":
        from avatar_desktop.engine.motion_stream import MotionStreamer

        generator = MotionStreamer(model, config)
        generator.prepare(warmup=False)
    else:
        from avatar_desktop.engine.onnx_runtime import OnnxStreamingGenerator

        generator = OnnxStreamingGenerator(model, config)
        generator.prepare(clip.portrait(), warmup=False)
    states = clip.record["state"]
    per_frame = generator.samples_per_frame
    for frame in range(len(clip.audio) // per_frame):
        generator.step(clip.audio[frame * per_frame : (frame + 1) * per_frame], State(int(states[min(frame, len(states) - 1)])))


class _Reader:
    """onnxruntime.quantization's CalibrationDataReader over recorded feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]):
        self._feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def float_nodes(path: Path) -> list[str]:
    """Names of the nodes of the graph in `path` that stay float: the MatMul nodes whose two inputs are both
    activations (no weight), and the layers of FLOAT_LAYERS."""
    import onnx

    graph = onnx.load(str(path)).graph
    weights = {initializer.name for initializer in graph.initializer}
    weights |= {node.output[0] for node in graph.node if node.op_type == "Constant"}
    return [node.name for node in graph.node
            if (node.op_type == "MatMul" and not any(name in weights for name in node.input))
            or (node.op_type in QUANTIZED_OPS and any(part in node.name + "/" for part in FLOAT_LAYERS))]


def quantize_folder(folder: Path, data: Path, *, chunks: int = 64, activations: str = "s8") -> None:
    """Write the int8 graphs of the exported float model in `folder`, calibrated on `chunks` chunks of speech from
    data set `data`, with `activations` (a key of ACTIVATIONS); model.json gets the "int8" files, the activation
    type ("int8_activations"), both precisions' chunk times ("chunk_ms") and, as its
    default precision, the faster one when int8 pays on the exporting machine (engine/int8_choice.py; the app
    times them again where it runs)."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    activation_type, symmetric, seven_bit_weights = ACTIVATIONS[activations]
    feeds = calibration_feeds(folder, Path(data), chunks)
    meta_file = folder / "model.json"
    meta = json.loads(meta_file.read_text())
    for name, graph in meta["graphs"].items():
        source = folder / graph["files"]["fp32"]
        if name not in feeds:
            graph["files"]["int8"] = graph["files"]["fp32"]  # kept float (module docstring)
            continue
        target = source.with_suffix(".int8.onnx")
        quantize_static(str(source), str(target), _Reader(feeds[name]), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType[activation_type], weight_type=QuantType.QInt8,
                        op_types_to_quantize=QUANTIZED_OPS, nodes_to_exclude=float_nodes(source),
                        calibrate_method=CalibrationMethod.MinMax, reduce_range=seven_bit_weights,
                        extra_options={"ActivationSymmetric": symmetric, "QuantizeBias": False})
        graph["files"]["int8"] = target.name
    # The longest recorded chunk of each graph (a steady one), on one thread: the steadiest to time.
    steady = {graph: max(recorded, key=lambda feed: sum(array.size for array in feed.values()))
              for graph, recorded in feeds.items()}
    timings = time_precisions({precision: ExportedModel(folder, meta, precision=precision, threads=1).run
                               for precision in ("fp32", "int8")}, steady)
    meta["default_precision"] = "int8" if int8_pays(timings["fp32"], timings["int8"]) else "fp32"
    meta["export"]["calibration"] = {"data": Path(data).name, "chunks": len(feeds["sampler"])}
    meta["export"]["int8_activations"] = activations
    meta["export"]["chunk_ms"] = {precision: round(ms, 2) for precision, ms in timings.items()}
    meta_file.write_text(json.dumps(meta, indent=2) + "\n")
