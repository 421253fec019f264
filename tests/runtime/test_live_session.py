"""End to end on the PulseAudio rig: speech -> live session (real worker, tiny seeded model) -> recording camera."""

import os
import time
from pathlib import Path

import numpy as np
import pytest

from avatar_desktop.audio.vad import VadConfig
from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.output.camera import CameraConfig
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.listener import OnsetLatency
from avatar_desktop.runtime.rings import AudioRing
from avatar_desktop.runtime.session import LiveSession, RuntimeConfig, SessionConfig
from avatar_desktop.runtime.stats import SessionStats


def wait_until(predicate, timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def session_config(model_dir: Path, **overrides) -> SessionConfig:
    """A session on the tiny seeded model in `model_dir`, the recording camera, one worker thread, no standby."""
    values = dict(
        model=ModelSpec(str(model_dir)),
        camera=CameraConfig(backend="recording"),
        vad=VadConfig(hangover_ms=600),
        runtime=RuntimeConfig(worker_threads=1, standby_worker=False),  # the crash test turns the standby on
    )
    values.update(overrides)
    return SessionConfig(**values)


def shm_segments(pid: int | None = None) -> set[str]:
    """Ring segments of process `pid` (default: this one; other people's sessions may run on this machine)."""
    return {path.name for path in Path("/dev/shm").glob(f"avd-{pid or os.getpid()}-*")}


@pytest.mark.slow
def test_speech_drives_states_and_the_camera_runs_at_30_fps(pulse, speech, recording_camera, tiny_model_dir, portrait):
    before = shm_segments()
    session = LiveSession(portrait, session_config(tiny_model_dir))
    with session:
        assert session.worker_ready.wait(60), session.events
        camera = recording_camera.instances[0]
        assert (camera.width, camera.height, camera.fps) == (1280, 720, 30)
        start = len(camera.times)
        assert wait_until(lambda: session.state.name == "IDLE", 5)
        player = pulse.play(speech)
        assert wait_until(lambda: session.state.name == "SPEAKING", 8), session.stats.snapshot()["state_changes"]
        player.wait(20)
        assert wait_until(lambda: session.state.name == "IDLE", 3), session.stats.snapshot()["state_changes"]
        assert camera.wait_frames(start + 15 * 30 + 1, 30)
        stats = session.snapshot()
    times = np.array(camera.times[start : start + 15 * 30 + 1])
    fps = (times.size - 1) / (times[-1] - times[0])
    print(f"camera fps over 15 s: {fps:.3f}; tick intervals {stats['tick_interval_ms']}; late ticks "
          f"{stats['camera_late_ticks']}; mic-to-camera latency: {stats['mic_to_camera_ms']}")
    assert abs(fps - 30) <= 0.5, fps
    assert np.all(np.diff(times) > 0)
    states = [change["state"] for change in stats["state_changes"]]
    assert "speaking" in states and states[-1] == "idle"
    assert stats["mic_to_camera_ms"]["count"] >= 1
    assert 0 < stats["mic_to_camera_ms"]["p50"] < 2000
    assert stats["generation_latency_ms"]["count"] > 0
    assert stats["worker_restarts"] == 0
    assert shm_segments() <= before  # nothing of this session is left in /dev/shm
    assert camera.closed


def test_the_first_generated_frame_is_timed_from_the_session_start_and_on_the_wall_clock():
    stats = SessionStats()
    assert stats.snapshot()["first_frame_s"] is None and stats.snapshot()["first_frame_unix"] is None
    stats.tick(stats.started + 0.5, fresh=False)  # the portrait placeholder: not a generated frame
    before = time.time()
    stats.tick(stats.started + 1.25, fresh=True)
    after = time.time()
    stats.tick(stats.started + 1.3, fresh=True)
    snapshot = stats.snapshot()
    assert snapshot["first_frame_s"] == 1.25
    assert round(before, 3) <= snapshot["first_frame_unix"] <= round(after, 3)


def test_speech_onsets_from_before_the_first_frame_are_not_timed():
    """A sound while the session still starts (no frame yet) would time the startup, not the mic-to-camera path."""
    audio = AudioRing.create(None, seconds=2.0, block_samples=320)
    audio.write(np.zeros(320, np.float32), now=100.02)  # mic second 0.02 = monotonic 100.02
    stats = SessionStats()
    onsets = OnsetLatency(MicClock(audio), fps=30, stats=stats)
    onsets.heard([16000, 3 * 16000])  # speech onsets at mic seconds 1 and 3
    onsets.frame_sent(102.4, fresh=False, media_time=1.0)  # the portrait placeholder: not a generated frame
    onsets.frame_sent(102.5, fresh=True, media_time=2.0)  # the first generated frame covers mic second 2
    onsets.frame_sent(103.3, fresh=True, media_time=3.0)
    snapshot = stats.snapshot()["mic_to_camera_ms"]
    assert snapshot["count"] == 1 and snapshot["values"] == [pytest.approx(300.0)]
