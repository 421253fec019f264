"""The metrics discriminate: ground truth is perfect, a static portrait scores chance, a 3-frame delay is found,
flicker and chunk seams are caught. Frame sources below transform the ground truth the way a bad model would."""

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from avatar_desktop.cli import main
from avatar_desktop.eval import metrics
from avatar_desktop.data.clips import load_clip
from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic
from avatar_desktop.eval.report import (EvaluationError, GroundTruthSource, StaticSource, StillHeadSource, Stream,
                                        clip_stream, evaluate)


class DelayedTruth(GroundTruthSource):
    """The ground truth, `delay` frames late."""

    name = "delayed"

    def __init__(self, delay: int) -> None:
        self.delay = delay

    def generate(self, stream: Stream, keep=None):
        late = np.concatenate([np.repeat(stream.truth[:1], self.delay, 0), stream.truth[: -self.delay]])
        return late, list(range(0, stream.frames, 4))


class FlickeringTruth(GroundTruthSource):
    """The ground truth with every other frame brightened by a few grey levels."""

    name = "flickering"

    def generate(self, stream: Stream, keep=None):
        frames = stream.truth.astype(np.int16)
        frames[1::2] += 6
        return np.clip(frames, 0, 255).astype(np.uint8), list(range(0, stream.frames, 4))


