"""The TensorRT backend's logic on a machine without a GPU (engine/tensorrt_runtime.py): the engine cache's key and
its build / load / rebuild decisions, what each graph is built from and with, and the messages. Only TensorRT and
the GPU's properties are faked (tests/engine/fake_tensorrt.py, FAKE_GPU); the GPU run is
tests/engine/test_gpu_tensorrt.py."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from avatar_desktop.cli import main
from avatar_desktop.engine import tensorrt_runtime
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.engine.tensorrt_runtime import EngineCache, EngineKey, Gpu, TensorRTModel, import_tensorrt
from avatar_desktop.errors import CheckpointError
from avatar_desktop.models.folders import read_model_meta
from tests.engine.fake_tensorrt import FakeTensorRT

FAKE_GPU = Gpu("NVIDIA H200 (fake)", "9.0")
"""Stands for the properties torch reads from a CUDA device."""
PROFILE = (1, 4, 16)


def identity_onnx(path: Path, width: int = 2) -> Path:
    """A one-node ONNX graph: x float32 (frames, width) -> y, the same."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["frames", width])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["frames", width])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity", [x], [y])
    onnx.save(helper.make_model(graph), str(path))
    return path


def no_check(inputs, outputs) -> None:
    """The model.json check of a graph without a model.json."""


def engine_of(cache: EngineCache, onnx_file: Path, precision: str = "fp16"):
    shapes = {"x": ((1, 2), (4, 2), (16, 2))}
    return cache.engine("decoder", onnx_file, precision, shapes, PROFILE, no_check)


@pytest.fixture
def fake_trt(monkeypatch) -> FakeTensorRT:
    """FakeTensorRT installed as the tensorrt module."""
    fake = FakeTensorRT()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def test_the_key_names_every_change_that_needs_another_engine():
    key = EngineKey("ab" * 32, "fp16", "NVIDIA H200", "9.0", "10.3.0", PROFILE)
    assert key.file_name("sampler") == "sampler.fp16.abababababababab.nvidia-h200-cc9.0.engine"
    assert key.differences(key.record()) == []
    other_gpu = {**key.record(), "gpu": "NVIDIA A100-SXM4-80GB", "compute_capability": "8.0"}
    assert key.differences(other_gpu) == ["the GPU NVIDIA A100-SXM4-80GB (compute capability 8.0) (here: NVIDIA H200 "
                                          "(compute capability 9.0))"]
    older = {**key.record(), "tensorrt": "10.0.1", "precision": "fp32"}
    assert key.differences(older) == ["TensorRT 10.0.1 (here: 10.3.0)", "precision fp32 (here: fp16)"]
    assert key.differences({**key.record(), "profile": [1, 4, 8]}) == ["chunk lengths [1, 4, 8] (here: [1, 4, 16])"]
    assert key.differences({**key.record(), "onnx_sha256": "cd" * 32}) == ["another .onnx file (here: this model's)"]


def test_an_engine_is_built_once_then_loaded_from_the_cache(fake_trt, tmp_path):
    model = identity_onnx(tmp_path / "decoder.onnx")
    notices = []
    cache = EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache", notice=notices.append)
    engine = engine_of(cache, model)
    assert engine.request == {"file": str(model), "flags": ["FP16"], "shapes": {"x": [[1, 2], [4, 2], [16, 2]]}}
    [file] = (tmp_path / "cache").iterdir()
    assert cache.sources == {file.name: "built"}
    assert notices == [f"building the TensorRT fp16 engine of decoder for {FAKE_GPU} (once per model, precision, GPU "
                       f"and TensorRT version; minutes for a large model) into {file}"]
    header = json.loads(file.read_bytes().split(b"\n")[1])
    assert header == {"onnx_sha256": tensorrt_runtime.file_sha256(model), "precision": "fp16",
                      "gpu": FAKE_GPU.name, "compute_capability": "9.0", "tensorrt": "10.3.0", "profile": [1, 4, 16]}

    again = EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache", notice=notices.append)  # another run
    assert engine_of(again, model).request == engine.request
    assert again.sources == {file.name: "cached"} and len(fake_trt.builds) == 1 and len(notices) == 1

    identity_onnx(model, width=3)  # the model file changed: another engine beside the first
    engine_of(again, model)
    assert len(fake_trt.builds) == 2 and len(list((tmp_path / "cache").iterdir())) == 2


