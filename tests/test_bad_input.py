"""Bad input and faults (issue 25): each case ends in one clear line naming the file or flag and what to do, an
exit code like other input errors, and nothing lost."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
import tomllib
import typing
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from avatar_desktop.cli import main
from avatar_desktop.config import PRECISIONS
from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.engine.precision import BACKENDS
from avatar_desktop.engine.portrait import MAX_PORTRAIT_PIXELS, image_size_from_header, load_portrait
from avatar_desktop.errors import CheckpointError, InputFileError, OutputError
from avatar_desktop.files import write_bytes_atomic, write_json_atomic, write_png_atomic
from avatar_desktop.training.config import MOTION_RECIPES, RECIPES, recipe_problems
from avatar_desktop.models.store import DEFAULT_MOTION_MODEL, load_model, load_motion_model, resolve_model
from tests.conftest import write_recipe, write_wav


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR says width x height (RGB, 8-bit) and whose IDAT holds just one row of zeros: tiny on disk."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(1 + 3 * width)))
            + chunk(b"IEND", b""))


def jpeg_claiming(width: int, height: int) -> bytes:
    """A real 80x80 JPEG whose start-of-frame segment is patched to say width x height."""
    data = bytearray(cv2.imencode(".jpg", np.full((80, 80, 3), 128, np.uint8))[1].tobytes())
    frame = data.find(b"\xff\xc0")
    data[frame + 5 : frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_image_size_is_read_from_the_header_of_real_files(suffix):
    encoded = cv2.imencode(suffix, np.zeros((61, 97, 3), np.uint8))[1].tobytes()
    assert image_size_from_header(io.BytesIO(encoded)) == (97, 61)


@pytest.mark.parametrize("name, data", [
    ("huge.png", png_header_only(25_000, 25_000)),
    ("huge.jpg", jpeg_claiming(30_000, 30_000)),
    ("wide.png", png_header_only(60_000, 2_000)),
])
def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    assert path.stat().st_size < 100_000
    with pytest.raises(InputFileError) as caught:
        load_portrait(path)
    message = str(caught.value)
    assert str(path) in message and f"{MAX_PORTRAIT_PIXELS // 1_000_000} megapixels" in message
    assert "scale it down" in message


def test_a_fully_transparent_rgba_portrait_is_refused(tmp_path):
    rgba = np.zeros((100, 100, 4), np.uint8)
    rgba[:, :, :3] = 90
    rgba[:, :, 3] = 40  # faint everywhere: composited onto white it would be a blank frame
    path = tmp_path / "ghost.png"
    cv2.imwrite(str(path), rgba)
    with pytest.raises(InputFileError, match="transparent everywhere.*save it with its background") as caught:
        load_portrait(path)
    assert str(path) in str(caught.value)


def _copy_model(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("*.png"))
    return folder


@pytest.mark.parametrize("bad_value", [float("nan"), float("inf")])
@pytest.mark.parametrize("kind", ["latent", "motion"])
def test_a_model_whose_weights_hold_nan_or_inf_is_refused_when_it_loads(tmp_path, tiny_model_dir, kind, bad_value):
    source, load = (tiny_model_dir, load_model) if kind == "latent" else (resolve_model(DEFAULT_MOTION_MODEL), load_motion_model)
    folder = _copy_model(source, tmp_path / "m")
    file = folder / "denoiser.safetensors"
    state = load_file(file)
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel() >= 3)
    state[name].view(-1)[:3] = bad_value
    save_file(state, file)
    with pytest.raises(CheckpointError) as caught:
        load(folder)
    message = str(caught.value)
    assert str(file) in message and "holds 3 weights that are not numbers" in message and name in message
    assert "use an earlier or another model" in message


def test_render_with_a_nan_model_exits_2_and_writes_no_video(tmp_path, tiny_model_dir, speech_wav, portrait, capsys):
    folder = _copy_model(tiny_model_dir, tmp_path / "m")
    state = load_file(folder / "autoencoder.safetensors")
    for tensor in state.values():
        tensor.fill_(float("nan"))
    save_file(state, folder / "autoencoder.safetensors")
    image = tmp_path / "face.png"
    cv2.imwrite(str(image), portrait)
    out = tmp_path / "out.mp4"
    code = main(["render", "--portrait", str(image), "--audio", str(speech_wav), "--out", str(out), "--model", str(folder)])
    assert code == 2
    error = capsys.readouterr().err
    assert "autoencoder.safetensors holds" in error and "not numbers" in error and "Traceback" not in error
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "m"]


def _render_args(portrait_file: Path, audio: Path, out: Path, model: Path, *extra: str) -> list[str]:
    return ["render", "--portrait", str(portrait_file), "--audio", str(audio), "--out", str(out), "--model", str(model),
            *extra]


@pytest.fixture
def portrait_file(tmp_path, portrait) -> Path:
    path = tmp_path / "face.png"
    cv2.imwrite(str(path), cv2.cvtColor(portrait, cv2.COLOR_RGB2BGR))
    return path


def test_render_over_an_existing_file_is_refused_without_force(tmp_path, portrait_file, speech_wav, tiny_model_dir,
                                                               capsys):
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier render")
    assert main(_render_args(portrait_file, speech_wav, out, tiny_model_dir)) == 2
    error = capsys.readouterr().err
    assert f"output {out} already exists: add --force to overwrite it" in error
    assert out.read_bytes() == b"an earlier render"
    assert main(_render_args(portrait_file, speech_wav, out, tiny_model_dir, "--force")) == 0
    assert out.stat().st_size > 1000 and out.read_bytes()[4:8] == b"ftyp"


@pytest.mark.slow
def test_render_stopped_by_sigterm_leaves_no_partial_file_and_the_old_output_intact(tmp_path, portrait_file,
                                                                                  tiny_model_dir):
    audio = write_wav(tmp_path / "long.wav", benchmark_audio(120.0), 16000)
    out = tmp_path / "out.mp4"
    out.write_bytes(b"an earlier render")
    process = subprocess.Popen([sys.executable, "-m", "avatar_desktop",
                                *_render_args(portrait_file, audio, out, tiny_model_dir, "--force")],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*")) and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert list(tmp_path.glob(".out.partial-*")), "the render never started writing"
    process.send_signal(signal.SIGTERM)
    _, error = process.communicate(timeout=60)
    assert process.returncode == 143
    assert b"stopped (SIGTERM)" in error and b"Traceback" not in error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["face.png", "long.wav", "out.mp4"]
    assert out.read_bytes() == b"an earlier render"


def _env() -> dict[str, str]:
    """This process's environment, with the project importable in a child process."""
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """One synthetic clip of 2 s at 64 px (real renderer, real espeak-ng speech)."""
    out = tmp_path_factory.mktemp("data") / "data"
    build_synthetic(out, SynthConfig(identities=1, clips_per_identity=1, seconds=2.0, seed=5, size=64),
                    workers=1, progress=False)
    return out


