"""The shipped model (models/default) on a character it never saw (another seed than its training data): it loads
as the tiny-cpu student, stays small, and keeps what its model card reports it can do.

The thresholds sit below the card's numbers by a margin, so that a damaged model fails, not one that scores a
little differently. They check what the current model achieves: lip sync at lag 0, a closed mouth in silence, a picture that stays,
chunk seams not much worse than frame-to-frame motion, and sliders that act (by the engine's warp).
"""

from pathlib import Path

import pytest

from avatar_desktop.config import EngineConfig
from avatar_desktop.eval.report import AutoencoderSource, ModelSource, evaluate
from avatar_desktop.models.store import load_model, resolve_model

ROOT = Path(__file__).resolve().parents[2]


def test_default_model_is_the_small_tiny_cpu_student():
    folder = resolve_model("default")
    assert folder == ROOT / "models" / "default"
    assert sum(f.stat().st_size for f in folder.iterdir()) < 64 * 2**20
    assert "## Evaluation" in (folder / "MODEL_CARD.md").read_text()
    model = load_model("default")
    assert model.config.preset == "tiny-cpu"
    assert model.config.sampling.sampler == "consistency" and model.config.sampling.steps == 1


@pytest.mark.slow
def test_default_model_keeps_its_card_on_an_unseen_character(eval_data):
    report = evaluate(eval_data, ModelSource("default", EngineConfig()), clips=1)["report"]
    assert report["lip_sync"]["pearson"] >= 0.55  # 0.77 on this clip; card: 0.82 on 20 held-out clips
    assert report["lip_sync"]["best_lag_frames"] in (-1, 0, 1)
    assert report["states"]["listening_mouth_closed"] >= 0.9  # 1.0 on this clip; card: 0.95
    assert report["states"]["idle_mouth_closed"] >= 0.9  # 1.0 on this clip; card: 0.98
    assert report["appearance"]["psnr_outside"] >= 19.0  # 20.8 dB on this clip; card: 23.5 on 20 held-out clips
    # 1.29 on this clip; the target (1.3) is the card's, on 20 clips: 1.25
    assert report["temporal"]["chunk_boundary_ratio"] <= 1.45
    # The sliders' warp (engine/slider_warp.py) on a long-haired character, measured 0.52 / 0.87 / 0.40 for smile /
    # brow / eye_open; card: see its expression table (three characters)
    assert report["expression_gain"]["smile"] >= 0.3
    assert report["expression_gain"]["brow"] >= 0.4
    assert report["expression_gain"]["eye_open"] >= 0.2
    assert all(report["expression_response"][name] >= 0.8 for name in report["expression_response"])
    # whose back hair the renderer moves against a turn: 0.064 / 0.156 here; card: 0.60 / 0.67 over three characters
    assert report["expression_gain"]["head_yaw"] >= 0.03
    assert report["expression_gain"]["head_pitch"] >= 0.08


@pytest.mark.slow
def test_default_autoencoder_keeps_the_mouth_readable_on_an_unseen_character(eval_data):
    """The ceiling of every generator with this autoencoder: its round trip keeps lip sync and most of the detail."""
    report = evaluate(eval_data, AutoencoderSource("default"), clips=1)["report"]
    assert report["lip_sync"]["pearson"] >= 0.8  # 0.96 measured on this clip
    assert report["states"]["listening_mouth_closed"] >= 0.9  # 1.0 measured on this clip
    assert report["appearance"]["psnr_outside"] >= 24.0  # 26.6 dB measured
