"""Single-producer rings in shared memory: audio blocks in, video frames out.

A ring is one `multiprocessing.shared_memory` segment:

    header   int64[4]                 : magic, committed item count, slot count, payload bytes per slot
    per slot int64[4] + float64[2]    : seq, item index, a, b | t0, t1
    payload  n_slots * slot_bytes     : raw bytes

Writing item k to slot k % n_slots is a seqlock: seq becomes odd, the payload and meta are written, seq becomes
even, then the committed count becomes k + 1. A reader copies slot k, then re-reads seq: if it changed, was odd,
or the slot's item index is not k, the copy is torn (the writer lapped the reader, or died mid-write) and is never
returned. The writer never waits for readers; each reader keeps its own cursor, so several readers (worker, VAD,
passthrough) may follow one writer. CPython's stores are done in program order and x86/ARM64 keep them visible
in order for aligned 8-byte words, which is all the seqlock needs.

Segment names are `avd-<pid>-<token>-<role>`, unique per session. Where segments are files (Linux /dev/shm) the
owner holds a shared `flock` on its segments while it lives; the kernel drops it when the owner dies, however it
dies (SIGKILL included). The owner writes the header's magic only once it holds the lock, so a segment with the
magic, no holder and no process of its pid is a dead session's: `clean_stale_segments` removes it at once. Neither a
live session in another PID namespace (it holds the lock) nor one whose pid was reused is touched.
"""

from __future__ import annotations

import os
import secrets
import sys
import time
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path

import numpy as np

from avatar_desktop.errors import AvatarError

try:
    import fcntl
except ImportError:  # Windows: segments die with their last handle, nothing to lock or clean
    fcntl = None

SEGMENT_PREFIX = "avd-"
_MAGIC = 0x41564452494E4731  # "AVDRING1"
_HEADER_WORDS = 4
_META_INTS = 4
_META_FLOATS = 2
_SLOT_META_BYTES = 8 * (_META_INTS + _META_FLOATS)


class RingError(AvatarError):
    """A shared-memory ring that cannot be created or attached (name taken, segment missing or foreign)."""


@dataclass(frozen=True)
class Slot:
    """One item read from a ring: its index, two integers and two float64 times of meta, and a copy of its bytes."""

    index: int
    a: int
    b: int
    t0: float
    t1: float
    payload: np.ndarray  # uint8 (nbytes,), a private copy


def segment_name(token: str, role: str) -> str:
    """Name for this process' segment `role` of a session identified by `token`."""
    return f"{SEGMENT_PREFIX}{os.getpid()}-{token}-{role}"


def new_session_token() -> str:
    return secrets.token_hex(4)


SHM_DIR = Path("/dev/shm")


def _hold_lock(name: str) -> int | None:
    """Take a shared flock on segment `name` for as long as this process lives; the fd, or None (no /dev/shm)."""
    try:
        fd = os.open(SHM_DIR / name, os.O_RDONLY)
    except OSError:
        return None
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def _pid_alive(pid_text: str) -> bool:
    if not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, not ours to signal
        return True
    return True


def clean_stale_segments(shm_dir: Path = SHM_DIR, *, min_age_s: float = 10.0) -> list[str]:
    """Unlink ring segments nobody holds and whose owner pid is gone (left by a crashed run); returns their names.

    A segment that nobody holds but that lacks the ring magic is left alone until it is `min_age_s` old: its owner
    may be about to lock it. Only systems with a listable shared-memory folder (Linux) have such leftovers; on
    Windows a segment dies with its last handle, and macOS cannot list them, so there this does nothing.
    """
    if fcntl is None or not shm_dir.is_dir():
        return []
    removed = []
    for path in shm_dir.glob(f"{SEGMENT_PREFIX}*"):
        if _pid_alive(path.name[len(SEGMENT_PREFIX) :].split("-", 1)[0]):
            continue
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            locked_once = int.from_bytes(os.pread(fd, 8, 0), sys.byteorder) == _MAGIC
            if locked_once or time.time() - os.fstat(fd).st_mtime >= min_age_s:
                path.unlink(missing_ok=True)
                removed.append(path.name)
        except OSError:  # its owner is alive (it holds the lock), or the segment went away
            continue
        finally:
            os.close(fd)
    return removed


