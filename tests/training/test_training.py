"""Training stages on a tiny synthetic data set: losses fall, runs resume exactly, DDP matches one process."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from avatar_desktop.cli import main
from avatar_desktop.config import AudioConfig, EngineConfig
from avatar_desktop.data.clips import load_clip, load_manifest
from avatar_desktop.engine.bench import benchmark_audio, benchmark_portrait
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.errors import AvatarError
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.presets import build_model, tiny_test_config
from avatar_desktop.models.store import load_model, save_model
from avatar_desktop.training.common import chunk_length
from avatar_desktop.training.config import CurriculumConfig, RunConfig
from avatar_desktop.training.data import (CACHE_TENSORS, CachedClip, autoencoder_key, cache_latents, images_to_tensor, mouth_mask,
                                          sample_chunks, training_clips)
from avatar_desktop.training.expression import encode_batch, record_clips, sample_expression_chunks
from avatar_desktop.training.loop import learning_rate
from avatar_desktop.training.stages.autoencoder import blur_latents
from avatar_desktop.training.stages.expression import ExpressionObjective, expression_student
from avatar_desktop.training.stages.teacher import warm_start
from tests.conftest import read_losses, stream_chunks, write_recipe

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """3 synthetic characters x 1 clip x 2 s at 64x64 (2 train clips, 1 held out), made by `dataset synth`."""
    out = tmp_path_factory.mktemp("data") / "tiny"
    assert main(["dataset", "synth", "--out", str(out), "--identities", "3", "--clips-per-identity", "1",
                 "--seconds", "2", "--size", "64", "--seed", "0", "--no-progress"]) == 0
    return out


def _train(stage: str, config: Path, data: Path, out: Path, *extra: str) -> int:
    return main(["train", stage, "--config", str(config), "--data", str(data), "--out", str(out), *extra])


@pytest.fixture(scope="module")
def autoencoder_run(dataset, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ae")
    recipe = write_recipe(folder, "ae", 'preset = "tiny-test"\npool_clips = 2\n[run]\nsteps = 40\nbatch_size = 4\nlr = 2e-3\n'
                                   'warmup_steps = 1\nsave_every = 20\n')
    assert _train("autoencoder", recipe, dataset, folder / "run") == 0
    return folder / "run"


def _teacher_recipe(folder: Path, init: Path, steps: int, save_every: int, batch: int = 4) -> Path:
    return write_recipe(folder, f"teacher{steps}", f'init = "{init}"\n[curriculum]\nmax_frames = 4\nfixed_until = 2\n'
                   f"[run]\nsteps = {steps}\nbatch_size = {batch}\nwarmup_steps = 1\nsave_every = {save_every}\nseed = 3\n")


def test_autoencoder_loss_falls_and_the_model_folder_loads(autoencoder_run):
    losses = read_losses(autoencoder_run)
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert (autoencoder_run / "loss.png").is_file()
    model = load_model(autoencoder_run / "model")
    assert model.config.preset == "tiny-test"


def test_teacher_then_student_run_in_the_engine(autoencoder_run, dataset, tmp_path):
    teacher_recipe = _teacher_recipe(tmp_path, autoencoder_run / "model", steps=4, save_every=4)
    assert _train("teacher", teacher_recipe, dataset, tmp_path / "teacher") == 0
    teacher = load_model(tmp_path / "teacher" / "model")
    assert teacher.config.sampling.parameterization == "edm"
    distill = write_recipe(tmp_path, "distill", f'init = "{tmp_path / "teacher" / "model"}"\nstudent_steps = 3\n'
                      "[curriculum]\nmax_frames = 4\n[run]\nsteps = 3\nbatch_size = 2\nsave_every = 3\n")
    assert _train("distill", distill, dataset, tmp_path / "student") == 0
    student = load_model(tmp_path / "student" / "model")
    assert (student.config.sampling.parameterization, student.config.sampling.steps) == ("consistency", 3)
    generator = StreamingGenerator(student, EngineConfig())
    generator.prepare(benchmark_portrait(96))
    generator.push_audio(benchmark_audio(0.4))
    frames = 0
    while (chunk := generator.step(None, end_of_stream=True)) is not None:
        frames += len(chunk.frames)
    assert frames == 10 and generator.steps == 3


def test_a_teacher_trains_further_with_mouth_weight_and_distils_with_guidance(autoencoder_run, dataset, tmp_path):
    """init = a teacher continues that teacher (lr 0 keeps its weights exactly); the mouth weight raises the loss;
    distillation with audio guidance runs and gives a student of the asked step count."""
    assert _train("teacher", _teacher_recipe(tmp_path, autoencoder_run / "model", steps=2, save_every=2), dataset,
                  tmp_path / "teacher") == 0
    teacher = tmp_path / "teacher" / "model"
    losses = {}
    for weight in (0, 20):
        recipe = write_recipe(tmp_path, f"more{weight}", f'init = "{teacher}"\nmouth_weight = {weight}\n[curriculum]\n'
                         "max_frames = 4\n[run]\nsteps = 2\nbatch_size = 4\nlr = 0.0\nsave_every = 2\nseed = 3\n")
        assert _train("teacher", recipe, dataset, tmp_path / f"more{weight}") == 0
        losses[weight] = read_losses(tmp_path / f"more{weight}")
    before = load_model(teacher).denoiser.state_dict()
    after = load_model(tmp_path / "more20" / "model").denoiser.state_dict()
    for key in before:
        torch.testing.assert_close(after[key], before[key])
    assert all(weighted > plain for weighted, plain in zip(losses[20], losses[0]))
    distill = write_recipe(tmp_path, "distill", f'init = "{teacher}"\nstudent_steps = 1\naudio_guidance = 2.0\n'
                      "mouth_weight = 5.0\n[curriculum]\nmax_frames = 4\n[chunks]\nsteady = 3\n[run]\nsteps = 2\n"
                      "batch_size = 2\nsave_every = 2\n")
    assert _train("distill", distill, dataset, tmp_path / "student") == 0
    assert np.isfinite(read_losses(tmp_path / "student")).all()
    student = load_model(tmp_path / "student" / "model")
    assert (student.config.sampling.steps, student.config.sampling.audio_guidance) == (1, 1.0)
    assert (student.config.chunks.first, student.config.chunks.steady) == (1, 3)


def test_a_reference_residual_teacher_starts_at_the_portrait_and_its_student_keeps_the_setting(
        autoencoder_run, dataset, tmp_path, capsys):
    """reference_residual = true with a warm start: the output layer starts at zero (the first estimate is the
    reference), the rest is copied; the student distilled from it is residual too and runs in the engine; training
    a residual teacher further as a plain one is refused."""
    assert _train("teacher", _teacher_recipe(tmp_path, autoencoder_run / "model", steps=2, save_every=2), dataset,
                  tmp_path / "plain") == 0
    recipe = write_recipe(tmp_path, "residual", f'init = "{autoencoder_run / "model"}"\nwarm_start = '
                     f'"{tmp_path / "plain" / "model"}"\nreference_residual = true\n[curriculum]\nmax_frames = 4\n'
                     "[run]\nsteps = 2\nbatch_size = 2\nlr = 0.0\nsave_every = 2\n")
    assert _train("teacher", recipe, dataset, tmp_path / "residual") == 0
    teacher = load_model(tmp_path / "residual" / "model")
    plain = load_model(tmp_path / "plain" / "model")
    assert teacher.config.sampling.reference_residual
    assert not teacher.denoiser.conv_out.weight.any() and not teacher.denoiser.conv_out.bias.any()
    torch.testing.assert_close(teacher.denoiser.conv_in.weight, plain.denoiser.conv_in.weight, rtol=0, atol=0)
    distill = write_recipe(tmp_path, "distill", f'init = "{tmp_path / "residual" / "model"}"\nstudent_steps = 1\n'
                      "[curriculum]\nmax_frames = 4\n[run]\nsteps = 2\nbatch_size = 2\nsave_every = 2\n")
    assert _train("distill", distill, dataset, tmp_path / "student") == 0
    student = load_model(tmp_path / "student" / "model")
    assert student.config.sampling.reference_residual
    generator = StreamingGenerator(student, EngineConfig())
    generator.prepare(benchmark_portrait(96))
    generator.push_audio(benchmark_audio(0.2))
    assert generator.step(None, end_of_stream=True) is not None
    further = write_recipe(tmp_path, "further", f'init = "{tmp_path / "residual" / "model"}"\n[curriculum]\nmax_frames = 4\n'
                      "[run]\nsteps = 1\nbatch_size = 2\n")
    assert _train("teacher", further, dataset, tmp_path / "further") == 2
    assert "a teacher trained further keeps it" in capsys.readouterr().err


def test_the_audio_stage_learns_the_mouth_and_a_teacher_starts_from_it_frozen(autoencoder_run, dataset, tmp_path):
    """The audio stage's loss falls and it scores its held-out clips; a teacher and a student with
    `freeze_audio_encoder` keep that encoder exactly while their denoisers train; `warm_start` copies another model's
    denoiser; each stage records the provenance of the model it started from."""
    recipe = write_recipe(tmp_path, "audio", f'init = "{autoencoder_run / "model"}"\nframes = 4\n[run]\nsteps = 60\n'
                     "batch_size = 8\nlr = 3e-3\nwarmup_steps = 1\nsave_every = 30\n")
    assert _train("audio", recipe, dataset, tmp_path / "audio") == 0
    losses = read_losses(tmp_path / "audio")
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:5])
    report = json.loads((tmp_path / "audio" / "mouth_prediction.json").read_text())
    assert report["split"] == "heldout" and report["clips"] == 1
    assert set(report["pearson_r"]) == {"mouth_open", "mouth_width", "mouth_rounding", "teeth"}
    audio_model = load_model(tmp_path / "audio" / "model")
    donor = build_model("tiny-test", seed=7)
    save_model(donor, tmp_path / "donor")
    teacher_recipe = write_recipe(tmp_path, "teacher", f'init = "{tmp_path / "audio" / "model"}"\nwarm_start = '
                             f'"{tmp_path / "donor"}"\nfreeze_audio_encoder = true\n[curriculum]\nmax_frames = 4\n'
                             "[run]\nsteps = 3\nbatch_size = 2\nlr = 1e-3\nwarmup_steps = 1\nsave_every = 3\n")
    assert _train("teacher", teacher_recipe, dataset, tmp_path / "teacher") == 0
    teacher = load_model(tmp_path / "teacher" / "model")
    for key, value in audio_model.audio_encoder.state_dict().items():
        torch.testing.assert_close(teacher.audio_encoder.state_dict()[key], value, rtol=0, atol=0)
    moved = [key for key, value in donor.denoiser.state_dict().items()
             if not torch.equal(teacher.denoiser.state_dict()[key], value)]
    assert moved, "the warm-started denoiser should train"
    assert max((teacher.denoiser.state_dict()[k] - v).abs().max() for k, v in donor.denoiser.state_dict().items()) < 0.05
    distill = write_recipe(tmp_path, "distill", f'init = "{tmp_path / "teacher" / "model"}"\nfreeze_audio_encoder = true\n'
                      "[curriculum]\nmax_frames = 4\n[run]\nsteps = 2\nbatch_size = 2\nlr = 1e-3\nsave_every = 2\n")
    assert _train("distill", distill, dataset, tmp_path / "student") == 0
    student = load_model(tmp_path / "student" / "model")
    for key, value in audio_model.audio_encoder.state_dict().items():
        torch.testing.assert_close(student.audio_encoder.state_dict()[key], value, rtol=0, atol=0)
    assert _lineage(tmp_path / "student" / "model") == ["distill", "teacher", "audio", "autoencoder"]


def _lineage(folder: Path) -> list[str]:
    """The stages a model folder's provenance names, its own first, then each "init" nested in it: the chain of
    models it was started from (the last one from fresh weights, with no "init")."""
    stages = []
    provenance = json.loads((folder / "model.json").read_text())["provenance"]
    while provenance:
        stages.append(provenance["stage"])
        provenance = provenance.get("init")
    return stages


def _expression_chunks(dataset: Path, model, change_share: float, seed: int = 0, batch: int = 6, step: float = 0.2,
                       taught=None):
    config = model.config
    clips = record_clips(dataset, model.autoencoder)
    sample = sample_expression_chunks(clips, batch, 3, config.denoiser.num_motion_frames, config.audio, config.fps,
                                      torch.Generator().manual_seed(seed), change_share, step, 64,
                                      model.latent_shape[-1], taught)
    return clips, sample


def test_expression_chunks_leave_the_sliders_not_taught_as_the_clip_has_them(dataset):
    """Teaching smile only: every other slider of every chunk, held, changed or shown by the motion frames, is the
    clip's own at that frame, while smile is redrawn or moved in some chunks."""
    model = build_model("tiny-test", seed=0)
    clips, sample = _expression_chunks(dataset, model, change_share=0.9, batch=8,
                                       taught=np.array([True, False, False, False, False]))
    smile_changed = 0
    for b in range(8):
        record = clips[int(sample["clip"][b])].record["expression"]
        start = int(sample["start"][b])
        own = torch.from_numpy(record[start])
        shown = torch.from_numpy(record[start - 1]) if sample["natural"][b] else own
        for key, expected in (("held_expression", own), ("changed_expression", own), ("motion_expression", shown)):
            torch.testing.assert_close(sample[key][b, 1:], expected[1:], rtol=0, atol=0)
        smile_changed += bool(sample["changed_expression"][b, 0] != own[0])
    assert smile_changed >= 3