def test_an_engine_of_another_tensorrt_or_gpu_is_rebuilt_with_one_line_saying_why(fake_trt, tmp_path):
    model = identity_onnx(tmp_path / "decoder.onnx")
    engine_of(EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache"), model)
    [file] = (tmp_path / "cache").iterdir()

    fake_trt.__version__ = "10.4.1"  # TensorRT was upgraded
    notices = []
    cache = EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache", notice=notices.append)
    engine_of(cache, model)
    assert notices == [f"{file} was built for TensorRT 10.3.0 (here: 10.4.1): rebuilding it"]
    assert cache.sources == {file.name: "built"} and len(fake_trt.builds) == 2
    assert json.loads(file.read_bytes().split(b"\n")[1])["tensorrt"] == "10.4.1"

    other = Gpu("NVIDIA GeForce RTX 4090", "8.9")  # the cache folder copied to another machine, file renamed to fit
    key = EngineCache(fake_trt, other, tmp_path / "cache").key(model, "fp16", PROFILE)
    copied = tmp_path / "cache" / key.file_name("decoder")
    shutil.copy(file, copied)
    notices.clear()
    engine_of(EngineCache(fake_trt, other, tmp_path / "cache", notice=notices.append), model)
    assert notices == [f"{copied} was built for the GPU {FAKE_GPU} (here: {other}): rebuilding it"]
    assert len(fake_trt.builds) == 3


@pytest.mark.parametrize("damage", ["engine", "header", "magic"])
def test_a_cached_engine_that_cannot_be_loaded_is_named_with_what_to_do(fake_trt, tmp_path, damage):
    model = identity_onnx(tmp_path / "decoder.onnx")
    engine_of(EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache"), model)
    [file] = (tmp_path / "cache").iterdir()
    magic, header, engine = file.read_bytes().split(b"\n", 2)
    damaged = {"engine": [magic, header, b"garbage"], "header": [magic, header[:10], engine],
               "magic": [b"something else", header, engine]}[damage]
    file.write_bytes(b"\n".join(damaged))
    with pytest.raises(CheckpointError) as caught:
        engine_of(EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache"), model)
    message = str(caught.value)
    assert message.startswith(f"cannot load the TensorRT engine {file} (")
    assert message.endswith("delete the file, and the next run rebuilds it") and "\n" not in message
    if damage == "engine":
        assert "(TensorRT: IRuntime::deserializeCudaEngine: magic tag mismatch)" in message
    assert len(fake_trt.builds) == 1  # nothing rebuilt behind the user's back


def test_an_unwritable_cache_folder_is_named(fake_trt, tmp_path):
    model = identity_onnx(tmp_path / "decoder.onnx")
    (tmp_path / "cache").write_text("a file where the folder should be")
    with pytest.raises(CheckpointError, match=r"cannot write the TensorRT engine cache .*set XDG_CACHE_HOME"):
        engine_of(EngineCache(fake_trt, FAKE_GPU, tmp_path / "cache"), model)


def test_an_old_tensorrt_is_named_with_the_version_needed(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT("8.6.1"))
    with pytest.raises(CheckpointError, match=r"needs TensorRT 10 or newer, this is 8.6.1 .*--backend onnx"):
        import_tensorrt()


# ----------------------------------------------------------------- a real export on the fake TensorRT



@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir) -> Path:
    from avatar_desktop.engine.onnx_export import export_model

    return export_model(tiny_model_dir, tmp_path_factory.mktemp("onnx") / "latent")


@pytest.fixture
def on_fake_gpu(fake_trt, monkeypatch, tmp_path) -> FakeTensorRT:
    """FakeTensorRT, FAKE_GPU as the CUDA device, and the user's cache folder in tmp_path."""
    monkeypatch.setattr(tensorrt_runtime, "cuda_gpu", lambda device: FAKE_GPU)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user-cache"))
    return fake_trt


def with_int8_sampler(exported: Path, folder: Path) -> Path:
    """A copy of the export whose sampler has an int8 file (the fake parser reads any graph: a copy of the float one)."""
    folder = Path(shutil.copytree(exported, folder))
    shutil.copy(folder / "sampler.onnx", folder / "sampler.int8.onnx")
    meta = read_model_meta(folder)
    for name, graph in meta["graphs"].items():
        graph["files"]["int8"] = "sampler.int8.onnx" if name == "sampler" else graph["files"]["fp32"]
    (folder / "model.json").write_text(json.dumps(meta))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("precision, flags", [
    ("fp32", {"audio_encoder": [], "reference_encoder": [], "sampler": [], "decoder": []}),
    ("fp16", {"audio_encoder": [], "reference_encoder": ["FP16"], "sampler": ["FP16"], "decoder": ["FP16"]}),
    ("int8", {"audio_encoder": [], "reference_encoder": ["FP16"], "sampler": ["FP16", "INT8"], "decoder": ["FP16"]}),
])
def test_each_graph_is_built_from_its_file_with_its_flags_over_every_chunk_length(on_fake_gpu, exported, tmp_path,
                                                                                   precision, flags):
    folder = with_int8_sampler(exported, tmp_path / "export")
    model = TensorRTModel(folder, read_model_meta(folder), precision=precision, notice=lambda line: None)
    for graph in flags:
        model.runner(graph)
    built = {Path(request["file"]).name: request for request in on_fake_gpu.builds}
    assert {name: request["flags"] for name, request in zip(flags, on_fake_gpu.builds)} == flags
    sampler = built["sampler.int8.onnx" if precision == "int8" else "sampler.onnx"]
    chunks, longest = model.config.chunks, model.config.denoiser.max_chunk_frames
    draws, _, _, *latent = model.meta["graphs"]["sampler"]["inputs"][3]["shape"]
    assert sampler["shapes"]["noise"] == [[draws, 1, length, *latent] for length in (1, chunks.steady, longest)]
    assert sampler["shapes"]["label"] == [[1]] * 3
    cache = Path(tmp_path / "user-cache" / "avatar-desktop" / "tensorrt")
    assert sorted(path.name for path in cache.iterdir()) == sorted(model.cache.sources)
    assert not any(path.suffix == ".engine" for path in folder.iterdir())  # the model folder stays as it was
    assert model.describe()["engines"] == dict.fromkeys(model.cache.sources, "built")


@pytest.mark.slow
def test_an_onnx_file_that_does_not_match_its_model_json_is_named_before_building(on_fake_gpu, exported, tmp_path,
                                                                                   tiny_model_dir):
    folder = Path(shutil.copytree(exported, tmp_path / "export"))
    shutil.copy(folder / "audio_encoder.onnx", folder / "decoder.onnx")  # another graph's file
    model = TensorRTModel(folder, read_model_meta(folder), notice=lambda line: None)
    with pytest.raises(CheckpointError) as caught:
        model.runner("decoder")
    message = str(caught.value)
    assert message.startswith(f"{folder / 'decoder.onnx'} does not match {folder / 'model.json'} (inputs: windows ")
    assert "avatar-desktop export" in message and on_fake_gpu.builds == []
    (folder / "sampler.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(CheckpointError, match=rf"TensorRT cannot read {folder / 'sampler.onnx'} \(ModelImporter: "
                                              r"failed to parse .*\): run the export on the CPU with --backend onnx"):
        model.runner("sampler")


@pytest.mark.slow
def test_int8_graphs_with_u8_activations_are_not_offered_with_the_export_flag_that_makes_readable_ones(
        on_fake_gpu, exported, tmp_path):
    folder = with_int8_sampler(exported, tmp_path / "export")
    meta = read_model_meta(folder)
    meta["export"]["int8_activations"] = "u8"  # as `export --int8 --int8-activations u8` records it
    (folder / "model.json").write_text(json.dumps(meta))
    assert TensorRTModel(folder, meta, notice=lambda line: None).available_precisions() == ["fp32", "fp16"]
    with pytest.raises(CheckpointError, match=r"holds the precisions fp32, fp16, not 'int8' \(on --backend "
                                              r"tensorrt\): .* export with --int8 --int8-activations s8 for int8"):
        TensorRTModel(folder, meta, precision="int8", notice=lambda line: None)
    assert on_fake_gpu.builds == []


# ----------------------------------------------------------------- the command line's messages

def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1, error
    return error


def _render(tmp_path: Path, model: Path, speech_wav: Path, portrait, *extra: str) -> list[str]:
    import cv2

    image = tmp_path / "face.png"
    cv2.imwrite(str(image), portrait[:, :, ::-1])
    return ["render", "--portrait", str(image), "--audio", str(speech_wav), "--out", str(tmp_path / "out.mp4"),
            "--model", str(model), "--state", "speaking", "--backend", "tensorrt", *extra]


@pytest.mark.slow
def test_backend_tensorrt_says_what_is_missing_and_which_backend_to_use(exported, tiny_model_dir, tmp_path, speech_wav,
                                                                        portrait, capsys, monkeypatch):
    assert main(_render(tmp_path, exported, speech_wav, portrait)) == 2  # this machine has no tensorrt
    error = _one_line_error(capsys)
    assert "--backend tensorrt needs the tensorrt package, which is not installed" in error
    assert error.rstrip().endswith("or run the export on the CPU with --backend onnx instead")

    monkeypatch.setitem(sys.modules, "tensorrt", FakeTensorRT())  # tensorrt installed, but no CUDA device here
    assert main(_render(tmp_path, exported, speech_wav, portrait)) == 2
    error = _one_line_error(capsys)
    assert "--backend tensorrt needs a CUDA device, and there is none here" in error and "--backend onnx" in error

    assert main(_render(tmp_path, tiny_model_dir, speech_wav, portrait)) == 2
    assert "runs on --backend torch, not tensorrt: export it first" in _one_line_error(capsys)
    assert not (tmp_path / "out.mp4").exists()
    assert ModelSpec(str(exported), backend="tensorrt").backend == "tensorrt"
    assert ModelSpec(str(exported)).backend == "onnx"  # never chosen unless asked for
