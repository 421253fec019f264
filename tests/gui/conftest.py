"""Fixtures of the GUI tests: Qt offscreen, the runtime tests' PulseAudio rig and recording camera (reused, not
copied), and a tiny seeded model on the model search path."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from pathlib import Path

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before Qt starts: CI has no display

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from avatar_desktop.engine.bench import benchmark_portrait  # noqa: E402
from avatar_desktop.models.presets import build_model, tiny_test_config  # noqa: E402
from avatar_desktop.models.store import MODELS_ENV, save_model  # noqa: E402

_RUNTIME_TESTS = Path(__file__).resolve().parents[1] / "runtime"
sys.path.insert(0, str(_RUNTIME_TESTS))  # their conftest imports pulse_rig
_spec = importlib.util.spec_from_file_location("runtime_rig_fixtures", _RUNTIME_TESTS / "conftest.py")
runtime_rig = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(runtime_rig)

pulse = runtime_rig.pulse  # the session-wide PulseAudio server: PortAudio's default input is its `vmic`


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory):
    """A model folder on the search path ($AVATAR_DESKTOP_MODELS) holding `tiny` and a damaged `broken`, and an
    empty user data home.

    `tiny` is the tiny test model with seeded random weights, made expression-sensitive: random weights decode
    nearly the same image whatever the conditioning, so the input convolution is zeroed and the expression
    embedding, the state label embedding and the output convolution scaled up; a slider's or a state's effect then
    shows in the frames (tens of grey levels against about 2 from frame to frame). Its denoiser gets the sliders
    (no warped_sliders), as that of a model taught them does."""
    root = tmp_path_factory.mktemp("models")
    config = tiny_test_config()
    model = build_model(dataclasses.replace(config, sampling=dataclasses.replace(config.sampling, warped_sliders=())),
                        seed=0)
    with torch.no_grad():
        denoiser = model.denoiser
        for name, parameter in denoiser.conv_in.named_parameters():
            if name.endswith("weight"):
                parameter.zero_()
        denoiser.expression_embedding[2].weight.mul_(100)
        denoiser.label_embedding.weight.mul_(4)
        denoiser.conv_out.weight.mul_(30)
        denoiser.conv_out.bias.mul_(30)
    save_model(model, root / "tiny")
    (root / "broken").mkdir()
    (root / "broken" / "model.json").write_text("{ this is not JSON")
    saved = {key: os.environ.get(key) for key in (MODELS_ENV, "XDG_DATA_HOME")}
    os.environ[MODELS_ENV] = str(root)
    os.environ["XDG_DATA_HOME"] = str(tmp_path_factory.mktemp("data-home"))
    yield root
    for key, value in saved.items():
        os.environ.pop(key, None)
        if value is not None:
            os.environ[key] = value


@pytest.fixture(scope="session")
def portrait_files(tmp_path_factory) -> tuple[Path, Path]:
    """Two portrait PNGs: the benchmark face, and a plain red square."""
    folder = tmp_path_factory.mktemp("portraits")
    face, red = folder / "face.png", folder / "red.png"
    cv2.imwrite(str(face), benchmark_portrait(160)[:, :, ::-1])
    cv2.imwrite(str(red), np.full((128, 128, 3), (40, 40, 220), np.uint8))
    return face, red


@pytest.fixture(scope="module")
def recording_backend():
    """The runtime tests' recording camera, registered with pyvirtualcam for a whole test module."""
    with runtime_rig.registered_recording_camera() as camera:
        yield camera