def _attach_untracked(name: str) -> shared_memory.SharedMemory:
    """Attach to an existing segment without registering it with this process' resource tracker.

    Python < 3.13 registers attached segments too, and a spawned worker shares its parent's tracker: its
    registration would make the tracker unlink the session's segments behind the owner's back.
    """
    if sys.version_info >= (3, 13):
        return shared_memory.SharedMemory(name=name, track=False)
    register = resource_tracker.register
    resource_tracker.register = lambda *args, **kwargs: None
    try:
        return shared_memory.SharedMemory(name=name)
    finally:
        resource_tracker.register = register


class _LocalMemory:
    """The part of SharedMemory's interface a ring uses, over private memory (rings that never leave a process)."""

    def __init__(self, size: int):
        self.buf = memoryview(bytearray(size))
        self.name = f"local-{id(self):x}"

    def close(self) -> None:
        self.buf.release()

    def unlink(self) -> None:
        pass


class SlotRing:
    """A ring of `n_slots` fixed-size slots in one shared-memory segment (see the module docstring).

    Create it in the owning process with `SlotRing.create(...)`; other processes `SlotRing.attach(name)`.
    The owner calls `unlink()` once, on every exit path; everybody calls `close()`. `SlotRing.create(None, ...)`
    makes the same ring in private memory, for threads of one process.
    """

    def __init__(self, shm: shared_memory.SharedMemory, *, owner: bool):
        self._shm = shm
        self.owner = owner
        self._lock_fd = _hold_lock(shm.name) if owner and fcntl is not None and not isinstance(shm, _LocalMemory) else None
        header = np.ndarray((_HEADER_WORDS,), np.int64, shm.buf, 0)
        if owner:
            header[0] = _MAGIC  # only now that the lock is held: see clean_stale_segments
        if header[0] != _MAGIC:
            raise RingError(f"shared-memory segment {shm.name!r} is not an avatar-desktop ring")
        self._header = header
        self.n_slots = int(header[2])
        self.slot_bytes = int(header[3])
        meta_offset = 8 * _HEADER_WORDS
        self._ints = np.ndarray((self.n_slots, _META_INTS + _META_FLOATS), np.int64, shm.buf, meta_offset)
        self._floats = self._ints.view(np.float64)
        payload_offset = meta_offset + self.n_slots * _SLOT_META_BYTES
        self._payload = np.ndarray((self.n_slots, self.slot_bytes), np.uint8, shm.buf, payload_offset)

    @classmethod
    def create(cls, name: str | None, *, n_slots: int, slot_bytes: int) -> "SlotRing":
        """A new ring; `name=None` keeps it in private memory (same process only)."""
        if n_slots < 2 or slot_bytes < 1:
            raise ValueError(f"a ring needs >= 2 slots of >= 1 byte, got {n_slots} slots of {slot_bytes} bytes")
        size = 8 * _HEADER_WORDS + n_slots * (_SLOT_META_BYTES + slot_bytes)
        if name is None:
            shm = _LocalMemory(size)
        else:
            try:
                shm = shared_memory.SharedMemory(name=name, create=True, size=size)
            except FileExistsError:
                raise RingError(f"shared-memory segment {name!r} already exists") from None
        header = np.ndarray((_HEADER_WORDS,), np.int64, shm.buf, 0)
        header[:] = (0, 0, n_slots, slot_bytes)  # the magic follows once the owner holds the lock (__init__)
        del header
        return cls(shm, owner=True)

    @classmethod
    def attach(cls, name: str) -> "SlotRing":
        try:
            shm = _attach_untracked(name)
        except FileNotFoundError:
            raise RingError(f"shared-memory segment {name!r} does not exist (did its session end?)") from None
        return cls(shm, owner=False)

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def count(self) -> int:
        """Items committed so far (the index the next write gets)."""
        return int(self._header[1])

    # -- writer side (one writer at a time) -------------------------------------------------------------------

    def write(self, payload: np.ndarray, *, a: int = 0, b: int = 0, t0: float = 0.0, t1: float = 0.0) -> int:
        """Commit one item; payload is any C-contiguous array of at most `slot_bytes` bytes. Returns its index.

        Allocation-free, so it may run in an audio callback.
        """
        data = payload.reshape(-1).view(np.uint8)
        if data.size > self.slot_bytes:
            raise ValueError(f"payload of {data.size} bytes does not fit a {self.slot_bytes}-byte slot")
        index = int(self._header[1])
        slot = index % self.n_slots
        meta = self._ints[slot]
        seq = meta[0] | 1
        meta[0] = seq  # odd: being written
        self._payload[slot, : data.size] = data
        meta[1] = index
        meta[2] = a
        meta[3] = b
        self._floats[slot, 4] = t0
        self._floats[slot, 5] = t1
        meta[0] = seq + 1  # even: stable
        self._header[1] = index + 1
        return index

    # -- reader side ----------------------------------------------------------------------------------------

    def read(self, index: int, nbytes: int | None = None) -> Slot | None:
        """Copy item `index`, or None when it is not committed yet, was overwritten, or the copy was torn."""
        if index < 0 or index >= int(self._header[1]):
            return None
        slot = index % self.n_slots
        meta = self._ints[slot]
        seq = int(meta[0])
        if seq & 1 or int(meta[1]) != index:
            return None
        a, b = int(meta[2]), int(meta[3])
        t0, t1 = float(self._floats[slot, 4]), float(self._floats[slot, 5])
        payload = self._payload[slot, : self.slot_bytes if nbytes is None else nbytes].copy()
        if int(meta[0]) != seq or int(meta[1]) != index:
            return None
        return Slot(index, a, b, t0, t1, payload)

    def close(self) -> None:
        self._header = self._ints = self._floats = self._payload = None  # drop views before closing the mapping
        self._shm.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def unlink(self) -> None:
        """Remove the segment (owner only); safe to call twice."""
        if not self.owner:
            return
        try:
            self._shm.unlink()
        except FileNotFoundError:
            pass
        self.owner = False


