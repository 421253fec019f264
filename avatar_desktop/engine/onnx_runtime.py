"""The onnxruntime backend: runs a model folder written by `avatar-desktop export` (engine/onnx_export.py), with the
same prepare()/step() contract and the same frames as the torch backend. Imports no torch.

An exported folder holds model.json ("backend": "onnx", the model's own "config", and "graphs": each graph's files
per precision and its input and output names, dtypes and shapes, "frames" marking the chunk length) and one .onnx
file per graph and precision. The graphs and their tensors are listed in engine/onnx_export.py. Every random number
is drawn here, in numpy (engine/noise.py), and handed to the graphs as an input.

The generators here run any ExportedFolder: ExportedModel (onnxruntime, CPU) or engine/tensorrt_runtime.py's
TensorRTModel (TensorRT engines built from the same files, NVIDIA GPU).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from avatar_desktop.config import EngineConfig, ModelConfig, MotionModelConfig, State, expression_vector
from avatar_desktop.engine.int8_choice import machine_key, machine_precision, time_precisions
from avatar_desktop.engine.latent_stream import Chunk, DecodeThread, LatentStream
from avatar_desktop.engine.noise import NumpyNoise
from avatar_desktop.engine.portrait import check_rgb, square_crop
from avatar_desktop.errors import CheckpointError

FRAMES = "frames"
"""The name of the dynamic chunk-length axis in every graph and in model.json."""
PRECISIONS = ("fp32", "int8")
"""What an exported folder may hold; `auto` runs what the backend's default_precision() says."""
ORT_TYPES = {"tensor(float)": "float32", "tensor(int64)": "int64", "tensor(uint8)": "uint8"}
EXPORT_AGAIN = "export the model again with `avatar-desktop export --model MODEL --out FOLDER`"


def import_onnxruntime():
    """The onnxruntime module, or CheckpointError saying which package to install."""
    try:
        import onnxruntime
    except ImportError:
        raise CheckpointError("the ONNX backend needs the onnxruntime package, which is not installed: "
                              "`pip install onnxruntime` (or run a torch model folder with --backend torch)") from None
    return onnxruntime