def test_expression_chunks_hold_the_sliders_the_motion_frames_show_and_move_some_on(dataset):
    """Natural chunks: the stored motion frames, then the stored frame with the clip's own sliders held. Redrawn
    chunks: the motion frames and the held chunk share new sliders. The changed version moves some sliders on by
    `step` per frame (3 frames: by 0.6 at the last) and only then differs."""
    model = build_model("tiny-test", seed=0)
    clips, sample = _expression_chunks(dataset, model, change_share=0.6)
    frames = {path.name: load_clip(path).frames for path in training_clips(dataset)}
    names = [path.name for path in training_clips(dataset)]
    assert sample["held_frames"].shape == sample["changed_frames"].shape == (6, 3, 3, 64, 64)
    assert sample["motion"].shape == (6, 2, 3, 64, 64) and sample["windows"].shape[:2] == (6, 3)
    assert sample["held_mouth"].shape == (6, 3, 1, 8, 8) and (sample["held_mouth"].sum(dim=(2, 3, 4)) > 0).all()
    assert sample["natural"].any() and not sample["natural"].all()
    moved_chunks = 0
    for b in range(6):
        clip, start = int(sample["clip"][b]), int(sample["start"][b])
        record = clips[clip].record["expression"]
        held = sample["held_expression"][b]
        assert start >= 2 and held.abs().max() <= 1
        if sample["natural"][b]:
            stored = images_to_tensor(frames[names[clip]])
            torch.testing.assert_close(sample["motion"][b], stored[start - 2 : start], rtol=0, atol=0)
            torch.testing.assert_close(sample["held_frames"][b, 0], stored[start], rtol=0, atol=0)
            torch.testing.assert_close(held, torch.from_numpy(record[start]), rtol=0, atol=0)
            shown = torch.from_numpy(record[start - 1])
            torch.testing.assert_close(sample["motion_expression"][b], shown, rtol=0, atol=0)
        else:
            torch.testing.assert_close(sample["motion_expression"][b], held, rtol=0, atol=0)
        moved = sample["changed_expression"][b] - held
        free = (held + 0.6 <= 1) & (held - 0.6 >= -1)  # sliders that cannot hit an end of their range
        assert all(torch.isclose(m.abs(), torch.tensor(0.6)) or m == 0 for m in moved[free])
        if moved.abs().max() > 0:
            moved_chunks += 1
            assert not torch.equal(sample["changed_frames"][b], sample["held_frames"][b])
        else:
            torch.testing.assert_close(sample["changed_frames"][b], sample["held_frames"][b], rtol=0, atol=0)
    assert moved_chunks >= 3
    _, unchanged = _expression_chunks(dataset, model, change_share=0.0)
    torch.testing.assert_close(unchanged["changed_frames"], unchanged["held_frames"], rtol=0, atol=0)
    encoded = encode_batch(model.autoencoder, sample)
    assert encoded["held_x0"].shape == (6, 3, 4, 8, 8) and encoded["motion"].shape == (6, 2, 4, 8, 8)