class SeamyTruth(GroundTruthSource):
    """The ground truth whose 5-frame chunks each get their own brightness offset (visible seams)."""

    name = "seamy"

    def generate(self, stream: Stream, keep=None):
        offsets = np.repeat(np.resize([0, 8, -4, 5, -7], (stream.frames + 4) // 5), 5)[: stream.frames]
        frames = np.clip(stream.truth.astype(np.int16) + offsets[:, None, None, None], 0, 255).astype(np.uint8)
        return frames, list(range(0, stream.frames, 5))


@pytest.fixture(scope="module")
def truth_report(eval_data):
    return evaluate(eval_data, GroundTruthSource(), clips=3, minutes=0.2)["report"]


@pytest.mark.slow
def test_ground_truth_against_itself_is_perfect(truth_report):
    report = truth_report
    assert report["appearance"] == {"psnr_mouth": 100.0, "psnr_outside": 100.0, "ssim_mouth": 1.0,
                                    "ssim_outside": 1.0}
    assert report["lip_sync"]["pearson"] == pytest.approx(1.0)
    assert report["lip_sync"]["best_lag_frames"] == 0
    assert report["lip_sync"]["closure_rate"] == 1.0
    assert report["lip_sync"]["closure_chance"] < 0.95
    assert report["temporal"]["flicker"] == 0.0
    assert report["states"] == {"listening_mouth_closed": 1.0, "idle_mouth_closed": 1.0}
    assert all(value == pytest.approx(1.0) for value in report["expression_response"].values())
    assert all(value == pytest.approx(1.0) for value in report["expression_gain"].values())
    assert report["long_run"]["first_psnr_mouth"] == report["long_run"]["last_psnr_mouth"] == 100.0
    assert report["long_run"]["window_seconds"] == pytest.approx(6.0)
    assert report["measurer"]["ground_truth_r"] > 0.95
    assert report["model"] == "ground-truth" and report["seed"] == 0 and len(report["clips"]) == 3
    assert list(report["per_clip"]) == report["clips"]
    assert all(clip["pearson"] == pytest.approx(1.0) and clip["closure_rate"] == 1.0
               for clip in report["per_clip"].values())
    # against the truth without its random head motion and blinks: what they cost the still-head baseline
    assert 15 < report["appearance_still_head"]["psnr_outside"] < 40


@pytest.mark.slow
def test_static_portrait_scores_only_chance(eval_data, truth_report):
    report = evaluate(eval_data, StaticSource(), clips=3)["report"]
    assert abs(report["lip_sync"]["pearson"]) < 0.2
    assert report["lip_sync"]["pearson_at_best_lag"] < 0.3
    assert abs(report["lip_sync"]["closure_rate"] - report["lip_sync"]["closure_chance"]) < 0.15
    per_clip = report["per_clip"].values()  # the report's means are the means of its clips' values
    assert report["lip_sync"]["pearson"] == pytest.approx(np.mean([clip["pearson"] for clip in per_clip]))
    assert report["lip_sync"]["closure_rate"] == pytest.approx(np.mean([clip["closure_rate"] for clip in per_clip]))
    assert report["appearance"]["psnr_mouth"] < 40 and report["appearance"]["ssim_mouth"] < 0.95
    assert all(value == 0.0 for value in report["expression_response"].values())
    assert all(value == 0.0 for value in report["expression_gain"].values())


@pytest.mark.slow
def test_the_still_head_baseline_has_the_true_mouth_but_not_the_random_motion(eval_data, truth_report):
    """True mouth and sliders with the head held still: lip sync and closure stay perfect, while the appearance
    outside the mouth falls below the ground truth's by the head motion and blinks it leaves out."""
    report = evaluate(eval_data, StillHeadSource(), clips=3)["report"]
    assert report["lip_sync"]["pearson"] > 0.95 and report["lip_sync"]["best_lag_frames"] == 0
    assert report["lip_sync"]["closure_rate"] == 1.0
    assert report["states"] == {"listening_mouth_closed": 1.0, "idle_mouth_closed": 1.0}
    assert 15 < report["appearance"]["psnr_outside"] < 40
    assert report["appearance"]["psnr_outside"] == pytest.approx(
        truth_report["appearance_still_head"]["psnr_outside"], abs=0.5)  # the same pairs of frames, other boxes
    assert report["appearance_still_head"] == {"psnr_mouth": 100.0, "psnr_outside": 100.0, "ssim_mouth": 1.0,
                                               "ssim_outside": 1.0}
    assert all(value == pytest.approx(1.0) for value in report["expression_response"].values())
    assert all(value == pytest.approx(1.0) for value in report["expression_gain"].values())


def test_clips_without_a_character_seed_have_no_still_head_appearance(eval_data, tmp_path):
    """Real videos (no identity_seed) cannot be rendered still: their report says so with None."""
    data = tmp_path / "data"
    shutil.copytree(eval_data, data)
    for meta_file in (data / "clips").glob("*/clip.json"):
        meta = json.loads(meta_file.read_text())
        del meta["identity_seed"]
        meta_file.write_text(json.dumps(meta))
    report = evaluate(data, GroundTruthSource(), clips=1)["report"]
    assert report["appearance_still_head"] is None and report["appearance"]["psnr_outside"] == 100.0


def test_the_still_head_baseline_refuses_real_videos(eval_data):
    clip = load_clip(eval_data / "clips" / "id0000_c00")
    stream = dataclasses.replace(clip_stream(clip), identity_seed=None)
    with pytest.raises(EvaluationError, match="needs synthetic clips"):
        StillHeadSource().generate(stream)


@pytest.mark.slow
def test_three_frames_late_is_reported_as_lag_three(eval_data):
    report = evaluate(eval_data, DelayedTruth(3), clips=2)["report"]
    assert report["lip_sync"]["best_lag_frames"] == 3
    assert report["lip_sync"]["pearson_at_best_lag"] > 0.99 > report["lip_sync"]["pearson"]


def test_flickering_copy_raises_flicker_and_seams_raise_the_boundary_ratio(eval_data, truth_report):
    clip = load_clip(eval_data / "clips" / "id0000_c00")
    stream = clip_stream(clip)
    flickering, _ = FlickeringTruth().generate(stream)
    assert metrics.flicker(clip.frames, clip.frames) == truth_report["temporal"]["flicker"] == 0.0
    assert metrics.flicker(flickering, clip.frames) > 4
    seamy, starts = SeamyTruth().generate(stream)
    assert metrics.chunk_boundary_ratio(seamy, starts) > 2.0
    assert metrics.chunk_boundary_ratio(clip.frames, starts) < 1.5
    assert truth_report["temporal"]["chunk_boundary_ratio"] < 1.5


def test_ssim_agrees_with_scikit_image():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    noisy = np.clip(image + rng.normal(0, 20, image.shape), 0, 255).astype(np.uint8)
    ours = metrics.ssim_map(noisy, image)[5:-5, 5:-5].mean()
    reference = structural_similarity(noisy, image, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                      channel_axis=2, data_range=255, full=True)[1][5:-5, 5:-5].mean()
    assert ours == pytest.approx(reference, abs=2e-3)


def test_psnr_correlations_and_lags_on_known_signals():
    a = np.zeros((1, 4, 4, 3), np.uint8)
    b = a + 10
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert metrics.psnr(a, a) == metrics.PSNR_IDENTICAL
    x = np.sin(np.arange(200) / 4.0) + np.random.default_rng(1).normal(0, 0.1, 200)
    assert metrics.pearson(x, np.full(200, 0.3)) == 0.0
    assert metrics.lagged_correlation(np.full(200, 0.3), x) == (None, 0.0)
    assert metrics.spearman([1, 2, 3, 4], [10, 20, 30, 1000]) == pytest.approx(1.0)
    assert metrics.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    early = np.roll(x, -2)  # generated two frames early
    assert metrics.lagged_correlation(early, x)[0] == -2


def test_closure_rate_counts_windows_and_chance_counts_everything_else():
    opening = np.full(100, 0.5)
    opening[[10, 40, 70]] = 0.0
    windows = [(10, 10), (40, 41), (70, 70)]
    rate, chance = metrics.closure_rate(opening, windows)
    assert rate == 1.0 and chance < 0.1
    rate, chance = metrics.closure_rate(np.zeros(100), windows)
    assert rate == chance == 1.0


@pytest.mark.slow
def test_eval_cli_on_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    """Random weights: the frames are noise, so only the report's structure and finiteness are checked."""
    data = tmp_path / "data"
    build_synthetic(data, SynthConfig(identities=1, clips_per_identity=1, seconds=3.0, seed=3), progress=False)
    assert load_clip(data / "clips" / "id0000_c00", with_frames=False).record["mouth_open"].max() > 0.5
    plot = tmp_path / "mouth.png"
    assert main(["eval", "--model", str(tiny_model_dir), "--data", str(data), "--clips", "1", "--json",
                 "--plot", str(plot), "--minutes", "0.02"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model"] == str(tiny_model_dir) and report["data"] == str(data) and report["seed"] == 0
    numbers = [report["lip_sync"]["pearson"], report["lip_sync"]["closure_rate"], report["temporal"]["flicker"],
               *report["appearance"].values(), *report["expression_response"].values(),
               *report["expression_gain"].values(),
               report["long_run"]["first_ssim_outside"], report["long_run"]["last_psnr_mouth"]]
    assert all(isinstance(v, float) and math.isfinite(v) for v in numbers)
    assert set(report["expression_response"]) == {"smile", "brow", "eye_open", "head_yaw", "head_pitch"}
    assert plot.stat().st_size > 1000


def test_eval_cli_bad_input_is_one_line(tmp_path, capsys):
    assert main(["eval", "--model", "ground-truth", "--data", str(tmp_path)]) == 2
    assert "not a data set folder" in capsys.readouterr().err
