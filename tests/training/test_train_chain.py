"""The training chains run from a fresh clone: the whole default model's (scripts/train_default.sh --quick: the latent
model's stages, then the motion model's hearing its audio encoder; the result loads and renders the bundled portrait
and the astronaut) and the photo path's alone (scripts/train_photo_default.sh --quick: the shipped motion model's and
the voice-mix one's; each result loads and renders the astronaut)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import imageio_ffmpeg
import pytest
import torch
from skimage import data as skimage_data

from avatar_desktop.cli import main
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.models.store import load_model, load_motion_model
from tests.conftest import write_wav

ROOT = Path(__file__).resolve().parents[2]
# train_default.sh's stages, each with the earlier stages its recipe's model paths (init, warm_start, audio_from,
# in the recipe's order) name
DEFAULT_CHAIN = {"tiny-cpu-autoencoder": [], "tiny-cpu-audio": ["tiny-cpu-autoencoder"],
                 "tiny-cpu-teacher": ["tiny-cpu-audio"],
                 "tiny-cpu-teacher-residual": ["tiny-cpu-audio", "tiny-cpu-teacher"],
                 "tiny-cpu-distill": ["tiny-cpu-teacher-residual"], "tiny-cpu-decoder": ["tiny-cpu-distill"],
                 "tiny-cpu-decoder-blur": ["tiny-cpu-decoder"], "motion-teacher": ["tiny-cpu-decoder-blur"],
                 "motion-distill": ["motion-teacher"]}


def run_chain(script: str, *args: str) -> subprocess.CompletedProcess:
    """scripts/SCRIPT run with this interpreter; the finished process (stdout and stderr as text)."""
    return subprocess.run(["bash", str(ROOT / "scripts" / script), *args], env=os.environ | {"PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=900)


def render_frames(tmp_path: Path, portrait: Path, model_dir: Path) -> tuple[tuple[int, int], int]:
    """`render` of PORTRAIT saying 1 s of speech with the model in MODEL_DIR: (frame size, frame count)."""
    audio = write_wav(tmp_path / "speech.wav", benchmark_audio(1.0), 16000)
    video = tmp_path / f"{portrait.stem}.mp4"
    assert main(["render", "--portrait", str(portrait), "--audio", str(audio), "--out", str(video),
                 "--model", str(model_dir)]) == 0
    reader = imageio_ffmpeg.read_frames(str(video))
    meta = next(reader)  # the reader yields the video's metadata first, then the frames
    return meta["size"], sum(1 for _ in reader)


def astronaut_png(tmp_path: Path) -> Path:
    """The astronaut photo (skimage's, a face about 94 px wide in 512 x 512) written as a PNG."""
    path = tmp_path / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def test_a_full_run_copies_each_recipe_with_only_its_model_paths_set(tmp_path):
    """scripts/lib.sh's `recipe` without --quick: the first stage's recipe has no path to set (sed once read the
    recipe's own path as its script there, and the full chain stopped before its first stage)."""
    script = ('root="$1"; out="$2"; quick=0; source "$root/scripts/lib.sh"; '
              'recipe tiny-cpu-autoencoder; recipe tiny-cpu-audio init "$out/tiny-cpu-autoencoder/model"')
    subprocess.run(["bash", "-euo", "pipefail", "-c", script, "bash", str(ROOT), str(tmp_path)], check=True, timeout=60)
    first = (tmp_path / "recipes" / "tiny-cpu-autoencoder.toml").read_text()
    assert first == (ROOT / "configs" / "tiny-cpu-autoencoder.toml").read_text()
    second = (tmp_path / "recipes" / "tiny-cpu-audio.toml").read_text().splitlines()
    original = (ROOT / "configs" / "tiny-cpu-audio.toml").read_text().splitlines()
    changed = [(was, now) for was, now in zip(original, second) if was != now]
    assert len(second) == len(original)
    assert changed == [(next(line for line in original if line.startswith("init = ")),
                        f'init = "{tmp_path}/tiny-cpu-autoencoder/model"')]


def test_a_stopped_data_set_is_built_again_and_a_finished_one_is_not(tmp_path):
    """scripts/lib.sh's data_complete: `dataset synth` writes manifest.json as it starts ("complete": false), so a
    chain stopped while building its data must go on building it, not train on a part."""
    for name, manifest in (("finished", '{"complete": true, "clips": []}'), ("stopped", '{"complete": false}'),
                           ("empty", None)):
        (tmp_path / name).mkdir()
        if manifest is not None:
            (tmp_path / name / "manifest.json").write_text(json.dumps(json.loads(manifest), indent=2))
    script = 'source "$1/scripts/lib.sh"; for d in finished stopped empty; do data_complete "$2/$d" && echo "$d"; done'
    done = subprocess.run(["bash", "-c", script, "bash", str(ROOT), str(tmp_path)], capture_output=True, text=True,
                          timeout=60).stdout.split()
    assert done == ["finished"]


@pytest.mark.slow
def test_quick_default_chain_makes_a_model_that_renders_a_portrait_and_a_photo(tmp_path):
    out = tmp_path / "runs"
    done = run_chain("train_default.sh", "--quick", str(tmp_path / "data"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    model_dir = out / "default"
    assert done.stdout.strip().endswith(f"model: {model_dir}")
    for data in ("latent", "motion"):
        assert (tmp_path / "data" / data / "manifest.json").is_file()
    assert sorted(p.stem for p in (out / "recipes").iterdir()) == sorted(DEFAULT_CHAIN)
    for stage, starts in DEFAULT_CHAIN.items():
        recipe = (out / "recipes" / f"{stage}.toml").read_text()
        assert "steps = 4" in recipe and "previous-default" not in recipe
        paths = [line.split(" = ")[1].strip('"') for line in recipe.splitlines()
                 if line.startswith(("init =", "warm_start =", "audio_from ="))]
        assert paths == [str(out / start / "model") for start in starts], stage
        assert (out / stage / "loss.csv").is_file()

    latent = load_model(model_dir)
    assert latent.config.sampling.parameterization == "consistency" and latent.config.sampling.steps == 1
    motion = load_motion_model(model_dir / "motion")
    assert motion.config.sampling.parameterization == "consistency" and motion.config.sampling.steps == 1
    chain_encoder = latent.audio_encoder.state_dict()
    shipped_encoder = load_model(ROOT / "models/default").audio_encoder.state_dict()
    for name, weight in motion.audio_encoder.state_dict().items():  # the motion model hears this chain's encoder
        assert torch.equal(weight, chain_encoder[name])
    assert not all(torch.equal(chain_encoder[name], weight) for name, weight in shipped_encoder.items())

    assert render_frames(tmp_path, ROOT / "assets/portrait_1.png", model_dir) == ((256, 256), 25)
    assert render_frames(tmp_path, astronaut_png(tmp_path), model_dir / "motion") == ((512, 512), 25)


@pytest.mark.slow
@pytest.mark.parametrize("chain, stages", [((), ("motion-teacher", "motion-distill")),
                                           (("--voice-mix",), ("motion-voices-audio", "motion-voices-teacher",
                                                               "motion-voices-distill"))])
def test_quick_chain_makes_a_model_that_renders_a_photo(tmp_path, chain, stages):
    out = tmp_path / "runs"
    done = run_chain("train_photo_default.sh", "--quick", *chain, str(tmp_path / "data"), str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    model_dir = out / stages[-1] / "model"
    assert done.stdout.strip().endswith(f"model: {model_dir}")
    model = load_motion_model(model_dir)
    assert model.config.sampling.parameterization == "consistency" and model.config.sampling.steps == 1
    assert sorted(p.stem for p in (out / "recipes").iterdir()) == sorted(stages)
    for recipe in stages:
        assert "steps = 4" in (out / "recipes" / f"{recipe}.toml").read_text()
        assert (out / recipe / "loss.csv").is_file()
    assert render_frames(tmp_path, astronaut_png(tmp_path), model_dir) == ((512, 512), 25)