def test_expression_chunks_refuse_clips_of_real_videos(dataset, tmp_path):
    """A clip from `dataset videos` cannot be drawn again with other sliders: the stage says what data it needs."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("cache"))
    for meta_path in data.glob("clips/*/clip.json"):
        meta = json.loads(meta_path.read_text())
        del meta["identity_seed"]
        meta_path.write_text(json.dumps({**meta, "source": "video"}))
    with pytest.raises(AvatarError, match="needs data made by `avatar-desktop dataset synth`"):
        record_clips(data, build_model("tiny-test", seed=0).autoencoder)


def test_the_expression_objective_anchors_the_mouth_and_learns_the_slider_difference(dataset):
    """A student that still is its anchor: with the whole frame counted as mouth its own terms vanish, and only the
    difference term (changed minus held renderings) is left, which grows with difference_weight."""
    model = build_model("tiny-test", seed=0).eval()
    anchor = build_model("tiny-test", seed=0).eval()
    _, sample = _expression_chunks(dataset, model, change_share=0.6, seed=1)
    batch = encode_batch(model.autoencoder, sample)
    generator = torch.Generator().manual_seed(2)
    batch["noise"] = torch.randn(batch["held_x0"].shape, generator=generator)
    batch["motion_sigma"] = torch.full((6,), 0.3)
    batch["motion_noise"] = torch.randn(batch["motion"].shape, generator=generator)
    everywhere = {**batch, "held_mouth": torch.ones_like(batch["held_mouth"]),
                  "changed_mouth": torch.ones_like(batch["changed_mouth"])}
    with torch.no_grad():
        assert float(ExpressionObjective(model, anchor, difference_weight=0.0)(everywhere)) < 1e-10
        difference = float(ExpressionObjective(model, anchor, difference_weight=1.0)(everywhere))
        assert difference > 1e-6
        assert float(ExpressionObjective(model, anchor, difference_weight=3.0)(everywhere)) == pytest.approx(3 * difference)
        assert float(ExpressionObjective(model, anchor, difference_weight=0.0)(batch)) > 1e-4  # outside the mouth


def test_the_expression_stage_starts_from_a_student_that_reads_the_slider_change():
    """The widened student reads e - m: sliders held since the motion frames act as the old student's neutral
    sliders, sliders that just moved from 0 as the old student's sliders."""
    old = build_model("tiny-test", seed=0).eval()
    torch.nn.init.normal_(old.denoiser.expression_embedding[0].weight)  # sliders that do something
    widened = expression_student(old, slider_speed=2.0)
    assert widened.config.sampling.slider_speed == 2.0 and old.config.sampling.slider_speed is None
    assert widened.config.sampling.warped_sliders == ()  # taught every slider: the denoiser gets them all
    channels, h, w = old.latent_shape
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1, 2, channels, h, w, generator=generator)
    base = dict(reference=torch.randn(1, channels, h, w, generator=generator),
                motion=torch.randn(1, 2, channels, h, w, generator=generator),
                audio=torch.randn(1, 2, old.config.audio.tokens_per_frame, old.config.audio.token_dim,
                                  generator=generator),
                label=torch.tensor([0]))
    sliders, neutral = torch.tensor([[0.9, -0.4, 0.3, 0.7, -1.0]]), torch.zeros(1, 5)
    with torch.no_grad():
        def denoise(model, expression, motion_expression=None):
            cond = DenoiserInputs(**base, expression=expression, motion_expression=motion_expression)
            return model.denoise(x, torch.tensor(2.0), cond)
        assert not torch.allclose(denoise(old, sliders), denoise(old, neutral))
        torch.testing.assert_close(denoise(widened, sliders, sliders), denoise(old, neutral))
        torch.testing.assert_close(denoise(widened, sliders, neutral), denoise(old, sliders))


