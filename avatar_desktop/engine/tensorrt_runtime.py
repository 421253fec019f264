"""The TensorRT backend: runs a model folder written by `avatar-desktop export` on an NVIDIA GPU, from TensorRT
engines built from the folder's own .onnx files (engine/onnx_runtime.py runs the same files on the CPU). Chosen by
`--backend tensorrt` only. It needs the `tensorrt` package (10 or newer) and torch with CUDA, whose tensors hold
the engines' inputs and outputs on the GPU; both are imported only when a TensorRTModel is made.

Precisions (`--precision`; auto: fp16), per graph:
- fp32: the float files, no reduced-precision flag (TensorRT may still use TF32 in matrix products).
- fp16: the float files with the FP16 builder flag; the audio encoder builds as fp32, since its log-mel adds up a
  power spectrum that reaches about 4e4, near fp16's largest value (65504), and it is a small share of the time.
- int8: the export's int8 files (QDQ: explicitly quantized, so TensorRT takes the export's scales and calibrates
  nothing) with the INT8 and FP16 flags (the layers the export kept float run in fp16); the graphs the export kept
  float (their int8 file is the float one) build as for fp16.

Engines: one per graph and precision, with one optimization profile over every chunk length a stream can have
(1..the model's max_chunk_frames, tuned for its steady chunk; model.json states both), cached in the user's cache
folder (files.user_cache_folder() / "tensorrt", not the model folder, which may be read-only) under EngineKey: the
.onnx file's content hash, the precision, the GPU (name and compute capability), the TensorRT version and the
profile. Each engine file starts with a header that records its key; a file whose record differs from what runs
here (another GPU or TensorRT version: copied from another machine, or TensorRT was upgraded) is rebuilt with one
line saying why, and a file that cannot be read or deserialized is named in one error line saying to delete it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar_desktop.engine.onnx_runtime import FRAMES, ExportedFolder
from avatar_desktop.errors import AvatarError, CheckpointError
from avatar_desktop.files import user_cache_folder, write_bytes_atomic

MIN_TENSORRT = 10
"""The oldest TensorRT major version this backend builds with (its tensor-name API and int64 inputs)."""
FLOAT_GRAPHS = ("audio_encoder",)
"""Graphs built as fp32 whatever the precision (the module docstring says why)."""
ENGINE_MAGIC = b"avatar-desktop TensorRT engine\n"
"""The first line of every cached engine file; the second is its EngineKey record as JSON, then the engine."""
USE_ONNX = "run the export on the CPU with --backend onnx instead"


def _print_notice(line: str) -> None:
    print(line, file=sys.stderr)


NO_TENSORRT = ("--backend tensorrt needs the tensorrt package, which is not installed (`pip install tensorrt` on a "
               f"machine with an NVIDIA GPU); or {USE_ONNX}")
NO_TORCH = f"--backend tensorrt keeps its GPU buffers in torch, which is not installed (install torch with CUDA); or {USE_ONNX}"


def missing_package() -> str | None:
    """Why --backend tensorrt cannot run in this install (tensorrt or torch not installed), without importing
    either; None when both are there (engine/model_spec.py checks this when a ModelSpec is made)."""
    for name, message in (("tensorrt", NO_TENSORRT), ("torch", NO_TORCH)):
        try:
            if importlib.util.find_spec(name) is None:
                return message
        except ImportError:  # an import hook that refuses it
            return message
    return None


def import_tensorrt():
    """The tensorrt module, or CheckpointError saying what is missing and which backend to use instead."""
    try:
        import tensorrt
    except ImportError:
        raise CheckpointError(NO_TENSORRT) from None
    major = int(re.match(r"\d+", tensorrt.__version__).group())
    if major < MIN_TENSORRT:
        raise CheckpointError(f"--backend tensorrt needs TensorRT {MIN_TENSORRT} or newer, this is "
                              f"{tensorrt.__version__} (`pip install -U tensorrt`); or {USE_ONNX}")
    return tensorrt


@dataclass(frozen=True)
class Gpu:
    """The CUDA device engines are built for and run on: its name and compute capability ('9.0')."""

    name: str
    compute_capability: str

    def __str__(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


def cuda_gpu(device: str) -> Gpu:
    """The Gpu of torch device `device` ('cuda' or 'cuda:N'), made the current device; CheckpointError saying what
    is missing when torch or a CUDA device is not there."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(NO_TORCH) from None
    if not torch.cuda.is_available():
        raise CheckpointError(f"--backend tensorrt needs a CUDA device, and there is none here (no NVIDIA GPU, driver "
                              f"or CUDA build of torch); {USE_ONNX}")
    index = torch.device(device).index or 0
    if index >= torch.cuda.device_count():
        raise CheckpointError(f"there is no CUDA device {device} here ({torch.cuda.device_count()} found): pick one "
                              "with --device cuda:N")
    torch.cuda.set_device(index)  # TensorRT builds and runs on the thread's current device
    major, minor = torch.cuda.get_device_capability(index)
    return Gpu(torch.cuda.get_device_name(index), f"{major}.{minor}")