def test_eval_prints_its_report_even_when_the_plot_cannot_be_written(tmp_path, small_data, capsys):
    plot = tmp_path / "mouth.png"  # 64 px clips are too small to measure a mouth in: nothing to plot
    code = main(["eval", "--model", "ground-truth", "--data", str(small_data), "--clips", "1", "--json",
                 "--plot", str(plot)])
    captured = capsys.readouterr()
    assert code == 1
    assert json.loads(captured.out)["appearance"]["psnr_mouth"] == 100.0  # the whole report is there
    assert f"the evaluation above is complete, but the plot {plot} was not written: nothing to plot" in captured.err
    assert "Traceback" not in captured.err and not plot.exists()


@pytest.mark.parametrize("plot_name, message", [("mouth.txt", "must end in .png"), ("file/mouth.png", "a file is in the way")])
def test_eval_refuses_a_bad_plot_path_before_evaluating(tmp_path, small_data, capsys, plot_name, message):
    (tmp_path / "file").write_text("not a folder")
    plot = tmp_path / plot_name
    assert main(["eval", "--model", "ground-truth", "--data", str(small_data), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and message in captured.err
    assert f"--plot {plot}" in captured.err or f"--plot {plot.parent}: cannot write there" in captured.err


@pytest.mark.parametrize("command", ["render", "dataset-synth", "dataset-assets", "train", "live"])
def test_an_output_folder_that_cannot_be_written_is_named_before_any_work(tmp_path, command, portrait_file,
                                                                          speech_wav, small_data, capsys):
    blocker = tmp_path / "somefile"
    blocker.write_text("a file where a folder should be")  # fails for root too, unlike a read-only folder
    out = blocker / "out"
    argv = {
        "render": _render_args(portrait_file, speech_wav, out / "video.mp4", Path("unused")),
        "dataset-synth": ["dataset", "synth", "--out", str(out), "--identities", "1", "--no-progress"],
        "dataset-assets": ["dataset", "assets", "--out", str(out)],
        "train": ["train", "autoencoder", "--config", str(Path(__file__).parents[1] / "configs" / "tiny-cpu-autoencoder.toml"),
                  "--data", str(small_data), "--out", str(out)],
        "live": ["live", "--portrait", str(portrait_file), "--stats-json", str(out / "stats.json")],
    }[command]
    assert main(argv) == 2
    error = capsys.readouterr().err
    option = "--stats-json" if command == "live" else "--out"
    assert f"{option} {out}: cannot write there (a file is in the way): choose a folder you can write to" in error
    assert blocker.read_text() == "a file where a folder should be"


def test_live_refuses_to_record_over_an_existing_file_without_force(tmp_path, portrait_file, capsys):
    """Checked before the model loads or a device opens: the old recording is untouched."""
    record = tmp_path / "meeting.mp4"
    record.write_bytes(b"yesterday's recording")
    assert main(["live", "--portrait", str(portrait_file), "--record", str(record), "--camera", "off"]) == 2
    assert f"record file {record} already exists: add --force to overwrite it" in capsys.readouterr().err
    assert record.read_bytes() == b"yesterday's recording"
    blocked = tmp_path / "meeting.mp4" / "take2.mp4"
    assert main(["live", "--portrait", str(portrait_file), "--record", str(blocked), "--force"]) == 2
    assert f"--record {record}: cannot write there" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders; the file-in-the-way case above "
                                               "covers the same check")
def test_a_read_only_output_folder_is_named(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["dataset", "assets", "--out", str(locked)]) == 2
    finally:
        locked.chmod(0o700)
    assert f"--out {locked}: cannot write there (Permission denied)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(small_data, tmp_path_factory) -> tuple[Path, Path]:
    """(recipe, run folder) of a 2-step tiny autoencoder run with a checkpoint; its recipe asks for 4 steps."""
    folder = tmp_path_factory.mktemp("run")
    recipe = write_recipe(folder, "ae", 'preset = "tiny-test"\npool_clips = 1\n[run]\nsteps = 2\nbatch_size = 2\n'
                                        "warmup_steps = 1\nsave_every = 1\n")
    assert main(["train", "autoencoder", "--config", str(recipe), "--data", str(small_data), "--out",
                 str(folder / "run")]) == 0
    recipe.write_text(recipe.read_text().replace("steps = 2", "steps = 4"))
    return recipe, folder / "run"


@pytest.mark.parametrize("damaged, damage", [
    ("checkpoint/state.json", lambda data: b"\x00\xff garbage"),
    ("checkpoint/state.json", lambda data: data[: len(data) // 2]),
    ("checkpoint/weights.safetensors", lambda data: data[: len(data) // 2]),
    ("checkpoint/optimizer.safetensors", lambda data: bytes(len(data))),
    ("loss.csv", lambda data: b"step,loss\n1,\xff\xfe\n"),
])
def test_a_damaged_checkpoint_on_resume_is_named_and_kept(tmp_path, small_data, finished_run, damaged, damage,
                                                          capsys):
    recipe, original = finished_run
    run = shutil.copytree(original, tmp_path / "run")
    file = run / damaged
    file.write_bytes(damage(file.read_bytes()))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    code = main(["train", "autoencoder", "--config", str(recipe), "--data", str(small_data), "--out", str(run),
                 "--resume"])
    error = capsys.readouterr().err
    assert code == 2 and "Traceback" not in error
    if damaged == "loss.csv":
        assert f"{file} is damaged" in error and "move it away" in error
    else:
        assert f"checkpoint {run / 'checkpoint'} is damaged and cannot be resumed" in error
        assert "run again without --resume" in error
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # nothing deleted or changed


@pytest.mark.parametrize("manifest, message", [
    (b"{\"format_version\": 1, \"clips\": [", "is damaged: not valid JSON"),
    (b"\x89\x00\xff binary", "is damaged: not valid JSON"),
    (b"[1, 2, 3]", "holds a list, not an object"),
    (b'{"format_version": 1, "clips": {"path": "x"}}', '"clips" must be a list of objects with a "path"'),
    (b'{"format_version": 1, "clips": [{"path": 7}]}', '"clips" must be a list of objects with a "path"'),
])
@pytest.mark.parametrize("command", ["train", "eval"])
def test_a_garbage_data_set_manifest_is_named(tmp_path, small_data, finished_run, manifest, message, command,
                                              capsys):
    data = shutil.copytree(small_data, tmp_path / "data")
    (data / "manifest.json").write_bytes(manifest)
    recipe, _ = finished_run
    argv = {"train": ["train", "autoencoder", "--config", str(recipe), "--data", str(data), "--out",
                      str(tmp_path / "run")],
            "eval": ["eval", "--model", "ground-truth", "--data", str(data)]}[command]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert f"manifest {data / 'manifest.json'}" in error and message in error and "Traceback" not in error
    assert (data / "manifest.json").read_bytes() == manifest


@pytest.mark.parametrize("damaged", ["clip.json", "record.npz", "audio.wav", "frames.mp4"])
def test_a_damaged_clip_is_named(tmp_path, small_data, damaged, capsys):
    data = shutil.copytree(small_data, tmp_path / "data")
    clip = next((data / "clips").iterdir())
    (clip / damaged).write_bytes(b"\x00garbage" * 10)
    assert main(["eval", "--model", "ground-truth", "--data", str(data)]) == 2
    error = capsys.readouterr().err
    assert str(clip / damaged) in error or f"clip {clip} is damaged" in error
    assert "Traceback" not in error and error.count("\n") == 1


def test_the_precision_choices_are_the_engines_backends():
    assert set(PRECISIONS) == {"auto", "int8", *BACKENDS}  # int8: the ONNX backend's (engine/onnx_runtime.py)


@pytest.mark.parametrize("command", [["bench"], ["live", "--portrait", "face.png"], ["eval"]])
@pytest.mark.parametrize("flag, value, expected", [
    ("--precision", "fp8", ["invalid choice: 'fp8'", *PRECISIONS]),
    ("--precision", "int4", ["invalid choice: 'int4'", *PRECISIONS]),
    ("--device", "tpu", ["'tpu' is not a device: use cpu, cuda or cuda:N"]),
])
def test_an_unknown_engine_choice_is_refused_listing_the_choices(command, flag, value, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*command, flag, value])
    assert exited.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert f"argument {flag}: " in error and all(text in error for text in expected)


@pytest.mark.parametrize("stage, text, expected", [
    ("autoencoder", "[run]\nsteps = -5\n", 'run.steps = -5: must be at least 1'),
    ("autoencoder", "[run]\nbatch_size = 0\n", 'run.batch_size = 0: must be at least 1'),
    ("autoencoder", "[run]\nlr = nan\n", 'run.lr = nan: expected a finite number'),
    ("autoencoder", "[run]\nlr = -0.001\n", 'run.lr = -0.001: must be at least 0'),
    ("autoencoder", '[run]\nsteps = "many"\n', 'run.steps = "many": expected a whole number'),
    ("autoencoder", "train_encoder = 1\n", "train_encoder = 1: expected true or false"),
    ("autoencoder", "run = 3\n", "run = 3: expected a table ([run])"),
    ("teacher", 'init = "m"\n[curriculum]\nshort_share = 1.5\n', "curriculum.short_share = 1.5: must be from 0 to 1"),
    ("expression", 'init = "m"\nsliders = ["smile", 2]\n', "sliders = ['smile', 2]: in the list: expected text in quotes"),
    ("motion-teacher", 'audio_from = "m"\n[denoiser]\nheads = 0\n', "denoiser.heads = 0: must be at least 1"),
    ("motion-distill", 'init = "m"\nema_decay = inf\n', "ema_decay = inf: expected a finite number"),
])
def test_a_recipe_value_of_the_wrong_type_or_range_is_one_line_naming_key_and_file(tmp_path, small_data, stage,
                                                                                  text, expected, capsys):
    recipe = write_recipe(tmp_path, "bad", text)
    code = main(["train", stage, "--config", str(recipe), "--data", str(small_data), "--out", str(tmp_path / "run")])
    error = capsys.readouterr().err
    assert code == 2 and error == f"avatar-desktop train: recipe {recipe}: {expected}\n"


def test_a_recipe_of_binary_garbage_is_not_valid_toml(tmp_path, small_data, capsys):
    recipe = tmp_path / "bad.toml"
    recipe.write_bytes(b"\xff\xfe\x00garbage")
    assert main(["train", "teacher", "--config", str(recipe), "--data", str(small_data), "--out",
                 str(tmp_path / "run")]) == 2
    assert f"recipe {recipe} is not valid TOML" in capsys.readouterr().err


def _recipe_fields(recipe_class: type, prefix: str = ""):
    """(dotted key, dataclass, field name) of every leaf field of a recipe, nested tables included."""
    hints = typing.get_type_hints(recipe_class)
    for item in dataclasses.fields(recipe_class):
        if dataclasses.is_dataclass(hints[item.name]):
            yield from _recipe_fields(hints[item.name], f"{prefix}{item.name}.")
        else:
            yield prefix + item.name, recipe_class, item.name


@pytest.mark.parametrize("stage", [*RECIPES, *MOTION_RECIPES])
def test_every_recipe_key_is_checked_by_its_type_and_the_shipped_recipes_pass(stage):
    """A key added to a recipe is checked at once: a value of the wrong type is named, whatever the key."""
    recipe_class = {**RECIPES, **MOTION_RECIPES}[stage]
    for key, holder, name in _recipe_fields(recipe_class):
        assert recipe_problems(holder, {name: {"a": "table"}}), f"{key}: a value of the wrong type passes"
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.toml")):
        if recipe_class in (RECIPES.get(path.stem.split("-")[-1]), MOTION_RECIPES.get(path.stem)):
            assert recipe_problems(recipe_class, tomllib.loads(path.read_text())) == [], path


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "stats.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_bytes_atomic(target, "text where bytes belong")  # fails after the temporary file was opened
    assert target.read_text() == '{"old": true}\n' and sorted(p.name for p in tmp_path.iterdir()) == ["stats.json"]
    (tmp_path / "plot.png").mkdir()
    with pytest.raises(OutputError, match=f"cannot write {tmp_path / 'plot.png'}"):
        write_png_atomic(tmp_path / "plot.png", np.zeros((8, 8, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plot.png", "stats.json"]
    write_json_atomic(target, {"new": 1})
    assert json.loads(target.read_text()) == {"new": 1}


def test_a_training_run_writes_its_loss_files_whole_and_leaves_no_temporary_files(finished_run):
    _, run = finished_run
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoint", "loss.csv", "loss.png", "model"], names
    assert cv2.imread(str(run / "loss.png")).shape == (420, 800, 3)
    assert (run / "loss.csv").read_text().splitlines()[0] == "step,loss"


def test_an_atomically_written_file_gets_the_permissions_of_a_plainly_written_one(tmp_path):
    (tmp_path / "plain.json").write_text("{}\n")
    write_json_atomic(tmp_path / "atomic.json", {})
    assert (tmp_path / "atomic.json").stat().st_mode == (tmp_path / "plain.json").stat().st_mode


def test_a_forked_worker_of_a_command_dies_on_sigterm():
    """Commands raise on SIGTERM to clean up; their forked workers (dataset synth's pool) must not inherit that, or a
    worker stuck in an inherited lock ignores its pool's terminate() and the command hangs."""
    import signal

    from avatar_desktop import cli

    previous = signal.signal(signal.SIGTERM, cli._raise_terminated)  # as main() sets it while a command runs
    try:
        read, write = os.pipe()
        child = os.fork()
        if child == 0:  # the child reports its SIGTERM disposition and leaves at once
            os.write(write, b"default" if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL else b"inherited")
            os._exit(0)
        os.close(write)
        answer = os.read(read, 32)
        os.waitpid(child, 0)
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert answer == b"default"