class AudioRing:
    """16 kHz mono float32 audio in blocks, on the microphone's clock.

    Slot meta: a = first sample index of the block (media time = a / 16000), b = number of samples,
    t0 = `time.monotonic()` when the block was copied in. The producer is the capture callback.
    """

    def __init__(self, ring: SlotRing):
        self.ring = ring
        self.block_samples = ring.slot_bytes // 4
        self._samples_written = self._last_end()

    @classmethod
    def create(cls, name: str | None, *, seconds: float = 10.0, block_samples: int = 320, sample_rate: int = 16000):
        """A ring holding at least `seconds` of audio written in blocks of `block_samples` (the capture's block);
        slots take up to 4 blocks, so that a writer with larger blocks loses nothing either."""
        n_slots = max(4, int(np.ceil(seconds * sample_rate / block_samples)))
        return cls(SlotRing.create(name, n_slots=n_slots, slot_bytes=4 * 4 * block_samples))

    @classmethod
    def attach(cls, name: str) -> "AudioRing":
        return cls(SlotRing.attach(name))

    def _last_end(self) -> int:
        last = self.ring.read(self.ring.count - 1, 0)
        return 0 if last is None else last.a + last.b

    def end_sample(self) -> int:
        """Sample index one past the newest committed sample, as any reader sees it."""
        return self._last_end()

    def newest(self) -> Slot | None:
        """Meta of the newest committed block (payload not copied)."""
        return self.ring.read(self.ring.count - 1, 0)

    def write(self, samples: np.ndarray, now: float) -> None:
        """Append float32 (N,) samples captured at monotonic time `now`; splits N > block_samples. No allocation."""
        start = 0
        while start < samples.shape[0]:
            block = samples[start : start + self.block_samples]
            self.ring.write(block, a=self._samples_written, b=block.shape[0], t0=now)
            self._samples_written += block.shape[0]
            start += block.shape[0]


