"""Shared-memory rings: round trips, overruns, torn reads, cross-process use and segment cleanup."""

import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avatar_desktop.runtime.rings import (
    AudioReader,
    AudioRing,
    FrameRing,
    RingError,
    SlotRing,
    clean_stale_segments,
    new_session_token,
    segment_name,
)


@pytest.fixture
def names():
    token = new_session_token()
    made = []

    def make(role):
        made.append(segment_name(token, role))
        return made[-1]

    yield make
    for name in made:
        Path("/dev/shm", name).unlink(missing_ok=True)


def test_audio_round_trip_keeps_sample_positions(names):
    ring = AudioRing.create(names("audio"), seconds=1.0, block_samples=256)
    reader = AudioReader(ring)
    signal = np.arange(1200, dtype=np.float32)
    ring.write(signal[:1100], now=1.0)  # split: a slot takes 4 * 256 samples
    ring.write(signal[1100:], now=2.0)
    got = reader.read()
    np.testing.assert_array_equal(got, signal)
    assert reader.position == 1200 and reader.samples_lost == 0
    assert ring.ring.count == 3  # 1024 + 76, then 100
    assert ring.newest().t0 == 2.0 and ring.end_sample() == 1200
    ring.ring.close()
    ring.ring.unlink()


def test_lapped_reader_counts_lost_samples_and_resumes_in_order(names):
    ring = AudioRing.create(names("audio"), seconds=4 * 100 / 16000, block_samples=100)
    assert ring.ring.n_slots == 4
    reader = AudioReader(ring)
    for k in range(10):
        ring.write(np.full(100, k, np.float32), now=0.0)
    got = reader.read()
    # the 4 newest blocks survive, except the oldest of them may be the one the writer is about to overwrite
    assert reader.position == 1000
    assert reader.samples_lost == 1000 - got.size
    assert got.size >= 300
    np.testing.assert_array_equal(got, np.repeat(np.arange(10 - got.size // 100, 10), 100).astype(np.float32))
    ring.ring.close()
    ring.ring.unlink()


def test_torn_slot_is_never_returned(names):
    ring = FrameRing.create(names("frames"), n_slots=3, max_pixels=64)
    frame = np.full((8, 8, 3), 7, np.uint8)
    index = ring.write(frame, media_time=0.04, ready_time=0.2)
    ring.ring._ints[index % 3, 0] += 1  # the writer died between its two sequence bumps
    assert ring.read(index) is None
    ring.ring._ints[index % 3, 0] += 1
    got, media, ready = ring.read(index)
    np.testing.assert_array_equal(got, frame)
    assert (media, ready) == (0.04, 0.2)
    assert ring.read(index + 1) is None  # not written yet
    for _ in range(3):
        ring.write(frame, media_time=0.0, ready_time=0.0)
    assert ring.read(index) is None  # overwritten
    ring.ring.close()
    ring.ring.unlink()


def test_frame_ring_rejects_bad_frames(names):
    ring = FrameRing.create(names("frames"), n_slots=2, max_pixels=16)
    with pytest.raises(RingError, match="exceeds"):
        ring.write(np.zeros((8, 8, 3), np.uint8), 0.0, 0.0)
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\)"):
        ring.write(np.zeros((4, 4), np.float32), 0.0, 0.0)
    ring.ring.close()
    ring.ring.unlink()


def _write_frames(name, n):
    ring = FrameRing.attach(name)
    for k in range(n):
        ring.write(np.full((16, 12, 3), k, np.uint8), media_time=k / 25, ready_time=k / 25 + 0.1)
    ring.ring.close()


def test_frames_cross_processes_and_the_worker_does_not_unlink(names):
    ring = FrameRing.create(names("frames"), n_slots=8, max_pixels=256)
    proc = mp.get_context("spawn").Process(target=_write_frames, args=(ring.ring.name, 5))
    proc.start()
    proc.join(60)
    assert proc.exitcode == 0
    assert ring.ring.count == 5
    frame, media, _ = ring.read(4)
    assert frame.shape == (16, 12, 3) and frame[0, 0, 0] == 4 and media == pytest.approx(4 / 25)
    assert Path("/dev/shm", ring.ring.name).exists()
    ring.ring.close()
    ring.ring.unlink()
    assert not Path("/dev/shm", ring.ring.name).exists()


def test_attach_to_missing_or_foreign_segment_says_so(names):
    with pytest.raises(RingError, match="does not exist"):
        SlotRing.attach(names("missing"))
    from multiprocessing import shared_memory

    foreign = shared_memory.SharedMemory(name=names("foreign"), create=True, size=64)
    with pytest.raises(RingError, match="not an avatar-desktop ring"):
        SlotRing.attach(foreign.name)
    foreign.close()
    foreign.unlink()


def test_only_segments_nobody_holds_are_cleaned():
    stale = Path("/dev/shm", "avd-999999-deadbeef-audio")  # left by a run whose process and tracker both died
    stale.write_bytes(b"\0" * 64)
    mine = SlotRing.create(segment_name(new_session_token(), "live"), n_slots=2, slot_bytes=8)
    try:
        assert stale.name not in clean_stale_segments()  # too young: its owner might be about to lock it
        removed = clean_stale_segments(min_age_s=0)
        assert stale.name in removed and not stale.exists()
        assert Path("/dev/shm", mine.name).exists()  # we hold it: kept
        held_elsewhere = Path("/dev/shm", "avd-999998-0ddba11-frames")  # a live session in another pid namespace
        held = SlotRing.create(held_elsewhere.name, n_slots=2, slot_bytes=8)
        assert held_elsewhere.name not in clean_stale_segments(min_age_s=0)
        held.close()
        held.unlink()
    finally:
        stale.unlink(missing_ok=True)
        mine.close()
        mine.unlink()


def test_segments_of_a_session_killed_with_sigkill_are_cleaned_at_once():
    """The owner dies without unlinking (SIGKILL); the next start removes its segments at once, not seconds later."""
    script = ("import sys, time\n"
              "import numpy as np\n"
              "from avatar_desktop.runtime.rings import AudioRing, FrameRing, new_session_token, segment_name\n"
              "token = new_session_token()\n"
              "audio = AudioRing.create(segment_name(token, 'audio'))\n"
              "frames = FrameRing.create(segment_name(token, 'frames'), n_slots=4, max_pixels=64 * 64)\n"
              "audio.write(np.zeros(320, np.float32), time.monotonic())\n"
              "frames.write(np.zeros((64, 64, 3), np.uint8), 0.0, 0.0)\n"
              "print(audio.ring.name, frames.ring.name, flush=True)\n"
              "time.sleep(60)\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    names = owner.stdout.readline().split()
    owner.kill()
    owner.wait(timeout=10)
    try:
        assert len(names) == 2 and all(Path("/dev/shm", name).exists() for name in names)
        started = time.monotonic()
        assert sorted(clean_stale_segments()) == sorted(names)
        assert time.monotonic() - started < 1.0
        assert not any(Path("/dev/shm", name).exists() for name in names)
    finally:
        for name in names:
            Path("/dev/shm", name).unlink(missing_ok=True)
