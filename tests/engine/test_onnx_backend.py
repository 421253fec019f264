"""The ONNX export and the onnxruntime backend (issue 26): the same frames as torch on the same input, int8 close to
float, a render with torch blocked, and clear messages for broken exports."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from skimage import data as skimage_data

from avatar_desktop.cli import main
from avatar_desktop.config import EngineConfig
from avatar_desktop.data.clips import read_frames
from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.int8_choice import int8_pays
from avatar_desktop.engine.model_spec import ModelSpec, open_generator
from avatar_desktop.engine.onnx_export import export_model
from avatar_desktop.engine.onnx_runtime import ExportedModel
from avatar_desktop.engine.torch_motion import TorchNoise
from avatar_desktop.errors import CheckpointError
from avatar_desktop.eval.metrics import psnr
from avatar_desktop.models.motion import build_motion_model
from avatar_desktop.models.store import save_motion_model
from tests.conftest import stream_chunks, stream_frames, stream_overlapped

pytestmark = pytest.mark.slow  # exports trace whole samplers: seconds each on 2 cores


@pytest.fixture(scope="module")
def motion_model_dir(tmp_path_factory) -> Path:
    """A tiny seeded motion model whose output layer is not zero (a fresh one's is, which would hide differences)."""
    model = build_motion_model(seed=0)
    with torch.no_grad():
        generator = torch.Generator().manual_seed(1)
        model.denoiser.out.weight.copy_(0.2 * torch.randn(model.denoiser.out.weight.shape, generator=generator))
    return save_motion_model(model, tmp_path_factory.mktemp("models") / "motion-tiny")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir, motion_model_dir) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("onnx")
    return {"latent": export_model(tiny_model_dir, out / "latent"), "motion": export_model(motion_model_dir, out / "motion")}


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return skimage_data.astronaut()


def test_export_writes_every_graph_with_its_documented_tensors(exported):
    for kind, graphs in (("latent", {"audio_encoder", "reference_encoder", "sampler", "decoder"}),
                         ("motion", {"audio_encoder", "sampler"})):
        meta = json.loads((exported[kind] / "model.json").read_text())
        assert meta["backend"] == "onnx" and meta["kind"] == kind and set(meta["graphs"]) == graphs
        for graph in meta["graphs"].values():
            assert (exported[kind] / graph["files"]["fp32"]).is_file()
        assert meta["graphs"]["audio_encoder"]["inputs"][0]["shape"][1] == "frames"
        spec = ModelSpec(str(exported[kind]))
        assert (spec.kind, spec.backend) == (kind, "onnx")


def test_export_command_writes_the_folder_and_checks_its_flags(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "exports" / "tiny"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out and ModelSpec(str(out)).backend == "onnx"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(tmp_path / "q"), "--int8"]) == 2
    assert "--int8 needs --calibration DATA" in _one_line_error(capsys)
    assert main(["export", "--model", str(out), "--out", str(tmp_path / "again")]) == 2
    assert "is already an ONNX export" in _one_line_error(capsys)
    assert not (tmp_path / "q").exists() and not (tmp_path / "again").exists()


def test_latent_onnx_float_gives_the_torch_frames(exported, tiny_model_dir, portrait):
    audio = benchmark_audio(1.6)
    torch_frames = stream_frames(open_generator(ModelSpec(str(tiny_model_dir)), portrait, EngineConfig(precision="fp32")),
                             audio)
    onnx_generator = open_generator(ModelSpec(str(exported["latent"])), portrait, EngineConfig())
    onnx_generator.noise = TorchNoise()  # the torch backend's noise, so that both sample the same
    onnx_generator.reset()
    onnx_frames = stream_frames(onnx_generator, audio)
    assert onnx_frames.shape == torch_frames.shape == (40, 64, 64, 3)
    assert psnr(onnx_frames, torch_frames) >= 45


def test_overlapped_decode_gives_the_same_chunks_in_order_decoded_on_a_second_thread(exported, portrait):
    plain_chunks = stream_chunks(open_generator(ModelSpec(str(exported["latent"])), portrait, EngineConfig()), 1.6)
    overlapped = open_generator(ModelSpec(str(exported["latent"])), portrait,
                                EngineConfig(overlap_decode=True, threads=2))
    assert overlapped.describe()["overlap_decode"]
    for graph in ("sampler", "decoder"):  # the two threads share the two asked for
        assert overlapped.model.session(graph).get_session_options().intra_op_num_threads == 1
    chunks, queued_ahead, decoding_threads = stream_overlapped(overlapped, 1.6)
    # nothing is sampled before the first chunk comes out; then the next chunk is queued before each one
    assert queued_ahead == [0] + [len(chunk.frames) for chunk in chunks[2:]] + [0]
    assert [(c.start_frame, len(c.frames)) for c in chunks] == [(c.start_frame, len(c.frames)) for c in plain_chunks]
    np.testing.assert_array_equal(np.concatenate([c.frames for c in chunks]),
                                  np.concatenate([c.frames for c in plain_chunks]))
    assert all(set(chunk.stage_ms) == {"audio", "denoise", "decode"} for chunk in chunks)
    assert decoding_threads and all(name.startswith("decode") for name in decoding_threads)


