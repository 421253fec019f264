"""The motion stages (training/motion.py) on a tiny `dataset synth` set: batches, a teacher, its student, resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from avatar_desktop.cli import main
from avatar_desktop.config import State
from avatar_desktop.engine.motion_stream import MotionStreamer
from avatar_desktop.models.motion import build_motion_model
from avatar_desktop.models.store import load_motion_model, save_motion_model
from avatar_desktop.motion_code import MOTION_DIM
from avatar_desktop.training.motion import load_motion_data, sample_motion_batch
from tests.conftest import read_losses, write_recipe

TINY_DENOISER = "[denoiser]\nwidth = 32\nlayers = 1\nheads = 2\ncontext_frames = 4\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """3 synthetic characters x 1 clip x 4 s at 64x64 (at least one train and one held-out clip)."""
    out = tmp_path_factory.mktemp("motion-data") / "tiny"
    assert main(["dataset", "synth", "--out", str(out), "--identities", "3", "--clips-per-identity", "1",
                 "--seconds", "4", "--size", "64", "--seed", "0", "--no-progress"]) == 0
    return out


@pytest.fixture(scope="module")
def audio_model(tmp_path_factory) -> Path:
    """A tiny motion model folder whose (random, seeded) audio encoder the teacher copies."""
    return save_motion_model(build_motion_model(seed=5), tmp_path_factory.mktemp("audio") / "audio",
                             provenance={"made_by": "the audio_model fixture"})


def _teacher_recipe(folder: Path, audio_model: Path, steps: int, save_every: int) -> Path:
    return write_recipe(folder, f"teacher{steps}", f'audio_from = "{audio_model}"\nteacher_steps = 3\n{TINY_DENOISER}'
                   "[curriculum]\nmax_frames = 16\nfixed_until = 5\n"
                   f"[run]\nsteps = {steps}\nbatch_size = 8\nlr = 2e-3\nwarmup_steps = 1\nsave_every = {save_every}\n")


def _train(stage: str, config: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["train", stage, "--config", str(config), "--data", str(data), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def teacher_run(dataset, audio_model, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("teacher")
    assert _train("motion-teacher", _teacher_recipe(folder, audio_model, 40, 20), dataset, folder / "run") == 0
    return folder / "run"


def test_batches_stay_inside_a_clip_with_neutral_context_before_its_start(dataset, audio_model, tmp_path):
    model = build_motion_model(seed=5, code_mean=(0.1,) * MOTION_DIM, code_std=(0.5,) * MOTION_DIM)
    data = load_motion_data(dataset, model, tmp_path)
    assert list(tmp_path.glob("audio_tokens_train_*.npz"))  # cached for the next run
    generator = torch.Generator().manual_seed(0)
    batch = sample_motion_batch(data, model, 256, 16, generator, context_noise_max=0.0, context_dropout=0.0)
    assert batch["x0"].shape == (256, 16, MOTION_DIM) and batch["context"].shape == (256, 4, MOTION_DIM)
    assert batch["audio"].shape == (256, 16, 2, 16) and batch["label"].shape == (256, 16)
    first = batch["first"]
    assert (first >= data.clip_start[first]).all() and (first + 16 <= data.clip_end[first]).all()
    torch.testing.assert_close(batch["x0"], model.normalise(data.residual[first[:, None] + torch.arange(16)]))
    neutral = model.normalise(torch.zeros(MOTION_DIM))  # -0.2 everywhere
    at_start = first == data.clip_start[first]
    assert at_start.any() and (batch["context"][at_start] == neutral).all()
    inside = first - 4 >= data.clip_start[first]
    torch.testing.assert_close(batch["context"][inside],
                               model.normalise(data.residual[first[inside][:, None] + torch.arange(-4, 0)]))
    dropped = sample_motion_batch(data, model, 64, 4, generator, context_noise_max=0.0, context_dropout=1.0)
    assert (dropped["context"][:, 0] == neutral).all()  # dropout always reaches the first context frame


def test_augmented_copies_give_each_chunk_one_version_of_its_audio(dataset, tmp_path):
    """Two augmented copies: tokens (3, F, N, A), the copies differ from the clean audio's, the same copies come back
    from the cache and from a fresh computation, and a batch mixes the versions."""
    from avatar_desktop.audio.augment import AugmentConfig
    from avatar_desktop.errors import AvatarError

    model = build_motion_model(seed=5)
    augment = AugmentConfig(probability=1.0, noise=1.0, snr_db=(0.0, 5.0))
    data = load_motion_data(dataset, model, tmp_path / "a", augment=augment, copies=2)
    clean = load_motion_data(dataset, model, tmp_path / "b")
    assert data.tokens.shape == (3, *clean.tokens.shape[1:]) and data.tokens.dtype == torch.float16
    torch.testing.assert_close(data.tokens[0], clean.tokens[0])
    assert (data.tokens[1] - data.tokens[0]).abs().float().mean() > 1e-3 and not torch.equal(data.tokens[1], data.tokens[2])
    torch.testing.assert_close(load_motion_data(dataset, model, tmp_path / "a", augment=augment, copies=2).tokens,
                               data.tokens)  # from the cache
    torch.testing.assert_close(load_motion_data(dataset, model, tmp_path / "c", augment=augment, copies=2).tokens,
                               data.tokens)  # seeded by clip and copy: a rerun makes the same copies
    batch = sample_motion_batch(data, model, 64, 4, torch.Generator().manual_seed(0), 0.0, 0.0)
    heard = [min(range(3), key=lambda v: (data.tokens[v, first : first + 4].float() - audio).abs().sum())
             for first, audio in zip(batch["first"].tolist(), batch["audio"])]
    assert set(heard) == {0, 1, 2}
    with pytest.raises(AvatarError, match="augmented_copies = 2 needs an \\[augment\\] table"):
        load_motion_data(dataset, model, tmp_path / "d", copies=2)


def test_the_teacher_learns_and_its_folder_loads_into_the_streamer(teacher_run):
    losses = read_losses(teacher_run)
    assert len(losses) == 40 and np.mean(losses[-10:]) < np.mean(losses[:10])
    model = load_motion_model(teacher_run / "model")
    assert model.config.sampling.parameterization == "edm" and model.config.sampling.teacher_steps == 3
    assert all(s > 0 for s in model.config.code_std) and len(model.config.code_mean) == MOTION_DIM
    streamer = MotionStreamer(model)
    streamer.prepare()
    chunk = streamer.step(np.zeros(640 * 3, np.float32), State.IDLE)
    assert chunk is not None and chunk.codes.shape == (1, MOTION_DIM)


def test_a_teacher_resumes_exactly(dataset, audio_model, teacher_run, tmp_path):
    short = _teacher_recipe(tmp_path, audio_model, 20, 20)
    assert _train("motion-teacher", short, dataset, tmp_path / "run") == 0
    full = _teacher_recipe(tmp_path, audio_model, 40, 20)
    assert _train("motion-teacher", full, dataset, tmp_path / "run") == 2  # refuses to overwrite a run
    assert _train("motion-teacher", full, dataset, tmp_path / "run", "--resume") == 0
    np.testing.assert_allclose(read_losses(tmp_path / "run"), read_losses(teacher_run), rtol=1e-5)


def test_the_student_distils_without_the_sliders_and_makes_codes(dataset, teacher_run, tmp_path):
    recipe = write_recipe(tmp_path, "distill", f'init = "{teacher_run / "model"}"\nstudent_steps = 2\n'
                     "[curriculum]\nmax_frames = 8\n"
                     "[run]\nsteps = 6\nbatch_size = 4\nwarmup_steps = 1\nsave_every = 3\n")
    assert _train("motion-distill", recipe, dataset, tmp_path / "run") == 0
    student = load_motion_model(tmp_path / "run" / "model")
    sampling = student.config.sampling
    assert (sampling.parameterization, sampling.sampler, sampling.steps) == ("consistency", "consistency", 2)
    assert not student.config.denoiser.slider_condition and student.denoiser.slider_in is None
    assert (tmp_path / "run" / "loss.png").is_file()
    provenance = json.loads((tmp_path / "run" / "model" / "model.json").read_text())["provenance"]
    assert provenance["stage"] == "motion-distill" and provenance["init"]["stage"] == "motion-teacher"
    assert provenance["init"]["init"] == {"made_by": "the audio_model fixture"}  # where the teacher's audio encoder came from
    streamer = MotionStreamer(student)
    streamer.prepare()
    assert streamer.step(np.zeros(640 * 3, np.float32)).codes.shape == (1, MOTION_DIM)


def test_a_teacher_is_needed_to_distil_and_recipes_name_what_is_missing(dataset, audio_model, tmp_path, capsys):
    recipe = write_recipe(tmp_path, "d", f'init = "{audio_model}"\n[run]\nsteps = 2\n')
    assert _train("motion-distill", recipe, dataset, tmp_path / "run") == 2
    assert "is not a teacher" in capsys.readouterr().err
    empty = write_recipe(tmp_path, "t", "[run]\nsteps = 2\n")
    assert _train("motion-teacher", empty, dataset, tmp_path / "run2") == 2
    assert "set `audio_from` to a model folder" in capsys.readouterr().err
    bad = write_recipe(tmp_path, "b", f'audio_from = "{audio_model}"\nwarp = 1\n')
    assert _train("motion-teacher", bad, dataset, tmp_path / "run3") == 2
    assert "unknown key(s) ['warp']" in capsys.readouterr().err
