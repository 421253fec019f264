"""Fuzzing of the files a user hands the app (issue 25): seeded random bytes and mutated valid files for portraits,
audio, training recipes, GUI settings, data-set manifests and model descriptions go through the loaders the
commands call. Each case ends in success or in the project's own error (AvatarError: one clear line), never in
another exception, and within a time bound."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.data.clips import load_manifest
from avatar_desktop.engine.bench import benchmark_audio, benchmark_portrait
from avatar_desktop.engine.portrait import load_portrait
from avatar_desktop.errors import AvatarError
from avatar_desktop.media import decode_audio
from avatar_desktop.models.store import read_model_config
from avatar_desktop.training.config import load_motion_recipe, load_recipe
from tests.conftest import write_wav

SECONDS_PER_CASE = 10.0
"""Upper bound of one case on a 2-core machine shared with other work (typical: milliseconds)."""
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def mutations(valid: bytes, count: int, seed: int) -> list[bytes]:
    """`count` seeded variants of `valid`: random bytes of random length, truncations, flipped bytes, inserted
    garbage, and a repeated stretch; the first is always empty."""
    rng = np.random.default_rng(seed)
    variants = [b""]
    for index in range(count - 1):
        kind = index % 5
        data = bytearray(valid)
        if kind == 0:
            data = bytearray(rng.integers(0, 256, rng.integers(1, 4096), dtype=np.uint8).tobytes())
        elif kind == 1:
            del data[rng.integers(0, len(data)):]
        elif kind == 2:
            for position in rng.integers(0, len(data), rng.integers(1, 16)):
                data[position] = rng.integers(0, 256)
        elif kind == 3:
            position = rng.integers(0, len(data))
            data[position:position] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
        else:
            start = rng.integers(0, len(data))
            data[start:start] = data[start : start + rng.integers(1, 256)] * 3
        variants.append(bytes(data))
    return variants


TOML_VALUES = ["-5", "0", "1", "nan", "inf", "-inf", '"many"', '""', "[1, \"a\"]", "[]", "{ a = 1 }", "true",
               "1e309", "-0.0", "99999999999999999999", "2024-01-01", '"../../etc/passwd"']
"""Values of every TOML type, in and out of every range, put in place of a recipe's values."""


def value_mutations(valid: str, count: int, seed: int) -> list[bytes]:
    """`count` variants of a TOML text with one to three `key = value` lines given a value from TOML_VALUES."""
    rng = np.random.default_rng(seed)
    lines = valid.splitlines()
    assignments = [index for index, line in enumerate(lines) if " = " in line and not line.startswith("#")]
    variants = []
    for _ in range(count):
        changed = list(lines)
        for index in rng.choice(assignments, rng.integers(1, 4)):
            key = changed[index].split(" = ", 1)[0]
            changed[index] = f"{key} = {TOML_VALUES[rng.integers(len(TOML_VALUES))]}"
        variants.append("\n".join(changed).encode())
    return variants


def fuzz(folder: Path, name: str, variants: list[bytes], load: Callable[[Path], object]) -> dict[str, int]:
    """Feed each variant, written to folder/name, to `load`; returns how many loaded and how many were refused.
    Any exception other than AvatarError, or a case over SECONDS_PER_CASE, fails the test naming the case."""
    outcome = {"loaded": 0, "refused": 0}
    path = folder / name
    for index, data in enumerate(variants):
        path.write_bytes(data)
        started = time.monotonic()
        try:
            load(path)
            outcome["loaded"] += 1
        except AvatarError as error:
            assert "\n" not in str(error), f"case {index}: a message of several lines: {error}"
            outcome["refused"] += 1
        except Exception as error:  # the point of the test: say which case escaped, keep its bytes
            kept = folder / f"escaped-{index}-{name}"
            shutil.copy(path, kept)
            raise AssertionError(f"case {index} of {name} ({kept}) escaped as {type(error).__name__}: {error}") from error
        elapsed = time.monotonic() - started
        assert elapsed < SECONDS_PER_CASE, f"case {index} of {name} took {elapsed:.1f} s"
    return outcome


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".webp"])
def test_fuzzed_portraits(tmp_path, suffix):
    valid = cv2.imencode(suffix, benchmark_portrait(96))[1].tobytes()
    outcome = fuzz(tmp_path, f"face{suffix}", mutations(valid, 150, seed=1), load_portrait)
    assert outcome["refused"] > 0


def test_fuzzed_audio(tmp_path):
    valid = write_wav(tmp_path / "valid.wav", benchmark_audio(0.3), 16000).read_bytes()
    outcome = fuzz(tmp_path, "speech.wav", mutations(valid, 40, seed=2), decode_audio)
    assert outcome["refused"] > 0


@pytest.mark.parametrize("recipe", ["tiny-cpu-teacher.toml", "tiny-cpu-expression.toml", "motion-teacher.toml"])
def test_fuzzed_recipes(tmp_path, recipe):
    stage = {"tiny-cpu-teacher.toml": "teacher", "tiny-cpu-expression.toml": "expression",
             "motion-teacher.toml": "motion-teacher"}[recipe]
    loader = load_motion_recipe if stage.startswith("motion") else load_recipe
    valid = (CONFIGS / recipe).read_text()
    variants = mutations(valid.encode(), 150, seed=3) + value_mutations(valid, 300, seed=3)
    outcome = fuzz(tmp_path, recipe, variants, lambda path: loader(stage, path))
    assert outcome["refused"] > 250


def test_fuzzed_settings(tmp_path):
    from avatar_desktop.gui.settings import Settings, SettingsStore

    valid = tmp_path / "valid.ini"
    store = SettingsStore(valid)
    store.save(Settings(portrait="/photos/me.png", recent_portraits=["/photos/me.png"], mirror=True,
                        expression={"smile": 0.5}, expression_presets={"happy": {"smile": 0.8}}))

    def load(path: Path) -> None:
        settings, _ = SettingsStore(path).load()
        assert isinstance(settings, Settings)  # loading never fails: defaults where the file is damaged

    fuzz(tmp_path, "settings.ini", mutations(valid.read_bytes(), 200, seed=4), load)


def test_fuzzed_manifests(tmp_path):
    valid = json.dumps({"format_version": 1, "settings": {"seed": 0},
                        "clips": [{"path": "clips/id0000_c00", "split": "train", "identity": 0}]}).encode()
    (tmp_path / "data").mkdir()
    outcome = fuzz(tmp_path / "data", "manifest.json", mutations(valid, 300, seed=5),
                   lambda path: load_manifest(path.parent))
    assert outcome["refused"] > 0


def test_fuzzed_model_descriptions(tmp_path, tiny_model_dir):
    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    outcome = fuzz(folder, "model.json", mutations((folder / "model.json").read_bytes(), 300, seed=6),
                   lambda path: read_model_config(path.parent))
    assert outcome["refused"] > 0


def test_fuzzed_portraits_through_the_render_command(tmp_path, speech_wav, capsys):
    """The same inputs through the command line: exit code 2 and one line, no traceback."""
    valid = cv2.imencode(".png", benchmark_portrait(96))[1].tobytes()
    portrait = tmp_path / "face.png"
    for index, data in enumerate(mutations(valid, 8, seed=7)[:4]):
        portrait.write_bytes(data)
        code = main(["render", "--portrait", str(portrait), "--audio", str(speech_wav), "--out",
                     str(tmp_path / "out.mp4"), "--model", "default"])
        error = capsys.readouterr().err
        assert code == 2 and error.count("\n") == 1 and "Traceback" not in error, (index, error)