def test_photo_path_onnx_float_gives_the_torch_frames(exported, motion_model_dir, astronaut):
    audio = benchmark_audio(1.2)
    config = EngineConfig()
    torch_frames = stream_frames(open_generator(ModelSpec(str(motion_model_dir)), astronaut, config), audio)
    onnx_generator = open_generator(ModelSpec(str(exported["motion"])), astronaut, config)
    onnx_generator.motion.noise = TorchNoise()
    onnx_generator.reset()
    onnx_frames = stream_frames(onnx_generator, audio)
    assert onnx_frames.shape == torch_frames.shape
    assert psnr(onnx_frames, torch_frames) >= 45
    moved = np.abs(torch_frames.astype(int) - torch_frames[:1]).max(axis=(1, 2, 3))
    assert moved.max() > 20  # the face moves: equal frames are not equal stills


def test_onnx_noise_is_seeded_by_the_engine_config(exported, portrait):
    audio = benchmark_audio(0.8)
    spec = ModelSpec(str(exported["latent"]))
    first, again, other = (stream_frames(open_generator(spec, portrait, EngineConfig(seed=seed)), audio)
                           for seed in (3, 3, 4))
    np.testing.assert_array_equal(first, again)
    assert psnr(first, other) < 45


@pytest.fixture(scope="module")
def speech_clips(tmp_path_factory) -> Path:
    """A tiny `dataset synth` set at the tiny latent model's 64 px: real speech (espeak-ng) with its phonemes."""
    out = tmp_path_factory.mktemp("synth") / "data"
    build_synthetic(out, SynthConfig(identities=2, clips_per_identity=1, seconds=4.0, seed=5, size=64), workers=1,
                    progress=False)
    return out


@pytest.fixture(scope="module")
def exported_int8(tmp_path_factory, tiny_model_dir, motion_model_dir, speech_clips) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("onnx-int8")
    return {kind: export_model(folder, out / kind, calibration=speech_clips, calibration_chunks=16)
            for kind, folder in (("latent", tiny_model_dir), ("motion", motion_model_dir))}


def test_int8_export_quantizes_the_sampler_and_decoder_only(exported_int8):
    latent = json.loads((exported_int8["latent"] / "model.json").read_text())
    assert latent["export"]["calibration"]["chunks"] >= 16
    timed = latent["export"]["chunk_ms"]  # the default is the precision timed faster here, by a clear margin
    assert timed["fp32"] > 0 and timed["int8"] > 0
    assert latent["default_precision"] == ("int8" if int8_pays(timed["fp32"], timed["int8"]) else "fp32")
    files = {name: graph["files"] for name, graph in latent["graphs"].items()}
    assert files["sampler"]["int8"] == "sampler.int8.onnx" and files["decoder"]["int8"] == "decoder.int8.onnx"
    assert files["audio_encoder"]["int8"] == files["audio_encoder"]["fp32"]  # kept float (engine/onnx_quantize.py)
    assert files["reference_encoder"]["int8"] == files["reference_encoder"]["fp32"]
    quantized = (exported_int8["latent"] / "sampler.int8.onnx").read_bytes()
    assert b"DequantizeLinear" in quantized


def test_auto_precision_is_the_one_timed_faster_on_this_machine_and_threads(exported_int8, user_cache):
    """--precision auto: timed on this machine once per thread count (engine/int8_choice.py), then the stored
    answer, whatever model.json's exporting machine found."""
    folder = exported_int8["latent"]
    meta = json.loads((folder / "model.json").read_text())
    answers_file = user_cache / "precision.json"
    answers_file.unlink(missing_ok=True)
    chosen = {threads: ExportedModel(folder, meta, threads=threads).precision for threads in (1, 2)}
    answers = json.loads(answers_file.read_text())
    keys = {threads: next(key for key in answers if f"threads {threads} |" in key and str(folder) in key)
            for threads in (1, 2)}
    assert {threads: answers[keys[threads]] for threads in (1, 2)} == chosen
    for stored in ("int8", "fp32"):  # the stored answer is what runs, on either side of model.json's default
        answers[keys[1]] = stored
        answers_file.write_text(json.dumps(answers))
        assert ExportedModel(folder, meta, threads=1).precision == stored
    assert ExportedModel(folder, meta, precision="fp32", threads=1).precision == "fp32"  # asked for: not timed