class ExportedFolder:
    """An exported model folder, opened for one precision on one backend: its kind, config and graphs. The
    backends (ExportedModel here, engine/tensorrt_runtime.py's TensorRTModel) add `run(graph, feeds)`: numpy in,
    numpy out, outputs in model.json's order.

    folder: the folder; meta: its model.json; precision: 'auto' (the backend's default) or one of
    `available_precisions()`. Raises CheckpointError (naming the file and what to do) for a model.json that was not
    written by `export` and a precision the folder or backend lacks.
    """

    backend = ""
    """The name --backend gives it."""
    decodes_on_a_thread = False
    """Whether overlap_decode may run its graphs from two threads at once (the latent generator's DecodeThread)."""

    def __init__(self, folder: Path, meta: dict[str, Any], *, precision: str = "auto"):
        self.folder = Path(folder)
        self.meta = meta
        missing = [key for key in ("config", "export", "graphs") if not isinstance(meta.get(key), dict)]
        if missing:
            raise CheckpointError(f"{self.folder / 'model.json'} says \"backend\": \"onnx\" but has no "
                                  f"{' or '.join(missing)}: it was not written by `avatar-desktop export`; "
                                  f"{EXPORT_AGAIN}")
        self.kind = meta.get("kind", "latent")
        config_class = MotionModelConfig if self.kind == "motion" else ModelConfig
        self.config = config_class.from_dict(meta["config"])
        self.export = meta["export"]
        available = self.available_precisions()
        self.precision = self.default_precision() if precision == "auto" else precision
        if self.precision not in available:
            raise CheckpointError(f"{self.folder} holds the precisions {', '.join(available)}, not {self.precision!r} "
                                  f"(on --backend {self.backend}): pick one of them with --precision, or export with "
                                  f"--int8{self.int8_export_flags()} for int8")

    def exported_precisions(self) -> list[str]:
        """The precisions whose files every graph of the folder has (PRECISIONS)."""
        return [name for name in PRECISIONS if all(name in graph["files"] for graph in self.meta["graphs"].values())]

    def available_precisions(self) -> list[str]:
        return self.exported_precisions()

    def int8_export_flags(self) -> str:
        """What an export needs besides --int8 for int8 graphs this backend runs (" --int8-activations s8", say)."""
        return ""

    def default_precision(self) -> str:
        """What --precision auto runs (each backend says)."""
        raise NotImplementedError

    def quantized_graphs(self) -> list[str]:
        """The graphs whose int8 file is not their float one (the others run float at either precision)."""
        return [name for name, graph in self.meta["graphs"].items()
                if "int8" in graph["files"] and graph["files"]["int8"] != graph["files"]["fp32"]]

    def steady_chunk_inputs(self, graphs: list[str]) -> dict[str, dict[str, np.ndarray]]:
        """Inputs of `graphs` for one steady chunk of the chunk plan: standard normal floats, zero integers (state
        labels); for timing, which does not depend on the values."""
        rng = np.random.default_rng(0)
        inputs = {}
        for graph in graphs:
            inputs[graph] = {}
            for tensor in self.meta["graphs"][graph]["inputs"]:
                shape = [self.config.chunks.steady if size == FRAMES else size for size in tensor["shape"]]
                dtype = np.dtype(tensor["dtype"])
                inputs[graph][tensor["name"]] = (rng.standard_normal(shape).astype(dtype) if dtype.kind == "f"
                                                 else np.zeros(shape, dtype))
        return inputs

    def graph_file(self, graph: str, precision: str) -> Path:
        """The .onnx file of `graph` at `precision` (one of PRECISIONS); CheckpointError when it is missing."""
        file = self.folder / self.meta["graphs"][graph]["files"][precision]
        if not file.is_file():
            raise CheckpointError(f"{self.folder} is missing {file.name}: the exported model is incomplete; {EXPORT_AGAIN}")
        return file

    def check_tensors(self, file: Path, side: str, declared: list[dict], found: list[dict]) -> None:
        """CheckpointError naming `file` when the tensors `found` in it ({"name", "dtype", "shape"} each, FRAMES for
        the chunk axis) are not those model.json declares for its `side` ('input' or 'output')."""
        if found != declared:
            differences = [f"{_describe(t)} in the file" for t in found if t not in declared]
            differences += [f"{_describe(t)} in model.json" for t in declared if t not in found]
            raise CheckpointError(f"{file} does not match {self.folder / 'model.json'} ({side}s: "
                                  f"{'; '.join(differences or ['another order'])}): the files come from different "
                                  f"exports; {EXPORT_AGAIN}")

    def check_engine_config(self, config: EngineConfig) -> None:
        """CheckpointError when `config` asks for what the export fixed (sampler, steps, audio guidance), a device
        this backend does not run on, or what only the torch backend does (the naive baseline, compilation, the
        tiny decoder), or decode overlap on a backend without it."""
        fixed = {"sampler": self.export["sampler"], "steps": self.export["steps"]}
        if self.kind == "latent":
            fixed["audio_guidance"] = self.export["audio_guidance"]
        for name, value in fixed.items():
            asked = getattr(config, name)
            if asked is not None and asked != value:
                raise CheckpointError(f"{self.folder} was exported with {name} {value}; {name} {asked} needs a new "
                                      f"export (`avatar-desktop export --model MODEL --out FOLDER`), or the torch "
                                      f"model folder")
        self.check_device(config.device)
        if not config.cache_reference:
            raise CheckpointError("the naive baseline (no reference caches) runs on the torch backend only")
        if config.compile or config.decoder != "full":
            raise CheckpointError("--compile and --decoder tiny run on the torch backend only: leave them out for "
                                  f"{self.folder}, or use the torch model folder with --backend torch")
        if config.overlap_decode and not self.decodes_on_a_thread:
            raise CheckpointError(f"--overlap-decode runs on the torch and onnx backends, not on {self.backend}: "
                                  "leave it out")

    def check_device(self, device: str) -> None:
        """CheckpointError when this backend does not run on `device`."""
        raise NotImplementedError

    def describe(self) -> dict:
        """What the backend adds to a benchmark report (OnnxStreamingGenerator.describe)."""
        return {}

    def motion_network(self, config: EngineConfig) -> OnnxMotionNetwork:
        return OnnxMotionNetwork(self, config)


