"""The pixel-only mouth measurer, calibrated on training identities, tracks the ground truth of held-out ones."""

import numpy as np
import pytest

from avatar_desktop.data.clips import load_clip
from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic
from avatar_desktop.eval.mouth import MouthCalibration, measure_mouth_raw


@pytest.mark.slow
def test_measurer_correlates_with_ground_truth_on_heldout_identities(tmp_path):
    config = SynthConfig(identities=12, clips_per_identity=1, seconds=5.0, seed=21, size=256, heldout_fraction=0.25)
    manifest = build_synthetic(tmp_path / "data", config, workers=2, progress=False)
    raw, truth = {}, {}
    for entry in manifest["clips"]:
        clip = load_clip(tmp_path / "data" / entry["path"])
        raw[entry["id"]] = measure_mouth_raw(clip.frames, clip.record["mouth_box"])
        truth[entry["id"]] = clip.record["mouth_open"]
    train = [e["id"] for e in manifest["clips"] if not e["heldout_identity"]]
    heldout = [e["id"] for e in manifest["clips"] if e["heldout_identity"]]
    assert len(heldout) == 3
    calibration = MouthCalibration.fit(np.concatenate([raw[i] for i in train]),
                                       np.concatenate([truth[i] for i in train]))
    predicted = np.concatenate([calibration.apply(raw[i]) for i in heldout])
    expected = np.concatenate([truth[i] for i in heldout])
    assert np.corrcoef(predicted, expected)[0, 1] >= 0.95
    assert np.abs(predicted - expected).mean() < 0.08
