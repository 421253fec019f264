"""Faults and bad input during a live session: a killed worker, crashed sessions, missing or busy devices,
unreadable portraits, models that fail to load. Real worker processes and the PulseAudio rig throughout."""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from test_live_session import session_config, shm_segments, wait_until

from avatar_desktop.audio.capture import AudioDeviceError, CaptureConfig
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.output.camera import CameraConfig, CameraUnavailableError, VirtualCameraSink, driver_advice
from avatar_desktop.runtime.events import EventKind
from avatar_desktop.runtime.session import LiveSession, RuntimeConfig


class PreviewSink:
    """What a GUI preview would be: counts the canvases it gets."""

    name = "preview"

    def __init__(self):
        self.count = 0
        self.event = threading.Event()

    def send(self, canvas, media_time):
        self.count += 1
        self.event.set()

    def close(self):
        pass


def fresh_frames(session) -> int:
    return session.stats.snapshot()["new_frames"]


@pytest.mark.slow
def test_killed_worker_is_replaced_while_the_camera_keeps_sending(pulse, recording_camera, tiny_model_dir, portrait):
    before = shm_segments()
    runtime = RuntimeConfig(worker_threads=1, standby_worker=True)
    with LiveSession(portrait, session_config(tiny_model_dir, runtime=runtime)) as session:
        assert session.worker_ready.wait(60), session.events
        assert session.standby_ready.wait(60), session.events
        assert wait_until(lambda: fresh_frames(session) > 10, 20)
        camera = recording_camera.instances[0]
        old_pid = session.worker.pid
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        sent_at_kill = len(camera.times)
        assert wait_until(lambda: session.worker.pid != old_pid and session.worker_ready.is_set(), 5)
        frames_at_restart = fresh_frames(session)
        assert wait_until(lambda: fresh_frames(session) > frames_at_restart, 5 - (time.monotonic() - killed_at))
        served_after = time.monotonic() - killed_at
        gap = np.diff([t for t in camera.times if t >= killed_at - 0.2])
        print(f"new worker served {served_after:.2f} s after SIGKILL; largest camera gap {gap.max() * 1000:.0f} ms")
        # the camera never stopped: its rate over that time, less a frame for where in its period the kill fell
        assert len(camera.times) - sent_at_kill >= camera.fps * served_after * 0.9 - 1
        assert gap.max() < 0.2
        assert session.stats.worker_restarts == 1
        died = [e for e in session.events if e.kind is EventKind.WORKER_DIED]
        assert len(died) == 1 and "killed by SIGKILL" in died[0].message and "standby worker" in died[0].message
        assert "SIGKILL" in session.status()["last_error"]
    assert shm_segments() <= before


_CRASHING_SESSION = textwrap.dedent("""
    import sys, time
    from avatar_desktop.runtime.session import LiveSession, RuntimeConfig, SessionConfig
    from avatar_desktop.engine.model_spec import ModelSpec
    from avatar_desktop.engine.bench import benchmark_portrait
    config = SessionConfig(model=ModelSpec(sys.argv[1]), camera=None, runtime=RuntimeConfig(standby_worker=False))
    session = LiveSession(benchmark_portrait(96), config).start()
    session.worker_ready.wait(60)
    print(session.worker.pid, flush=True)
    time.sleep(600)
""")


@pytest.mark.slow
def test_a_crashed_session_leaves_no_shared_memory(pulse, tiny_model_dir):
    proc = subprocess.Popen([sys.executable, "-c", _CRASHING_SESSION, str(tiny_model_dir)], stdout=subprocess.PIPE,
                            text=True)
    worker_pid = int(proc.stdout.readline())
    mine = shm_segments(proc.pid)
    assert len(mine) == 2
    proc.kill()
    proc.wait(10)
    # the worker notices its session is gone and exits; the resource tracker then unlinks the segments
    assert wait_until(lambda: not Path(f"/proc/{worker_pid}").exists(), 10)
    assert wait_until(lambda: not shm_segments(proc.pid), 10), shm_segments(proc.pid)


@pytest.mark.slow
def test_stale_segment_from_an_earlier_crash_is_cleaned_at_start(pulse, tiny_model_dir, portrait):
    stale = Path("/dev/shm", "avd-999999-0badc0de-frames")  # a crashed session's, a minute old, nobody holds it
    stale.write_bytes(b"\0" * 128)
    os.utime(stale, (time.time() - 60, time.time() - 60))
    try:
        session = LiveSession(portrait, session_config(tiny_model_dir, camera=None))
        with session:
            assert not stale.exists()
            assert any(stale.name in e.message for e in session.events if e.kind is EventKind.STALE_MEMORY_REMOVED)
    finally:
        stale.unlink(missing_ok=True)


