"""The runtime runs without torch (`pip install .`, and the installed app, whose spec leaves torch out): a live
session and the window on an exported model, in processes where torch, diffusers and safetensors cannot be imported.

A folder with a `sitecustomize` module is put on PYTHONPATH: Python runs it at the start of every process of the
session (the live worker is spawned, and imports what it needs afresh), and it installs an import hook that makes
torch, diffusers and safetensors look not installed (importlib.util.find_spec and import both fail).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from skimage import data as skimage_data

from avatar_desktop.engine.onnx_export import export_model
from avatar_desktop.models.motion import build_motion_model
from avatar_desktop.models.store import save_motion_model

REPOSITORY = Path(__file__).resolve().parents[2]
SITECUSTOMIZE = """
import sys


class NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "diffusers", "safetensors"):
            raise ModuleNotFoundError(f"{name} is not part of the runtime", name=name)


sys.meta_path.insert(0, NotInstalled())
"""


@pytest.fixture(scope="module")
def without_torch(tmp_path_factory) -> dict[str, str]:
    """The environment of a process in which torch, diffusers and safetensors fail to import."""
    shadow = tmp_path_factory.mktemp("no-torch")
    (shadow / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(shadow), str(REPOSITORY)]))
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert "torch is not part of the runtime" in probe.stderr  # the stand-ins are what an import finds
    return env


@pytest.fixture(scope="module")
def exported_motion_model(tmp_path_factory) -> Path:
    """A tiny seeded motion model, exported to ONNX (float)."""
    folder = tmp_path_factory.mktemp("models")
    return export_model(save_motion_model(build_motion_model(seed=0), folder / "motion-tiny"), folder / "motion-onnx")


@pytest.fixture(scope="module")
def astronaut_png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    cv2.imwrite(str(path), cv2.cvtColor(skimage_data.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def run_app(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avatar_desktop", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPOSITORY)


@pytest.mark.slow
def test_a_live_session_on_an_exported_model_runs_without_torch(pulse, without_torch, exported_motion_model,
                                                                 astronaut_png, tmp_path):
    stats_file = tmp_path / "stats.json"
    result = run_app(without_torch, "live", "--portrait", str(astronaut_png), "--model", str(exported_motion_model),
                     "--camera", "off", "--threads", "1", "--seconds", "6", "--stats-json", str(stats_file))
    assert result.returncode == 0, result.stderr[-2000:]
    stats = json.loads(stats_file.read_text())
    assert stats["first_frame_unix"] is not None, result.stderr[-2000:]  # the worker generated frames
    assert stats["worker_restarts"] == 0 and "crashed" not in result.stderr


@pytest.mark.slow
def test_the_window_on_an_exported_model_runs_without_torch(without_torch, exported_motion_model, astronaut_png,
                                                            tmp_path):
    screenshot = tmp_path / "window.png"
    env = dict(without_torch, QT_QPA_PLATFORM="offscreen")
    result = run_app(env, "gui", "--portrait", str(astronaut_png), "--model", str(exported_motion_model),
                     "--settings", str(tmp_path / "settings.ini"), "--seconds", "6", "--screenshot", str(screenshot))
    assert result.returncode == 0, result.stderr[-2000:]
    assert cv2.imread(str(screenshot)) is not None


def test_a_torch_model_folder_in_an_install_without_torch_says_what_to_do(without_torch, tmp_path):
    folder = save_motion_model(build_motion_model(seed=0), tmp_path / "motion-torch")
    result = run_app(without_torch, "render", "--portrait", "assets/portrait_1.png", "--audio",
                     "assets/sample_speech.wav", "--out", str(tmp_path / "out.mp4"), "--model", str(folder))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "runs on torch, which this install does not have" in result.stderr
    assert "avatar-desktop export" in result.stderr and not (tmp_path / "out.mp4").exists()


@pytest.mark.slow
def test_bench_of_an_exported_model_runs_without_torch(without_torch, exported_motion_model, astronaut_png):
    result = run_app(without_torch, "bench", "--model", str(exported_motion_model), "--portrait", str(astronaut_png),
                     "--seconds", "1", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["path"] == "photo renderer" and report["frames"] > 0 and report["fps"] > 0