def test_the_expression_stage_trains_a_one_step_student_and_refuses_a_teacher(autoencoder_run, dataset, tmp_path,
                                                                               capsys):
    """Only the denoiser of the one-step student trains; the result is still a one-step student that also reads the
    sliders its motion frames were made with and eases them; a teacher is refused by name."""
    assert _train("teacher", _teacher_recipe(tmp_path, autoencoder_run / "model", steps=2, save_every=2), dataset,
                  tmp_path / "teacher") == 0
    distill = write_recipe(tmp_path, "distill", f'init = "{tmp_path / "teacher" / "model"}"\nstudent_steps = 1\n'
                      "[curriculum]\nmax_frames = 4\n[run]\nsteps = 2\nbatch_size = 2\nsave_every = 2\n")
    assert _train("distill", distill, dataset, tmp_path / "student") == 0
    recipe = write_recipe(tmp_path, "expression", f'init = "{tmp_path / "student" / "model"}"\n[curriculum]\n'
                     "max_frames = 3\n[run]\nsteps = 3\nbatch_size = 2\nlr = 1e-3\nwarmup_steps = 1\nsave_every = 3\n")
    assert _train("expression", recipe, dataset, tmp_path / "expression") == 0
    student, tuned = load_model(tmp_path / "student" / "model"), load_model(tmp_path / "expression" / "model")
    assert (tuned.config.sampling.parameterization, tuned.config.sampling.steps) == ("consistency", 1)
    assert tuned.config.denoiser.motion_expression and not student.config.denoiser.motion_expression
    assert tuned.config.sampling.slider_speed == 2.0  # the recipe's default, at which the engine eases the sliders
    assert len(read_losses(tmp_path / "expression")) == 3
    for network in ("autoencoder", "audio_encoder"):
        for key, value in getattr(student, network).state_dict().items():
            torch.testing.assert_close(getattr(tuned, network).state_dict()[key], value, rtol=0, atol=0)
    assert any(not torch.equal(value, student.denoiser.state_dict()[key])
               for key, value in tuned.denoiser.state_dict().items())
    provenance = json.loads((tmp_path / "expression" / "model" / "model.json").read_text())["provenance"]
    assert provenance["stage"] == "expression" and provenance["init"]["stage"] == "distill"
    teacher = write_recipe(tmp_path, "on_teacher", f'init = "{tmp_path / "teacher" / "model"}"\n[run]\nsteps = 2\n')
    assert _train("expression", teacher, dataset, tmp_path / "refused") == 2
    face_only = write_recipe(tmp_path, "face", f'init = "{tmp_path / "student" / "model"}"\nsliders = ["smile", "brow"]\n'
                        "[curriculum]\nmax_frames = 2\n[run]\nsteps = 1\nbatch_size = 2\nsave_every = 1\n")
    assert _train("expression", face_only, dataset, tmp_path / "face") == 0
    face = load_model(tmp_path / "face" / "model")
    assert face.config.sampling.warped_sliders == ("eye_open", "head_yaw", "head_pitch")  # the engine's warp
    assert tuned.config.sampling.warped_sliders == ()  # taught every slider
    assert "fine-tunes a one-step consistency student" in capsys.readouterr().err