class ExportedModel(ExportedFolder):
    """An exported model folder on onnxruntime, on the CPU: its checked sessions.

    threads: onnxruntime's intra-op threads (None: all cores); with `overlap_decode` (the latent generator's sampler
    and decoder running at once) each graph gets half of them (split_threads). Raises CheckpointError (naming the
    file and what to do) as ExportedFolder does, for a missing onnxruntime, and, when a graph is opened, a missing,
    damaged or mismatched .onnx file.
    """

    backend = "onnx"
    decodes_on_a_thread = True  # onnxruntime sessions may run from several threads at once

    def __init__(self, folder: Path, meta: dict[str, Any], *, precision: str = "auto", threads: int | None = None,
                 overlap_decode: bool = False):
        self._ort = import_onnxruntime()
        self.threads = threads
        self.graph_threads = split_threads(threads) if overlap_decode else threads
        self._sessions: dict[str, Any] = {}
        super().__init__(folder, meta, precision=precision)

    def default_precision(self) -> str:
        """int8 where the folder has it and its graphs pay on this machine at these threads (engine/int8_choice.py:
        timed once on a steady chunk, then read from the user cache), else float."""
        if "int8" not in self.exported_precisions():
            return "fp32"
        graphs = self.quantized_graphs()
        files = sorted({self.graph_file(graph, precision) for graph in graphs for precision in ("fp32", "int8")})
        runners = {precision: ExportedModel(self.folder, self.meta, precision=precision, threads=self.graph_threads).run
                   for precision in ("fp32", "int8")}
        return machine_precision(machine_key(files, self.graph_threads, self._ort.__version__),
                                 lambda: time_precisions(runners, self.steady_chunk_inputs(graphs)))

    def session(self, graph: str):
        """The onnxruntime session of `graph` at this precision, opened once and checked against model.json."""
        if graph not in self._sessions:
            self._sessions[graph] = self._open(graph)
        return self._sessions[graph]

    def _open(self, graph: str):
        spec = self.meta["graphs"][graph]
        file = self.graph_file(graph, self.precision)
        options = self._ort.SessionOptions()
        options.log_severity_level = 3  # errors only: a user sees our message, not the runtime's warnings
        if self.graph_threads:
            options.intra_op_num_threads = self.graph_threads
        # Idle intra-op threads sleep instead of spinning: a live session shares the cores with its audio, camera
        # and window threads, and spinning threads took their time (docs/PERFORMANCE.md, the multi-thread rows).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            session = self._ort.InferenceSession(str(file), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail / InvalidProtobuf / RuntimeException
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
            raise CheckpointError(f"{file} is not a readable ONNX model ({reason}): the file is damaged; "
                                  f"{EXPORT_AGAIN}") from None
        for side, declared, found in (("input", spec["inputs"], session.get_inputs()),
                                      ("output", spec["outputs"], session.get_outputs())):
            found = [{"name": t.name, "dtype": ORT_TYPES.get(t.type, t.type), "shape": list(t.shape)} for t in found]
            self.check_tensors(file, side, declared, found)
        return session

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run `graph` on those of `feeds` (input name -> array) that it takes; its outputs in model.json's order."""
        taken = {tensor["name"] for tensor in self.meta["graphs"][graph]["inputs"]}
        return self.session(graph).run(None, {name: array for name, array in feeds.items() if name in taken})

    def check_device(self, device: str) -> None:
        if device != "cpu":
            raise CheckpointError(f"the ONNX backend runs on the CPU, not on {device}: use --device cpu, "
                                  f"--backend tensorrt on an NVIDIA GPU, or the torch model folder with --backend torch")