def engine_cache_folder() -> Path:
    """Where engines are cached: the user's cache folder, never the model folder (it may be read-only)."""
    return user_cache_folder() / "tensorrt"


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file's content, read in blocks (an .onnx file of a large preset holds gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class EngineKey:
    """What an engine depends on: a change in any of these needs another engine.

    onnx_sha256: the content hash of the .onnx file it is built from; precision: the precision it is built at
    (fp32, fp16 or int8); gpu, compute_capability: the device's; tensorrt: TensorRT's version; profile: (shortest,
    tuned, longest) chunk lengths of its optimization profile.
    """

    onnx_sha256: str
    precision: str
    gpu: str
    compute_capability: str
    tensorrt: str
    profile: tuple[int, int, int]

    def file_name(self, graph: str) -> str:
        """The cache file of `graph`'s engine: by model content, precision and GPU, so that engines of several
        models and GPUs live side by side; a new TensorRT version rebuilds over the old file."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu.lower()).strip("-")
        return f"{graph}.{self.precision}.{self.onnx_sha256[:16]}.{gpu}-cc{self.compute_capability}.engine"

    def record(self) -> dict[str, Any]:
        """The key as the engine file's header records it (JSON)."""
        return {**asdict(self), "profile": list(self.profile)}

    def differences(self, record: Any) -> list[str]:
        """What in an engine file's header `record` differs from this key, in words (empty: the engine fits)."""
        if not isinstance(record, dict):
            return ["an unknown key"]
        recorded_gpu = Gpu(str(record.get("gpu")), str(record.get("compute_capability")))
        checks = [
            (recorded_gpu == Gpu(self.gpu, self.compute_capability), f"the GPU {recorded_gpu}",
             f"{Gpu(self.gpu, self.compute_capability)}"),
            (record.get("tensorrt") == self.tensorrt, f"TensorRT {record.get('tensorrt')}", f"{self.tensorrt}"),
            (record.get("onnx_sha256") == self.onnx_sha256, "another .onnx file", "this model's"),
            (record.get("precision") == self.precision, f"precision {record.get('precision')}", self.precision),
            (record.get("profile") == list(self.profile), f"chunk lengths {record.get('profile')}",
             f"{list(self.profile)}"),
        ]
        return [f"{was} (here: {now})" for fits, was, now in checks if not fits]


