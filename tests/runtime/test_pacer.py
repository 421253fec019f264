"""The pacer on a real mic clock (an AudioRing fed with known capture times) and a real FrameRing."""

import numpy as np
import pytest

from avatar_desktop.output.camera import CameraConfig, Canvas
from avatar_desktop.runtime.clock import MicClock
from avatar_desktop.runtime.pacer import Pacer, PacerConfig
from avatar_desktop.runtime.rings import AudioRing, FrameRing, SlotRing


def frame(value):
    return np.full((4, 4, 3), value, np.uint8)


@pytest.fixture
def rig():
    audio = AudioRing.create(None, seconds=2.0, block_samples=320)
    frames = FrameRing(SlotRing.create(None, n_slots=16, slot_bytes=4 * 4 * 3))
    audio.write(np.zeros(320, np.float32), now=100.02)  # mic second 0.02 is monotonic 100.02: offset 100
    return audio, frames


def test_mic_clock_maps_samples_to_monotonic_time_and_ignores_late_blocks(rig):
    audio, _ = rig
    clock = MicClock(audio)
    assert clock.now(100.5) == pytest.approx(0.5)
    audio.write(np.zeros(320, np.float32), now=100.09)  # delivered 50 ms late: not a clock change
    assert clock.now(100.5) == pytest.approx(0.5)
    assert clock.to_monotonic(1.0) == pytest.approx(101.0)
    assert MicClock(AudioRing.create(None, seconds=1.0)).now() is None


def test_frames_show_at_media_time_plus_delay_and_repeat_when_late(rig):
    audio, frames = rig
    pacer = Pacer(frames, MicClock(audio), PacerConfig(initial_delay_ms=200, margin_ms=0))
    frames.write(frame(1), media_time=0.00, ready_time=0.10)
    frames.write(frame(2), media_time=0.04, ready_time=0.10)
    assert not pacer.pick(100.19)  # frame 1 is due at 0.2
    assert pacer.pick(100.20) and pacer.current[0, 0, 0] == 1
    assert not pacer.pick(100.23)  # repeat frame 1: frame 2 is due at 0.24
    assert pacer.pick(100.30) and pacer.current[0, 0, 0] == 2
    assert not pacer.pick(100.40)  # the generator is late: the camera repeats, never waits
    assert pacer.current_media == pytest.approx(0.04)


def test_a_late_frame_raises_the_delay_and_behind_frames_are_skipped(rig):
    audio, frames = rig
    pacer = Pacer(frames, MicClock(audio), PacerConfig(initial_delay_ms=100, margin_ms=20))
    frames.write(frame(1), media_time=0.00, ready_time=0.30)  # 300 ms generation latency
    assert not pacer.pick(100.25)
    assert pacer.delay_s == pytest.approx(0.32)
    for k in range(1, 4):
        frames.write(frame(k + 1), media_time=k * 0.04, ready_time=k * 0.04 + 0.3)
    assert pacer.pick(100.45)  # frames 0..3 are all due: the newest is shown, the others counted
    assert pacer.current[0, 0, 0] == 4 and pacer.skipped == 3


def test_one_late_chunk_is_shown_late_without_raising_the_settled_delay(rig):
    """After the first frames the delay follows p95 of the recent latencies: a single 600 ms chunk among 100 ms
    frames costs repeated frames, not 600 ms of delay for the next seconds; a lasting slowdown raises it at once."""
    audio, frames = rig
    pacer = Pacer(frames, MicClock(audio), PacerConfig(initial_delay_ms=50, margin_ms=20, latency_window=100))

    def generate(first: int, last: int, latency) -> None:  # each frame is picked up as soon as it is ready
        for k in range(first, last):
            ready = k * 0.04 + latency(k)
            frames.write(frame(k), media_time=k * 0.04, ready_time=ready)
            pacer.pick(100.0 + ready)

    generate(0, 80, lambda k: 0.6 if 60 <= k < 63 else 0.1)
    assert pacer.delay_s == pytest.approx(0.12)
    generate(80, 100, lambda k: 0.4)
    assert pacer.delay_s == pytest.approx(0.42)


def test_the_delay_falls_slowly_when_the_generator_gets_faster(rig):
    audio, frames = rig
    config = PacerConfig(initial_delay_ms=500, margin_ms=20, fall_ms_per_s=100, min_delay_ms=40)
    pacer = Pacer(frames, MicClock(audio), config)
    for k in range(20):
        frames.write(frame(k), media_time=k * 0.04, ready_time=k * 0.04 + 0.1)
    pacer.pick(100.0)
    pacer.pick(101.0)  # one second later: at most 100 ms lower
    assert pacer.delay_s == pytest.approx(0.4)
    for t in range(2, 10):
        pacer.pick(100.0 + t)
    assert pacer.delay_s == pytest.approx(0.12)  # p95(latency) + margin, not lower


def test_canvas_letterboxes_and_mirrors():
    canvas = Canvas(CameraConfig(width=64, height=32, background=(1, 2, 3), mirror=True))
    image = np.zeros((16, 16, 3), np.uint8)
    image[:, :8] = 200  # left half bright
    out = canvas.compose(image)
    assert out.shape == (32, 64, 3)
    np.testing.assert_array_equal(out[:, :16], np.broadcast_to([1, 2, 3], (32, 16, 3)))  # bars
    assert out[16, 20, 0] == 0 and out[16, 44, 0] == 200  # mirrored: the bright half is on the right
    with pytest.raises(ValueError, match="even"):
        CameraConfig(width=1279)