def test_int8_activations_are_symmetric_and_biases_float(exported_int8):
    """Signed activations with zero point 0, signed weights and float biases: the QDQ graph TensorRT reads as it is
    (engine/onnx_quantize.py)."""
    import onnx
    from onnx import numpy_helper

    for graph in ("sampler", "decoder"):
        model = onnx.load(str(exported_int8["latent"] / f"{graph}.int8.onnx")).graph
        initializers = {tensor.name: tensor for tensor in model.initializer}
        activation_zero_points = [initializers[node.input[2]] for node in model.node
                                  if node.op_type == "QuantizeLinear"]
        dequantized = [initializers[node.input[0]].data_type for node in model.node
                       if node.op_type == "DequantizeLinear" and node.input[0] in initializers]
        assert activation_zero_points
        assert {zero_point.data_type for zero_point in activation_zero_points} == {onnx.TensorProto.INT8}
        assert all(not numpy_helper.to_array(zero_point).any() for zero_point in activation_zero_points)
        assert set(dequantized) == {onnx.TensorProto.INT8}  # the weights; no int32 biases


def test_u8_activations_are_an_export_option_recorded_in_model_json(tiny_model_dir, speech_clips, tmp_path,
                                                                    portrait, capsys):
    """u8 activations with 7-bit weights (engine/onnx_quantize.py ACTIVATIONS), frames close to float."""
    import onnx
    from onnx import numpy_helper

    out = tmp_path / "u8"
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out), "--int8-activations", "u8"]) == 2
    assert "--int8-activations is read only with --int8" in _one_line_error(capsys) and not out.exists()
    assert main(["export", "--model", str(tiny_model_dir), "--out", str(out), "--int8", "--calibration",
                 str(speech_clips), "--calibration-chunks", "16", "--int8-activations", "u8"]) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["export"]["int8_activations"] == "u8"
    model = onnx.load(str(out / "sampler.int8.onnx")).graph
    initializers = {tensor.name: tensor for tensor in model.initializer}
    zero_points = [initializers[node.input[2]] for node in model.node if node.op_type == "QuantizeLinear"]
    assert zero_points and {zero_point.data_type for zero_point in zero_points} == {onnx.TensorProto.UINT8}
    weights = [numpy_helper.to_array(initializers[node.input[0]]) for node in model.node
               if node.op_type == "DequantizeLinear" and node.input[0] in initializers]
    assert weights and all(weight.dtype == np.int8 and np.abs(weight.astype(int)).max() <= 64 for weight in weights)
    audio = benchmark_audio(1.6)
    spec = ModelSpec(str(out))
    frames = {precision: stream_frames(open_generator(spec, portrait, EngineConfig(precision=precision)), audio)
              for precision in ("fp32", "int8")}
    assert psnr(frames["int8"], frames["fp32"]) >= 35


@pytest.mark.parametrize("kind", ["latent", "motion"])
def test_int8_frames_stay_within_35_db_of_float(exported_int8, kind, portrait, astronaut):
    audio = benchmark_audio(1.6)
    spec = ModelSpec(str(exported_int8[kind]))
    image = portrait if kind == "latent" else astronaut
    float_frames = stream_frames(open_generator(spec, image, EngineConfig(precision="fp32")), audio)
    int8_frames = stream_frames(open_generator(spec, image, EngineConfig(precision="int8")), audio)
    assert 35 <= psnr(int8_frames, float_frames) < float("inf")


def test_int8_keeps_the_eval_mouth_metrics_of_float(exported_int8, speech_clips):
    """The eval's mouth metrics of int8 against float on real speech clips. The tiny model is untrained: its mouth
    does not follow the audio, so its lip-sync correlation is a correlation of noise (it moves by several hundredths
    when the frames change by less than the int8 error) and is not compared. What is compared: the measured mouth
    opening itself, frame by frame (what every lip-sync metric is computed from), and the closure and
    closed-when-silent rates, each within 0.02."""
    from avatar_desktop.data.clips import load_clip, load_manifest
    from avatar_desktop.eval.report import evaluate_clips, frame_source

    clips = [load_clip(speech_clips / entry["path"]) for entry in load_manifest(speech_clips)["clips"]]
    results = {precision: evaluate_clips(clips, frame_source(str(exported_int8["latent"]),
                                                              EngineConfig(precision=precision)))
               for precision in ("fp32", "int8")}
    opening = {precision: np.array(result["trace"]["generated"]) for precision, result in results.items()}
    assert np.abs(opening["int8"] - opening["fp32"]).max() <= 0.02
    for group, metric in (("lip_sync", "closure_rate"), ("states", "idle_mouth_closed")):
        values = [results[precision]["report"][group][metric] for precision in ("fp32", "int8")]
        assert abs(values[0] - values[1]) <= 0.02, (metric, values)