class EngineCache:
    """TensorRT engines on disk (`folder`), built when missing or stale, for one GPU.

    trt: the tensorrt module; gpu: the device's Gpu; notice: where the one-line notices go (building, rebuilding
    and why). `sources` maps each cache file opened to "built" or "cached".
    """

    def __init__(self, trt, gpu: Gpu, folder: Path, *, notice: Callable[[str], None] = _print_notice):
        self.trt, self.gpu, self.folder, self.notice = trt, gpu, Path(folder), notice
        self.logger = _error_logger(trt)
        self.runtime = trt.Runtime(self.logger)  # kept: engines live no longer than the runtime that made them
        self.sources: dict[str, str] = {}

    def key(self, onnx_file: Path, precision: str, profile: tuple[int, int, int]) -> EngineKey:
        return EngineKey(file_sha256(onnx_file), precision, self.gpu.name, self.gpu.compute_capability,
                         self.trt.__version__, tuple(profile))

    def engine(self, graph: str, onnx_file: Path, precision: str, shapes: dict[str, tuple[tuple, tuple, tuple]],
               profile: tuple[int, int, int], check: Callable[[list[dict], list[dict]], None]):
        """The deserialized engine of `graph` (from `onnx_file`) at `precision`: the cached one when its record fits,
        else built (and cached). shapes: the (min, opt, max) shape of each input of the optimization profile;
        profile: its (shortest, tuned, longest) chunk lengths; check(inputs, outputs): raises when the parsed
        graph's tensors ({"name", "dtype", "shape"}, -1 for a dynamic size) are not those model.json declares."""
        key = self.key(onnx_file, precision, profile)
        path = self.folder / key.file_name(graph)
        if path.is_file():
            record, data = _read_engine_file(path)
            differences = key.differences(record)
            if not differences:
                engine = self._deserialize(path, data)
                self.sources[path.name] = "cached"
                return engine
            self.notice(f"{path} was built for {'; '.join(differences)}: rebuilding it")
        else:
            self.notice(f"building the TensorRT {precision} engine of {graph} for {self.gpu} (once per model, "
                        f"precision, GPU and TensorRT version; minutes for a large model) into {path}")
        data = self._build(onnx_file, precision, shapes, check)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_bytes_atomic(path, ENGINE_MAGIC + json.dumps(key.record()).encode() + b"\n" + data)
        except (OSError, AvatarError) as error:
            raise CheckpointError(f"cannot write the TensorRT engine cache {path} ({error}): set XDG_CACHE_HOME to a "
                                  "folder you can write to") from None
        self.sources[path.name] = "built"
        return self._deserialize(path, data)

    def _build(self, onnx_file: Path, precision: str, shapes: dict, check: Callable) -> bytes:
        """The serialized engine of `onnx_file` at `precision` with one optimization profile of `shapes`."""
        trt = self.trt
        builder = trt.Builder(self.logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(onnx_file)):
            reason = _first_line([str(parser.get_error(index)) for index in range(parser.num_errors)], "no reason given")
            instead = "run --precision fp16, or int8 on --backend onnx" if precision == "int8" else USE_ONNX
            raise CheckpointError(f"TensorRT cannot read {onnx_file} ({reason}): {instead}")
        inputs = [network.get_input(index) for index in range(network.num_inputs)]
        outputs = [network.get_output(index) for index in range(network.num_outputs)]
        check(_tensor_entries(trt, inputs), _tensor_entries(trt, outputs))
        config = builder.create_builder_config()
        if precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)
        profile = builder.create_optimization_profile()
        for name, (smallest, tuned, largest) in shapes.items():
            profile.set_shape(name, smallest, tuned, largest)
        config.add_optimization_profile(profile)
        self.logger.errors.clear()
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise CheckpointError(f"TensorRT could not build an engine of {onnx_file} at {precision} "
                                  f"({_first_line(self.logger.errors, 'no reason given')}); {USE_ONNX}")
        return bytes(serialized)

    def _deserialize(self, path: Path, data: bytes):
        self.logger.errors.clear()
        engine = self.runtime.deserialize_cuda_engine(data)
        if engine is None:
            raise CheckpointError(f"cannot load the TensorRT engine {path} (TensorRT: "
                                  f"{_first_line(self.logger.errors, 'it could not deserialize it')}): delete the file, "
                                  "and the next run rebuilds it")
        return engine