def test_missing_microphone_fails_clearly_and_leaks_nothing(pulse, tiny_model_dir, portrait):
    before = shm_segments()
    with pytest.raises(AudioDeviceError, match="no input device 'no-such-mic'"):
        LiveSession(portrait, session_config(tiny_model_dir, mic=CaptureConfig(device="no-such-mic"), camera=None)).start()
    assert shm_segments() <= before


@pytest.mark.slow
def test_microphone_that_disappears_is_reported_and_reopened(private_pulse, recording_camera, tiny_model_dir, portrait):
    config = session_config(tiny_model_dir, runtime=RuntimeConfig(worker_threads=1, standby_worker=False, mic_retry_s=0.5))
    with LiveSession(portrait, config) as session:
        assert session.worker_ready.wait(60), session.events
        camera = recording_camera.instances[0]
        private_pulse.stop()  # the sound server (and with it the microphone) is gone
        gone_at = len(camera.times)
        assert wait_until(lambda: "stopped delivering audio" in (session.status()["last_error"] or ""), 10)
        assert [e.kind for e in session.events].count(EventKind.MIC_STOPPED) == 1
        assert camera.wait_frames(gone_at + 50, 5)  # the camera goes on meanwhile
        private_pulse.start()
        assert wait_until(lambda: any(e.kind is EventKind.MIC_BACK for e in session.events), 15), session.events
        frames = fresh_frames(session)
        assert wait_until(lambda: fresh_frames(session) > frames + 10, 15)  # generating from the mic again


@pytest.mark.slow
def test_busy_camera_leaves_the_preview_running(pulse, recording_camera, tiny_model_dir, portrait):
    recording_camera.fail_with = "device /dev/video9 is busy"
    preview = PreviewSink()
    with LiveSession(portrait, session_config(tiny_model_dir), sinks=[preview]) as session:
        assert preview.event.wait(10)
        status = session.status()
        assert status["camera"] is None
        assert "busy" in status["camera_error"] and "another program" in status["camera_error"]
        assert wait_until(lambda: preview.count > 10, 5)


@pytest.mark.slow
def test_no_camera_driver_says_what_to_install(pulse, tiny_model_dir, portrait):
    with pytest.raises(CameraUnavailableError, match="v4l2loopback.*exclusive_caps=1"):
        VirtualCameraSink(CameraConfig())  # this machine has no /dev/video device
    assert "OBS" in driver_advice("Windows") and "OBS" in driver_advice("Darwin")
    preview = PreviewSink()
    with LiveSession(portrait, session_config(tiny_model_dir, camera=CameraConfig()), sinks=[preview]) as session:
        assert preview.event.wait(10)
        assert "modprobe v4l2loopback" in session.status()["camera_error"]


@pytest.mark.slow
def test_a_portrait_the_worker_refuses_while_live_keeps_the_old_one(pulse, recording_camera, tiny_model_dir,
                                                                   portrait):
    """An unreadable file never gets this far (load_portrait refuses it: the GUI tests drop one on the window)."""
    with LiveSession(portrait, session_config(tiny_model_dir)) as session:
        assert session.worker_ready.wait(60), session.events
        session.set_reference(portrait[:, :, 0])  # grey (H, W): not the RGB array load_portrait makes
        assert wait_until(lambda: "portrait rejected, keeping the old one" in (session.status()["last_error"] or ""),
                          20), session.events
        assert "expected a uint8 (H, W, 3) RGB array" in session.status()["last_error"]
        assert [e.kind for e in session.events if e.kind.problem] == [EventKind.PORTRAIT_REFUSED]
        frames = fresh_frames(session)
        assert wait_until(lambda: fresh_frames(session) > frames + 10, 10)
        assert session.worker.alive()


@pytest.mark.slow
def test_model_that_fails_to_load_keeps_the_session_up(pulse, recording_camera, tiny_model_dir, portrait, tmp_path):
    broken = tmp_path / "broken-model"  # its model.json is fine (the spec checks that), its weights are missing
    broken.mkdir()
    shutil.copy(tiny_model_dir / "model.json", broken)
    with LiveSession(portrait, session_config(tiny_model_dir, model=ModelSpec(str(broken)))) as session:
        assert wait_until(lambda: "failed to load" in (session.status()["last_error"] or ""), 60), session.events
        assert [e.kind for e in session.events if e.kind.problem] == [EventKind.MODEL_FAILED]
        assert "is missing autoencoder.safetensors" in session.status()["last_error"]
        camera = recording_camera.instances[0]
        sent = len(camera.times)
        assert camera.wait_frames(sent + 10, 5)  # the portrait is shown meanwhile
        assert session.worker.alive()
        session.set_model(ModelSpec(str(tiny_model_dir)))
        assert session.worker_ready.wait(60), session.events
        assert wait_until(lambda: fresh_frames(session) > 5, 10)