def _mouth_error(model, clip_folder: Path) -> float:
    """Mean absolute reconstruction error (in [-1, 1] units) inside the mouth boxes of a clip's frames."""
    clip = load_clip(clip_folder)
    images = images_to_tensor(clip.frames)
    mask = mouth_mask(torch.from_numpy(clip.record["mouth_box"].astype(np.float32)), images.shape[-1])
    with torch.no_grad():
        error = (model.autoencoder.decode(model.autoencoder.encode(images)) - images).abs()
    return float((error * mask).sum() / (mask.sum() * 3))


def test_a_decoder_fine_tune_sharpens_the_mouth_and_keeps_every_latent(autoencoder_run, dataset, tmp_path, capsys):
    """train_encoder = false with a mouth weight (and blurred training latents): the held-out mouth error falls, the
    encoder (so the latent cache key), the audio encoder and the denoiser stay exactly those of `init`; bad
    combinations are named."""
    init = load_model(autoencoder_run / "model")
    heldout = dataset / next(e["path"] for e in load_manifest(dataset)["clips"] if e["split"] == "heldout")
    recipe = write_recipe(tmp_path, "decoder", f'preset = "tiny-test"\ninit = "{autoencoder_run / "model"}"\n'
                     "train_encoder = false\nmouth_weight = 8.0\nlatent_blur = 0.5\npool_clips = 2\n"
                     "[run]\nsteps = 60\nbatch_size = 4\nlr = 2e-3\nwarmup_steps = 1\nsave_every = 60\n")
    assert _train("autoencoder", recipe, dataset, tmp_path / "decoder") == 0
    tuned = load_model(tmp_path / "decoder" / "model")
    assert _mouth_error(tuned, heldout) < 0.9 * _mouth_error(init, heldout)
    assert autoencoder_key(tuned.autoencoder) == autoencoder_key(init.autoencoder)
    provenance = json.loads((tmp_path / "decoder" / "model" / "model.json").read_text())["provenance"]
    assert provenance["stage"] == "autoencoder" and provenance["init"]["stage"] == "autoencoder"
    for network in ("audio_encoder", "denoiser"):
        for key, value in getattr(init, network).state_dict().items():
            torch.testing.assert_close(getattr(tuned, network).state_dict()[key], value, rtol=0, atol=0)
    assert any(not torch.equal(value, init.autoencoder.state_dict()[key])
               for key, value in tuned.autoencoder.state_dict().items() if key.startswith("decoder."))

    fresh = write_recipe(tmp_path, "fresh", 'preset = "tiny-test"\ntrain_encoder = false\n')
    assert _train("autoencoder", fresh, dataset, tmp_path / "fresh") == 2
    assert "train_encoder = false needs init" in capsys.readouterr().err
    other = write_recipe(tmp_path, "other", f'preset = "tiny-cpu"\ninit = "{autoencoder_run / "model"}"\n')
    assert _train("autoencoder", other, dataset, tmp_path / "other") == 2
    assert "is a 'tiny-test' model, but the recipe's preset is 'tiny-cpu'" in capsys.readouterr().err