def _first_line(messages: list[str], otherwise: str) -> str:
    """The first line of the first message (at most 200 characters), or `otherwise`."""
    lines = [line for message in messages for line in message.strip().splitlines() if line.strip()]
    return lines[0][:200] if lines else otherwise


def _tensor_entries(trt, tensors) -> list[dict]:
    """TensorRT network tensors as model.json entries: {"name", "dtype", "shape"} (-1 for a dynamic size)."""
    return [{"name": t.name, "dtype": np.dtype(trt.nptype(t.dtype)).name, "shape": list(t.shape)} for t in tensors]


def _error_logger(trt):
    """A TensorRT logger (a trt.ILogger) that prints nothing and keeps the error messages in `.errors`, for the
    one-line errors here."""

    class ErrorLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, message):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                self.errors.append(message)

    return ErrorLogger()


def _read_engine_file(path: Path) -> tuple[Any, bytes]:
    """(header record, engine bytes) of a cached engine file; CheckpointError naming it when it is not one."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(f"cannot read the TensorRT engine {path} ({error.strerror}): delete the file, and the "
                              "next run rebuilds it") from None
    header, _, engine = data[len(ENGINE_MAGIC):].partition(b"\n")
    try:
        if not data.startswith(ENGINE_MAGIC):
            raise ValueError("no engine header")
        return json.loads(header), engine
    except ValueError as error:
        raise CheckpointError(f"cannot load the TensorRT engine {path} (it is damaged: {error}): delete the file, and "
                              "the next run rebuilds it") from None


class TensorRTModel(ExportedFolder):
    """An exported model folder on TensorRT, on one CUDA device: an engine per graph, built or loaded from the
    cache when the graph first runs.

    precision: 'auto' (fp16), fp32, fp16 or int8 (a folder exported with --int8); device: the engine config's:
    'cuda:N' runs on that GPU, anything else ('cuda', or 'cpu', the default of commands without --device such as
    render) on the first;
    cache: the engine cache folder (default engine_cache_folder()); notice: where the one-line building and
    rebuilding notices go (default stderr). Raises CheckpointError (what is missing, what to do instead) without
    tensorrt, torch or a CUDA device, and as ExportedFolder does.
    """

    backend = "tensorrt"
    threads = None  # the GPU runs the graphs: no CPU thread count applies

    def __init__(self, folder: Path, meta: dict[str, Any], *, precision: str = "auto", device: str = "cuda",
                 cache: Path | None = None, notice: Callable[[str], None] = _print_notice):
        super().__init__(folder, meta, precision=precision)
        self.device = device if device.startswith("cuda") else "cuda"
        trt = import_tensorrt()
        self.gpu = cuda_gpu(device)
        self.cache = EngineCache(trt, self.gpu, cache or engine_cache_folder(), notice=notice)
        chunks = self.config.chunks
        self.profile = (1, chunks.steady, self.config.denoiser.max_chunk_frames)
        self._runners: dict[str, _EngineRunner] = {}

    def available_precisions(self) -> list[str]:
        """fp32 and fp16, and int8 where the folder has int8 graphs TensorRT reads (s8 activations)."""
        readable = self.meta["export"].get("int8_activations", "s8") == "s8"
        return ["fp32", "fp16"] + (["int8"] if readable and "int8" in self.exported_precisions() else [])

    def int8_export_flags(self) -> str:
        return " --int8-activations s8"  # u8 graphs: TensorRT's parser takes only zero points of 0

    def default_precision(self) -> str:
        return "fp16"

    def check_device(self, device: str) -> None:
        """Any: TensorRT runs on a GPU whatever the engine config says (see the class docstring)."""

    def graph_build(self, graph: str) -> tuple[str, str]:
        """(file precision, engine precision) of `graph`: which of its files the engine is built from (PRECISIONS),
        and at which precision (the module docstring's table)."""
        if self.precision == "fp32" or graph in FLOAT_GRAPHS:
            return "fp32", "fp32"
        files = self.meta["graphs"][graph]["files"]
        if self.precision == "int8" and files["int8"] != files["fp32"]:
            return "int8", "int8"
        return "fp32", "fp16"

    def profile_shapes(self, graph: str) -> dict[str, tuple[tuple, tuple, tuple]]:
        """Each input of `graph` -> its (min, opt, max) shape: the chunk axis over self.profile."""
        return {tensor["name"]: tuple(tuple(length if size == FRAMES else size for size in tensor["shape"])
                                      for length in self.profile)
                for tensor in self.meta["graphs"][graph]["inputs"]}

    def runner(self, graph: str) -> _EngineRunner:
        """The engine of `graph` with its execution context, made once."""
        if graph not in self._runners:
            spec = self.meta["graphs"][graph]
            file_precision, precision = self.graph_build(graph)
            file = self.graph_file(graph, file_precision)

            def check(inputs: list[dict], outputs: list[dict]) -> None:
                for side, declared, found in (("input", spec["inputs"], inputs), ("output", spec["outputs"], outputs)):
                    self.check_tensors(file, side, declared, _as_declared(found, declared))

            engine = self.cache.engine(graph, file, precision, self.profile_shapes(graph), self.profile, check)
            self._runners[graph] = _EngineRunner(self.cache.trt, engine, self.device, graph,
                                                 [t["name"] for t in spec["inputs"]],
                                                 [t["name"] for t in spec["outputs"]])
        return self._runners[graph]

    def run(self, graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Run `graph` on those of `feeds` (input name -> array) that it takes; its outputs in model.json's order."""
        return self.runner(graph).run(feeds)

    def describe(self) -> dict:
        return {"gpu": str(self.gpu), "tensorrt": self.cache.trt.__version__, "engines": dict(self.cache.sources)}


def _as_declared(found: list[dict], declared: list[dict]) -> list[dict]:
    """`found` tensors with each dynamic size (-1) read as the size model.json declares there (FRAMES for the chunk
    axis; TensorRT leaves some computed output sizes dynamic too), so that check_tensors compares the rest."""
    sizes = {tensor["name"]: tensor["shape"] for tensor in declared}
    entries = []
    for tensor in found:
        expected = sizes.get(tensor["name"], [])
        shape = [expected[axis] if size == -1 and axis < len(expected) and len(expected) == len(tensor["shape"])
                 else size for axis, size in enumerate(tensor["shape"])]
        entries.append({**tensor, "shape": shape})
    return entries


class _EngineRunner:
    """One graph's engine and execution context; its inputs and outputs live in torch tensors on the device."""

    def __init__(self, trt, engine, device: str, graph: str, inputs: list[str], outputs: list[str]):
        import torch

        self.torch, self.device, self.graph = torch, torch.device(device), graph
        self.engine, self.context = engine, engine.create_execution_context()
        self.inputs, self.outputs = inputs, outputs
        self.dtypes = {name: np.dtype(trt.nptype(engine.get_tensor_dtype(name))) for name in inputs + outputs}
        self.torch_dtypes = {name: torch.from_numpy(np.empty(0, dtype)).dtype for name, dtype in self.dtypes.items()}

    def run(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """The graph's outputs (numpy, on the host) for the arrays `feeds` names its inputs by."""
        torch = self.torch
        held = []  # the device copies of the inputs, alive until the engine has read them
        for name in self.inputs:
            tensor = torch.from_numpy(np.ascontiguousarray(feeds[name], self.dtypes[name])).to(self.device)
            self.context.set_input_shape(name, tuple(tensor.shape))
            self.context.set_tensor_address(name, tensor.data_ptr())
            held.append(tensor)
        results = []
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            result = torch.empty(shape, dtype=self.torch_dtypes[name], device=self.device)
            self.context.set_tensor_address(name, result.data_ptr())
            results.append(result)
        if not self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"TensorRT could not run the {self.graph} engine")
        return [result.cpu().numpy() for result in results]  # .cpu() waits for the stream