class AudioReader:
    """A reader's cursor on an AudioRing: `read()` returns the new samples since the last call.

    When the reader fell more than the ring's length behind (or hit a torn block), the lost samples are counted in
    `samples_lost` and reading resumes at the oldest block still intact; `position` is the sample index after the
    last returned sample, so callers always know where on the mic clock they are.
    """

    def __init__(self, ring: AudioRing, *, from_now: bool = True):
        self.ring = ring
        count = ring.ring.count
        newest = ring.ring.read(count - 1, 0) if (from_now and count) else None
        self._next_block = count if from_now else max(0, count - ring.ring.n_slots + 1)
        self.position: int | None = (newest.a + newest.b) if newest is not None else (0 if from_now else None)
        self.samples_lost = 0

    def read(self, max_blocks: int | None = None) -> np.ndarray:
        """float32 (N,) samples from `position` on (N may be 0)."""
        ring = self.ring.ring
        count = ring.count
        if max_blocks is not None:
            count = min(count, self._next_block + max_blocks)
        pieces = []
        while self._next_block < count:
            slot = ring.read(self._next_block, 4 * self.ring.block_samples)
            if slot is None:  # lapped by the writer: skip to the oldest block that is still there
                oldest = max(self._next_block + 1, ring.count - ring.n_slots + 1)
                self._next_block = oldest
                continue
            if self.position is not None and slot.a != self.position:
                self.samples_lost += max(0, slot.a - self.position)
            pieces.append(slot.payload.view(np.float32)[: slot.b])
            self.position = slot.a + slot.b
            self._next_block += 1
        if not pieces:
            return np.zeros(0, np.float32)
        return np.concatenate(pieces)


class FrameRing:
    """Video frames with media timestamps, written by the generator worker, read by the camera pacer.

    Slot meta: a = frame height, b = frame width (pixels; the frame is uint8 (a, b, 3) RGB), t0 = media time of
    the frame's audio in mic-clock seconds, t1 = mic-clock seconds when the frame was written (t1 - t0 is the
    frame's generation latency).
    """

    def __init__(self, ring: SlotRing):
        self.ring = ring
        self.max_pixels = ring.slot_bytes // 3

    @classmethod
    def create(cls, name: str, *, n_slots: int = 24, max_pixels: int = 512 * 512) -> "FrameRing":
        """A ring of `n_slots` frames of at most `max_pixels` pixels (height x width) each."""
        return cls(SlotRing.create(name, n_slots=n_slots, slot_bytes=max_pixels * 3))

    @classmethod
    def attach(cls, name: str) -> "FrameRing":
        return cls(SlotRing.attach(name))

    def write(self, frame: np.ndarray, media_time: float, ready_time: float) -> int:
        """frame: uint8 (H, W, 3) RGB with H * W within the ring's capacity."""
        if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise ValueError(f"expected a uint8 (H, W, 3) frame, got {frame.dtype} {frame.shape}")
        if frame.shape[0] * frame.shape[1] > self.max_pixels:
            raise RingError(
                f"frame {frame.shape[1]}x{frame.shape[0]} exceeds the frame ring's {self.max_pixels} pixels"
                " (frames larger than the camera canvas are a bug in the generator)"
            )
        return self.ring.write(np.ascontiguousarray(frame), a=frame.shape[0], b=frame.shape[1], t0=media_time,
                               t1=ready_time)

    def read(self, index: int) -> tuple[np.ndarray, float, float] | None:
        """(frame uint8 (H, W, 3), media time s, ready time s) of item `index`, or None (not there, or torn)."""
        meta = self.ring.read(index, 0)
        if meta is None:
            return None
        slot = self.ring.read(index, meta.a * meta.b * 3)
        if slot is None or (slot.a, slot.b) != (meta.a, meta.b):
            return None
        return slot.payload.reshape(slot.a, slot.b, 3), slot.t0, slot.t1