def test_the_audio_stage_refuses_data_without_a_known_mouth(autoencoder_run, dataset, tmp_path, capsys):
    """Real-video data sets record NaN for the mouth: the audio stage says it needs synthetic clips."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("cache"))
    for record_path in data.glob("clips/*/record.npz"):
        with np.load(record_path, allow_pickle=False) as stored:
            record = {name: stored[name] for name in stored.files}
        record["mouth_open"] = np.full_like(record["mouth_open"], np.nan)
        np.savez(record_path, **record)
    recipe = write_recipe(tmp_path, "audio", f'init = "{autoencoder_run / "model"}"\n[run]\nsteps = 2\n')
    assert _train("audio", recipe, data, tmp_path / "run") == 2
    assert "needs clips made by `avatar-desktop dataset synth`" in capsys.readouterr().err


def test_the_audio_stage_sets_the_encoder_width(autoencoder_run, dataset, tmp_path, capsys):
    """encoder_channels widens the encoder; the model folder records it and loads with it; a width the group norm
    cannot split is refused naming the key."""
    preset_width = load_model(autoencoder_run / "model").config.audio.channels
    wide = 2 * preset_width
    recipe = write_recipe(tmp_path, "audio", f'init = "{autoencoder_run / "model"}"\nframes = 2\n'
                          f"encoder_channels = {wide}\n[run]\nsteps = 2\nbatch_size = 2\nsave_every = 2\n")
    assert _train("audio", recipe, dataset, tmp_path / "audio") == 0
    model = load_model(tmp_path / "audio" / "model")
    assert model.config.audio.channels == wide
    assert model.audio_encoder.convs[0].out_channels == wide
    odd = write_recipe(tmp_path, "odd", f'init = "{autoencoder_run / "model"}"\nencoder_channels = 12\n[run]\nsteps = 1\n')
    assert _train("audio", odd, dataset, tmp_path / "odd") == 2
    assert "encoder_channels = 12: must be a multiple of 8" in capsys.readouterr().err


def test_a_warm_start_keeps_the_function_of_a_denoiser_without_the_audio_embedding():
    """The audio embedding starts at zero: a denoiser that gains it computes what its donor computed; a donor of
    another preset is refused."""
    config = tiny_test_config()
    old = dataclasses.replace(config, denoiser=dataclasses.replace(config.denoiser, audio_embedding=False))
    donor, model = build_model(old, seed=1), build_model("tiny-test", seed=2)
    warm_start(model.denoiser, donor.denoiser, "donor")
    generator = torch.Generator().manual_seed(0)
    c, h, w = model.latent_shape
    audio = model.config.audio
    cond = DenoiserInputs(reference=torch.randn(2, c, h, w, generator=generator),
                          motion=torch.randn(2, 2, c, h, w, generator=generator),
                          audio=torch.randn(2, 3, audio.tokens_per_frame, audio.token_dim, generator=generator),
                          label=torch.tensor([0, 2]), expression=torch.zeros(2, 5))
    x, c_noise = torch.randn(2, 3, c, h, w, generator=generator), torch.tensor([0.3, -0.5])
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, c_noise, cond), donor.denoiser(x, c_noise, cond))
    with pytest.raises(AvatarError, match="shares no layer"):
        warm_start(model.denoiser, build_model("tiny-cpu").denoiser, "tiny-cpu model")


def test_mouth_mask_marks_the_latent_cells_a_box_overlaps():
    boxes = torch.tensor([[1.5, 2.0, 3.2, 3.0], [float("nan")] * 4])
    mask = mouth_mask(boxes, 6)
    assert mask.shape == (2, 1, 6, 6)
    expected = torch.zeros(6, 6)
    expected[2, 1:4] = 1
    torch.testing.assert_close(mask[0, 0], expected)
    assert mask[1].sum() == 0


def _numbered_clip(frames: int) -> CachedClip:
    """A cached clip whose frame f's latent (1, 2, 2) is all f."""
    return CachedClip(latents=torch.arange(frames, dtype=torch.float32).view(frames, 1, 1, 1).expand(frames, 1, 2, 2),
                      audio=torch.zeros(frames * 640), state=torch.zeros(frames, dtype=torch.int64),
                      expression=torch.zeros(frames, 5), mouth_box=torch.full((frames, 4), float("nan")))


