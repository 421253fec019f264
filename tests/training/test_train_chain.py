"""The photo path's training chains run from a fresh clone (scripts/train_photo_default.sh --quick): the shipped
model's (espeak-ng data, teacher, one-step student) and the voice-mix one's (voice-mix data, audio encoder through the
augmentation, teacher, student); each result loads and renders the astronaut."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import imageio_ffmpeg
import pytest
from skimage import data as skimage_data

from avatar_desktop.cli import main
from avatar_desktop.engine.bench import benchmark_audio
from avatar_desktop.models.store import load_motion_model
from tests.conftest import write_wav

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.parametrize("chain, stages", [((), ("motion-teacher", "motion-distill")),
                                           (("--voice-mix",), ("motion-voices-audio", "motion-voices-teacher",
                                                               "motion-voices-distill"))])
def test_quick_chain_makes_a_model_that_renders_a_photo(tmp_path, chain, stages):
    out = tmp_path / "runs"
    done = subprocess.run(["bash", str(ROOT / "scripts/train_photo_default.sh"), "--quick", *chain,
                           str(tmp_path / "data"), str(out)], env=os.environ | {"PYTHON": sys.executable},
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    model_dir = out / stages[-1] / "model"
    assert done.stdout.strip().endswith(f"model: {model_dir}")
    model = load_motion_model(model_dir)
    assert model.config.sampling.parameterization == "consistency" and model.config.sampling.steps == 1
    assert sorted(p.stem for p in (out / "recipes").iterdir()) == sorted(stages)
    for recipe in stages:
        assert "steps = 4" in (out / "recipes" / f"{recipe}.toml").read_text()
        assert (out / recipe / "loss.csv").is_file()
    portrait = tmp_path / "astronaut.png"
    cv2.imwrite(str(portrait), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    audio = write_wav(tmp_path / "speech.wav", benchmark_audio(1.0), 16000)
    video = tmp_path / "out.mp4"
    assert main(["render", "--portrait", str(portrait), "--audio", str(audio), "--out", str(video),
                 "--model", str(model_dir)]) == 0
    reader = imageio_ffmpeg.read_frames(str(video))
    assert next(reader)["size"] == (512, 512) and sum(1 for _ in reader) == 25
