"""A small synthetic data set shared by the evaluation tests (real renderer, real espeak-ng speech)."""

from pathlib import Path

import pytest

from avatar_desktop.data.synth_dataset import SynthConfig, build_synthetic


@pytest.fixture(scope="session")
def eval_data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "data"
    build_synthetic(out, SynthConfig(identities=3, clips_per_identity=1, seconds=8.0, seed=11, size=256),
                    workers=2, progress=False)
    return out