def test_motion_frames_are_the_frames_before_the_chunk_or_the_reference_at_the_clips_start():
    frames, motion_frames = 60, 2
    batch = sample_chunks([_numbered_clip(frames)], 200, 3, motion_frames, AudioConfig(), 25,
                          torch.Generator().manual_seed(0))
    first, motion = batch["x0"][:, 0, 0, 0, 0], batch["motion"][:, :, 0, 0, 0]
    reference = batch["reference"][:, 0, 0, 0]
    assert torch.equal(batch["x0"][:, :, 0, 0, 0], first[:, None] + torch.arange(3))  # consecutive frames
    starts_late = first >= motion_frames
    assert torch.equal(motion[starts_late], first[starts_late, None] + torch.tensor([-2, -1]))
    at_start = first == 0
    assert at_start.any() and torch.equal(motion[at_start], reference[at_start, None].expand(-1, motion_frames))


def test_the_latent_cache_remakes_a_file_that_lacks_one_of_its_tensors(autoencoder_run, dataset, tmp_path):
    """A cache file written by an earlier version (without one of CACHE_TENSORS) is made again, not failed on."""
    data = tmp_path / "data"
    shutil.copytree(dataset, data, ignore=shutil.ignore_patterns("cache"))
    autoencoder = load_model(autoencoder_run / "model").autoencoder.eval()
    cached = cache_latents(data, autoencoder)
    clip = load_clip(training_clips(data)[0])
    with torch.no_grad():
        expected = autoencoder.encode(images_to_tensor(clip.frames[:1]))[0]
    torch.testing.assert_close(cached[0].latents[0], expected, rtol=2e-3, atol=2e-3)  # stored as float16
    file = data / "cache" / autoencoder_key(autoencoder) / f"{clip.path.name}.safetensors"
    old = {k: v for k, v in load_file(file).items() if k != "expression"}
    save_file(old, file)
    again = cache_latents(data, autoencoder)
    torch.testing.assert_close(again[0].expression, cached[0].expression)
    assert set(load_file(file)) == set(CACHE_TENSORS)


def test_resume_continues_the_loss_curve_exactly(autoencoder_run, dataset, tmp_path):
    init = autoencoder_run / "model"
    assert _train("teacher", _teacher_recipe(tmp_path, init, steps=6, save_every=3), dataset, tmp_path / "straight") == 0
    assert _train("teacher", _teacher_recipe(tmp_path, init, steps=3, save_every=3), dataset, tmp_path / "split") == 0
    assert _train("teacher", _teacher_recipe(tmp_path, init, steps=6, save_every=3), dataset, tmp_path / "split", "--resume") == 0
    assert read_losses(tmp_path / "split") == pytest.approx(read_losses(tmp_path / "straight"), rel=1e-5)
    straight = load_file(tmp_path / "straight" / "checkpoint" / "weights.safetensors")
    resumed = load_file(tmp_path / "split" / "checkpoint" / "weights.safetensors")
    for key in straight:
        torch.testing.assert_close(resumed[key], straight[key], rtol=1e-5, atol=1e-6)


def test_an_interrupted_run_keeps_its_last_checkpoint(autoencoder_run, dataset, tmp_path):
    """Starting over without --resume is refused, so a finished checkpoint is never overwritten by accident."""
    recipe = _teacher_recipe(tmp_path, autoencoder_run / "model", steps=2, save_every=1)
    assert _train("teacher", recipe, dataset, tmp_path / "run") == 0
    assert _train("teacher", recipe, dataset, tmp_path / "run") == 2
    assert len(read_losses(tmp_path / "run")) == 2


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(autoencoder_run, dataset, tmp_path):
    recipe = _teacher_recipe(tmp_path, autoencoder_run / "model", steps=3, save_every=3, batch=4)
    assert _train("teacher", recipe, dataset, tmp_path / "single") == 0
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "avatar_desktop", "train", "teacher", "--config", str(recipe), "--data", str(dataset),
               "--out", str(tmp_path / "ddp")]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert read_losses(tmp_path / "ddp") == pytest.approx(read_losses(tmp_path / "single"), rel=1e-4)


def test_curriculum_fixed_then_variable_with_short_chunks():
    curriculum = CurriculumConfig(max_frames=8, fixed_until=100, short_share=0.5)
    generator = torch.Generator().manual_seed(0)
    assert {chunk_length(step, curriculum, generator) for step in range(100)} == {8}
    lengths = [chunk_length(100 + i, curriculum, generator) for i in range(2000)]
    assert set(lengths) == set(range(1, 9))
    assert 0.4 < np.mean(np.array(lengths) <= 4) < 0.6


def test_learning_rate_warms_up_then_follows_a_cosine_to_its_floor():
    run = RunConfig(steps=110, lr=1e-3, warmup_steps=10, final_lr_fraction=0.1)
    rates = np.array([learning_rate(step, run) for step in range(run.steps)])
    assert rates[:10] == pytest.approx(np.arange(1, 11) * 1e-4)
    assert rates[10] == pytest.approx(1e-3) and rates[-1] == pytest.approx(1e-4)
    assert (np.diff(rates[10:]) < 0).all()
    constant = RunConfig(steps=110, lr=1e-3, warmup_steps=10)
    assert {learning_rate(step, constant) for step in range(10, 110)} == {1e-3}


