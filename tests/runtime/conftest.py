"""Fixtures of the runtime tests: the PulseAudio rig (started here, so it runs in CI), speech, a tiny model,
and a recording virtual-camera backend (the one fake: the camera driver is the system boundary)."""

from __future__ import annotations

import contextlib
import os
import threading
import time

import numpy as np
import pytest

from pulse_rig import PulseRig, espeak_wav, pulseaudio_missing_reason, refresh_portaudio


def _use_server(rig: PulseRig | None, saved: dict) -> None:
    for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR"):
        os.environ.pop(key, None)
        if rig is None and saved.get(key) is not None:
            os.environ[key] = saved[key]
    if rig is not None:
        os.environ["PULSE_SERVER"] = rig.server
        os.environ["XDG_RUNTIME_DIR"] = str(rig.runtime_dir)
    refresh_portaudio()


@pytest.fixture(scope="session")
def pulse(tmp_path_factory):
    """A PulseAudio server for the whole test session; PortAudio's default input records `vmic`."""
    reason = pulseaudio_missing_reason()
    if reason:
        pytest.skip(reason)
    saved = {key: os.environ.get(key) for key in ("PULSE_SERVER", "XDG_RUNTIME_DIR")}
    rig = PulseRig(tmp_path_factory.mktemp("pulse"))
    _use_server(rig, saved)
    yield rig
    rig.stop()
    _use_server(None, saved)


@pytest.fixture
def private_pulse(pulse, tmp_path):
    """A PulseAudio server of this test alone (it may stop and restart it); the shared one is back afterwards."""
    rig = PulseRig(tmp_path / "pulse")
    _use_server(rig, {})
    yield rig
    rig.stop()
    _use_server(pulse, {})


@pytest.fixture(scope="session")
def speech(tmp_path_factory, pulse):
    """~3 s of espeak-ng speech with half a second of silence before it (WAV path)."""
    return espeak_wav(tmp_path_factory.mktemp("speech"), "[[_:_:]] Hello there. This is the avatar speaking now.")


class RecordingCamera:
    """A pyvirtualcam backend that records every frame's send time and a small digest instead of a device."""

    instances: list["RecordingCamera"] = []
    fail_with: str | None = None

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        if RecordingCamera.fail_with:
            raise RuntimeError(RecordingCamera.fail_with)
        self.width, self.height, self.fps = width, height, fps
        self._device = device or "/dev/recording0"
        self.times: list[float] = []
        self.digests: list[float] = []
        self.last: np.ndarray | None = None
        self.closed = False
        self.sent = threading.Condition()
        RecordingCamera.instances.append(self)

    def send(self, frame: np.ndarray) -> None:
        with self.sent:
            self.times.append(time.monotonic())
            self.last = frame
            self.digests.append(float(frame.reshape(-1)[::997].mean()))
            self.sent.notify_all()

    def wait_frames(self, count: int, timeout: float) -> bool:
        with self.sent:
            return self.sent.wait_for(lambda: len(self.times) >= count, timeout)

    def close(self) -> None:
        self.closed = True

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return None


@contextlib.contextmanager
def registered_recording_camera():
    """RecordingCamera registered with pyvirtualcam as backend "recording" (fresh state), unregistered after."""
    import pyvirtualcam

    RecordingCamera.instances.clear()
    RecordingCamera.fail_with = None
    pyvirtualcam.register_backend("recording", RecordingCamera)
    try:
        yield RecordingCamera
    finally:
        pyvirtualcam.camera.BACKENDS.pop("recording", None)
        RecordingCamera.fail_with = None


@pytest.fixture
def recording_camera():
    with registered_recording_camera() as camera:
        yield camera