TORCH_BLOCKED = textwrap.dedent("""
    import importlib.abc, sys

    class NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "torch":
                raise ImportError(f"the runtime path imported {name}")

    sys.meta_path.insert(0, NoTorch())
    from avatar_desktop.cli import main
    code = main(sys.argv[1:])
    assert not any(name.split(".")[0] == "torch" for name in sys.modules)
    sys.exit(code)
""")


@pytest.mark.parametrize("kind", ["latent", "motion"])
def test_render_of_an_export_runs_with_torch_blocked(exported, kind, tmp_path, speech_wav, portrait, astronaut):
    image = tmp_path / "portrait.png"
    cv2.imwrite(str(image), (portrait if kind == "latent" else astronaut)[:, :, ::-1])
    out = tmp_path / "out.mp4"
    command = [sys.executable, "-c", TORCH_BLOCKED, "render", "--portrait", str(image), "--audio", str(speech_wav),
               "--out", str(out), "--model", str(exported[kind]), "--state", "speaking"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "wrote" in result.stdout and out.stat().st_size > 0
    assert len(read_frames(out)) == 25  # 1 s of speech at 25 fps


def _render(tmp_path: Path, portrait: np.ndarray, audio: Path, model: Path, *extra: str) -> tuple[list[str], Path]:
    """The arguments of a render of the latent `model` into tmp_path/out.mp4, and that output path."""
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), portrait[:, :, ::-1])
    out = tmp_path / "out.mp4"
    return ["render", "--portrait", str(image), "--audio", str(audio), "--out", str(out), "--model", str(model),
            "--state", "speaking", *extra], out


def _one_line_error(capsys) -> str:
    error = capsys.readouterr().err
    assert "Traceback" not in error and error.count("\n") == 1, error
    return error


def test_a_damaged_onnx_file_is_named_with_what_to_do(exported, tmp_path, portrait, speech_wav, capsys):
    folder = Path(shutil.copytree(exported["latent"], tmp_path / "export"))
    sampler = folder / "sampler.onnx"
    sampler.write_bytes(sampler.read_bytes()[: sampler.stat().st_size // 3])
    args, out = _render(tmp_path, portrait, speech_wav, folder)
    assert main(args) == 2
    error = _one_line_error(capsys)
    assert f"{sampler} is not a readable ONNX model" in error and "avatar-desktop export" in error
    assert not out.exists()


def test_an_onnx_file_that_does_not_match_its_model_json_is_named(exported, tmp_path, portrait, speech_wav, capsys):
    folder = Path(shutil.copytree(exported["latent"], tmp_path / "export"))
    shutil.copy(exported["motion"] / "sampler.onnx", folder / "sampler.onnx")  # another export's graph
    args, _ = _render(tmp_path, portrait, speech_wav, folder)
    assert main(args) == 2
    error = _one_line_error(capsys)
    assert f"{folder / 'sampler.onnx'} does not match {folder / 'model.json'}" in error
    assert "context float32 [1, 4, 17] in the file" in error and "avatar-desktop export" in error


def test_a_model_json_that_claims_onnx_without_graphs_is_refused(tiny_model_dir, tmp_path, portrait, speech_wav,
                                                                   capsys):
    folder = Path(shutil.copytree(tiny_model_dir, tmp_path / "claims-onnx"))
    meta = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**meta, "backend": "onnx"}))
    args, out = _render(tmp_path, portrait, speech_wav, folder)
    assert main(args) == 2
    error = _one_line_error(capsys)
    assert f"{folder / 'model.json'} says" in error and "has no export or graphs" in error and not out.exists()


def test_backend_and_precision_the_folder_lacks_are_refused(exported, tiny_model_dir, tmp_path, portrait, speech_wav,
                                                           capsys):
    for model, extra, expected in (
            (exported["latent"], ["--backend", "torch"], "runs on --backend onnx, not torch"),
            (tiny_model_dir, ["--backend", "onnx"], "export it first (`avatar-desktop export"),
            (exported["latent"], ["--compile"], "--compile and --decoder tiny run on the torch backend only"),
    ):
        args, _ = _render(tmp_path, portrait, speech_wav, model, *extra)
        assert main(args) == 2
        assert expected in _one_line_error(capsys)
    with pytest.raises(CheckpointError, match=r"holds the precisions fp32, not 'int8'.*--int8"):
        open_generator(ModelSpec(str(exported["latent"])), portrait, EngineConfig(precision="int8"))


def test_a_missing_onnxruntime_names_the_package(exported, tmp_path, portrait, speech_wav):
    script = TORCH_BLOCKED.replace('name.split(".")[0] == "torch":', 'name.split(".")[0] == "onnxruntime":')
    args, out = _render(tmp_path, portrait, speech_wav, exported["latent"])
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=240,
                            cwd=Path(__file__).parents[2])
    assert result.returncode == 2
    assert "needs the onnxruntime package" in result.stderr and "pip install onnxruntime" in result.stderr
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()