def test_latent_blur_softens_each_sample_by_its_own_width():
    """Width 0 leaves a latent exactly as it is, a flat latent stays flat, and wider blurs remove more detail."""
    latents = torch.randn(3, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    blurred = blur_latents(latents, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.equal(blurred[0], latents[0])
    detail = [float((blurred[i] - blurred[i].mean()).std()) for i in range(3)]
    assert detail[0] > detail[1] > detail[2] > 0
    flat = torch.full((1, 2, 8, 8), 0.7)
    torch.testing.assert_close(blur_latents(flat, torch.tensor([1.0])), flat)


@pytest.mark.parametrize(
    "stage, text, message",
    [
        ("autoencoder", 'preset = "tiny-test"\nlearning_rate = 1\n', "unknown key(s) ['learning_rate']"),
        ("autoencoder", '[run]\nstepz = 3\n', "autoencoder.run: unknown key(s) ['stepz']"),
        ("autoencoder", 'preset = "huge"\n', "unknown preset 'huge'"),
        ("autoencoder", 'preset = "tiny-test"\nlatent_blur = 2.0\n', "latent_blur = 2.0: choose a width from 0"),
        ("expression", 'sliders = ["smile", "nose"]\n', "sliders = ['smile', 'nose']: name one or more of smile"),
        ("teacher", "[run]\nsteps = 3\n", "set `init`"),
        ("teacher", "init = [", "not valid TOML"),
    ],
)
def test_bad_recipes_are_named(dataset, tmp_path, capsys, stage, text, message):
    assert _train(stage, write_recipe(tmp_path, "bad", text), dataset, tmp_path / "run") == 2
    assert message in capsys.readouterr().err


def test_data_folder_without_manifest(tmp_path, capsys):
    recipe = write_recipe(tmp_path, "ae", 'preset = "tiny-test"\n')
    assert _train("autoencoder", recipe, tmp_path, tmp_path / "run") == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_resuming_a_checkpoint_of_another_preset_is_refused(autoencoder_run, dataset, tmp_path, capsys):
    recipe = write_recipe(tmp_path, "ae", 'preset = "tiny-test"\n[run]\nsteps = 1\nbatch_size = 2\nsave_every = 1\n')
    assert _train("autoencoder", recipe, dataset, tmp_path / "run") == 0
    other = write_recipe(tmp_path, "ae2", 'preset = "tiny-cpu"\npool_clips = 1\n[run]\nsteps = 2\nbatch_size = 1\n')
    assert _train("autoencoder", other, dataset, tmp_path / "run", "--resume") == 2
    assert "belongs to another preset" in capsys.readouterr().err


def test_the_tiny_decoder_learns_init_latents_alone_and_the_engine_decodes_with_it(dataset, tmp_path, portrait, capsys):
    """decoder = "tiny": only the TAESD-layout decoder of tiny-test-taesd trains (its loss falls); every other
    weight stays init's; EngineConfig.decoder picks it; bad combinations are named."""
    init = save_model(build_model("tiny-test-taesd", seed=0), tmp_path / "init")
    recipe = write_recipe(tmp_path, "tiny", f'preset = "tiny-test-taesd"\ninit = "{init}"\ntrain_encoder = false\n'
                          'decoder = "tiny"\npool_clips = 2\n[run]\nsteps = 30\nbatch_size = 4\nlr = 3e-3\n'
                          "warmup_steps = 1\nsave_every = 30\n")
    assert _train("autoencoder", recipe, dataset, tmp_path / "run") == 0
    losses = read_losses(tmp_path / "run")
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    before, after = load_model(init), load_model(tmp_path / "run" / "model")
    for network in ("autoencoder", "audio_encoder", "denoiser"):
        for key, value in getattr(before, network).state_dict().items():
            if not key.startswith("tiny_decoder."):
                torch.testing.assert_close(getattr(after, network).state_dict()[key], value, rtol=0, atol=0)
    assert any(not torch.equal(value, before.autoencoder.state_dict()[key])
               for key, value in after.autoencoder.state_dict().items() if key.startswith("tiny_decoder."))

    frames = {}
    for decoder in ("full", "tiny"):
        generator = StreamingGenerator(load_model(tmp_path / "run" / "model"), EngineConfig(decoder=decoder))
        generator.prepare(portrait, warmup=False)
        frames[decoder] = np.concatenate([chunk.frames for chunk in stream_chunks(generator, 0.2)])
    assert frames["tiny"].shape == frames["full"].shape == (5, 64, 64, 3)
    assert not np.array_equal(frames["tiny"], frames["full"])

    for name, text, expected in (
            ("encoder", f'preset = "tiny-test-taesd"\ninit = "{init}"\ndecoder = "tiny"\n', "add train_encoder = false"),
            ("none", f'preset = "tiny-test"\ninit = "{tmp_path / "plain"}"\ntrain_encoder = false\ndecoder = "tiny"\n',
             "preset 'tiny-test' has no tiny decoder"),
    ):
        save_model(build_model("tiny-test", seed=0), tmp_path / "plain")
        assert _train("autoencoder", write_recipe(tmp_path, name, text), dataset, tmp_path / name) == 2
        assert expected in capsys.readouterr().err