def split_threads(threads: int | None) -> int:
    """Intra-op threads of each graph when two run at once (EngineConfig.overlap_decode: the sampler beside the
    decoder): half of `threads` (None: every core), at least one. Measured on 2 cores: the int8 sampler and decoder
    side by side on one thread each take 17 ms a chunk, on two each 28 ms (docs/PERFORMANCE.md)."""
    return max(1, (threads or os.cpu_count() or 1) // 2)


def _describe(tensor: dict[str, Any]) -> str:
    """'name dtype [shape]' of a tensor entry of model.json."""
    return f"{tensor['name']} {tensor['dtype']} {tensor['shape']}"


class OnnxMotionNetwork:
    """An exported motion model as engine/motion_stream.py's MotionStreamer runs it (engine/torch_motion.py's
    TorchMotionNetwork is the torch one): numpy in, numpy out, on the model's backend (onnx or tensorrt)."""

    def __init__(self, model: ExportedFolder, config: EngineConfig):
        model.check_engine_config(config)
        self.model = model
        self.backend = model.backend
        self.config = model.config
        self.sampler_name, self.steps = model.export["sampler"], model.export["steps"]
        self.fresh_draws = model.export["fresh_draws"]

    def noise_source(self, seed: int) -> NumpyNoise:
        return NumpyNoise(seed)

    def audio_tokens(self, windows: np.ndarray) -> np.ndarray:
        """(1, T, W) audio windows -> (1, T, N, A) tokens."""
        return self.model.run("audio_encoder", {"windows": windows})[0]

    def sample(self, tokens: np.ndarray, context: np.ndarray, labels: np.ndarray, sliders: np.ndarray,
               noise: list[np.ndarray]) -> np.ndarray:
        """As TorchMotionNetwork.sample: the chunk's motion (T, D) in code units."""
        feeds = {"tokens": tokens, "context": context, "label": labels, "sliders": sliders, "noise": np.stack(noise)}
        return self.model.run("sampler", feeds)[0][0]


@dataclass
class _QueuedChunk:
    """A sampled chunk on its way out: first frame index, label, slider values float32 (E,), its frames uint8
    (T, H, W, 3) or the DecodeThread's Future of them, and its stage times (ms; the decode's once it has run)."""

    start: int
    label: State
    sliders: np.ndarray
    frames: np.ndarray | Future
    stage_ms: dict[str, float]


class OnnxStreamingGenerator(LatentStream):
    """engine/streaming.py's StreamingGenerator on an exported folder (onnxruntime, or TensorRT): the same prepare()/step() contract and chunks.
    `noise`: where random numbers come from (default numpy's, seeded by config.seed at every reset)."""

    def __init__(self, model: ExportedFolder, config: EngineConfig = EngineConfig()):
        model.check_engine_config(config)
        self.model = model
        self._init_stream(model.config, config)
        self.sampler_name, self.steps = model.export["sampler"], model.export["steps"]
        self.noise = NumpyNoise(config.seed)
        self._draws = 1 + model.export["fresh_draws"]
        self._reference: dict[str, np.ndarray] | None = None  # reference (1, C, h, w) and its keys/values
        self._expression = np.zeros((1, len(expression_vector(None))), np.float32)
        self._decode_thread = DecodeThread() if config.overlap_decode else None
        self.reset()

    # ----------------------------------------------------------------- setup
    def prepare(self, portrait: np.ndarray, expression: Mapping[str, float] | None = None, *, warmup: bool = True) -> None:
        """As StreamingGenerator.prepare: encode the portrait (uint8 (H, W, 3) RGB) once and, with `warmup`,
        generate one chunk of each planned length and throw it away."""
        check_rgb(portrait)
        rgb = square_crop(portrait, self.resolution)
        image = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1  # (1, 3, S, S) in [-1, 1]
        names = [output["name"] for output in self.model.meta["graphs"]["reference_encoder"]["outputs"]]
        self._reference = dict(zip(names, self.model.run("reference_encoder", {"portrait": image})))
        if expression is not None:
            self.set_expression(expression)
        if warmup:
            for length in self._warm_up_lengths():
                self.reset()
                self.audio.push(np.zeros(length * self.samples_per_frame + self.audio.lookahead_samples, np.float32))
                self._generate(length, State.SPEAKING)
        self.reset()

    def set_expression(self, expression: Mapping[str, float]) -> None:
        """Named components in [-1, 1] (config.EXPRESSION_COMPONENTS); missing ones are neutral (0)."""
        self._expression = np.array([expression_vector(expression)], np.float32)

    def reset(self) -> None:
        """Start a new stream at frame 0 with the same portrait: audio history and motion frames are cleared."""
        self._reset_stream()
        self._motion: np.ndarray | None = None  # (1, M, C, h, w)
        self._motion_expression = np.zeros_like(self._expression)
        self.noise.seed(self.config.seed)

    def describe(self) -> dict:
        """What runs, for benchmark reports (as StreamingGenerator.describe)."""
        mc = self.model.config
        return {
            "preset": mc.preset,
            "backend": self.model.backend,
            "dtype": self.model.precision,
            "resolution": self.resolution,
            "sampler": self.sampler_name,
            "steps": self.steps,
            "chunk_plan": {"first": mc.chunks.first, "after_state_change": mc.chunks.after_state_change,
                           "steady": self.config.fixed_chunk or mc.chunks.steady},
            "threads": self.model.threads,
            "overlap_decode": self.config.overlap_decode,
            **self.model.describe(),
        }

    @property
    def _prepared(self) -> bool:
        return self._reference is not None

    # ----------------------------------------------------------------- streaming
    def _queue(self, frames: int, label: State) -> _QueuedChunk:
        """Sample the next chunk of `frames` frames here, start its decode (on the DecodeThread with overlap_decode,
        else at once) and advance the stream past it."""
        stage_ms: dict[str, float] = {}
        start = self.frame_index
        clock = time.perf_counter()
        windows = self.audio.windows(start, frames)
        tokens = self.model.run("audio_encoder", {"windows": windows})[0]  # (1, T, N, D)
        feeds = {"tokens": tokens}
        if self.audio_guidance != 1.0:
            feeds["silent_tokens"] = self.model.run("audio_encoder", {"windows": np.zeros_like(windows)})[0]
        stage_ms["audio"] = (time.perf_counter() - clock) * 1000

        clock = time.perf_counter()
        expression = self._eased_expression(frames)
        latents = self._denoise(feeds, label, expression)  # (1, T, C, h, w)
        stage_ms["denoise"] = (time.perf_counter() - clock) * 1000
        self._advance_stream(frames, label)
        decoding = (self._decode_thread.submit(self._decode, latents[0], stage_ms) if self._decode_thread
                    else self._decode(latents[0], stage_ms))
        return _QueuedChunk(start, label, expression[0], decoding, stage_ms)

    def _decode(self, latents: np.ndarray, stage_ms: dict[str, float]) -> np.ndarray:
        """Latents float32 (T, C, h, w) -> frames uint8 (T, H, W, 3), timed into stage_ms["decode"]."""
        clock = time.perf_counter()
        frames_rgb = self.model.run("decoder", {"latents": latents})[0]
        stage_ms["decode"] = (time.perf_counter() - clock) * 1000
        return frames_rgb

    def _collect(self, queued: _QueuedChunk) -> Chunk:
        """The queued chunk's frames, re-posed by the warped sliders (timed with the decode)."""
        frames_rgb = queued.frames.result() if isinstance(queued.frames, Future) else queued.frames
        clock = time.perf_counter()
        chunk = self._chunk_at(queued.start, frames_rgb, queued.sliders, queued.label, queued.stage_ms)
        chunk.stage_ms["decode"] += (time.perf_counter() - clock) * 1000
        return chunk

    def _denoise(self, feeds: dict[str, np.ndarray], label: State, expression: np.ndarray) -> np.ndarray:
        """As StreamingGenerator._denoise, the sampling in one graph: the chunk's latents (1, T, C, h, w)."""
        mc = self.model.config
        reference = self._reference["reference"]
        frames = feeds["tokens"].shape[1]
        motion_frames = mc.denoiser.num_motion_frames
        motion = self._motion
        if motion is None:  # the stream starts from the portrait itself
            motion = np.repeat(reference[:, None], motion_frames, axis=1)
        motion = motion + mc.sampling.motion_noise_sigma * self.noise.normal(motion.shape)
        latent_shape = (1, frames, *reference.shape[1:])
        feeds.update(self._reference)
        feeds.update(motion=motion, label=np.array([int(label)], np.int64),
                     expression=self._denoiser_sliders(expression),
                     motion_expression=self._denoiser_sliders(self._motion_expression),
                     noise=np.stack([self.noise.normal(latent_shape) for _ in range(self._draws)]))
        latents = self.model.run("sampler", feeds)[0]
        history = latents if self._motion is None else np.concatenate([self._motion, latents], axis=1)
        self._motion = history[:, -motion_frames:]
        self._motion_expression = expression
        if self._motion.shape[1] < motion_frames:  # a 1-frame first chunk: pad with the reference
            pad = np.repeat(reference[:, None], motion_frames - self._motion.shape[1], axis=1)
            self._motion = np.concatenate([pad, self._motion], axis=1)
        return latents

    def _eased_expression(self, frames: int) -> np.ndarray:
        """As StreamingGenerator._eased_expression: the sliders (1, E) for the next chunk."""
        if self.slider_speed is None:
            return self._expression
        most = self.slider_speed * frames / self.fps
        return self._motion_expression + np.clip(self._expression - self._motion_expression, -most, most)

    def _denoiser_sliders(self, expression: np.ndarray) -> np.ndarray:
        """The sliders (1, E) as the denoiser gets them: those the engine warps at 0."""
        expression = expression.copy()
        expression[:, self._warped] = 0
        return expression
