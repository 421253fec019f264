"""The torch generator's fast path (issue 28, docs/PERFORMANCE.md): compiled stages, decoding that does not wait
for the device, and stage times that add no host sync.

CompiledStages: torch.compile of the preconditioned denoiser (AvatarModel.denoise) and of the decoder
(streaming.decode_pixels), static shapes, one graph per chunk length; StreamingGenerator.prepare() compiles and
warms every length the chunk plan uses, and a chunk of any other length (the short last chunk of a finished stream)
runs eagerly, so that nothing compiles while a session streams.
ChunkDecoder: queues a chunk's decode and its copy to (pinned) host memory; with `overlap` on CUDA on a second
stream, ordered after the denoiser by an event, so that decoding chunk k runs while chunk k+1 is denoised. On the
CPU with `overlap` it decodes on a second thread (latent_stream.DecodeThread), else at once.
StageClock: per-stage milliseconds from perf_counter on the CPU and from CUDA events on the GPU.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from avatar_desktop.engine.latent_stream import DecodeThread


def compiled_graph_count() -> int:
    """Graphs torch.compile has built in this process so far (dynamo's counter): a rise while streaming is a
    recompilation."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


class CompiledStages:
    """The denoiser x, sigma, cond -> clean estimate and the decoder latents (T, C, h, w) -> uint8 (T, H, W, 3),
    compiled (static shapes) for the chunk lengths in `lengths` and eager for the others."""

    RECOMPILE_LIMIT = 64
    """Graphs dynamo keeps per function: one per chunk length and model architecture (and device, dtype) this
    process has compiled; past its default of 8 it would run new lengths eagerly without saying so."""

    def __init__(self, denoise: Callable, decode: Callable, backend: str = "inductor"):
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, self.RECOMPILE_LIMIT)
        self._eager = (denoise, decode)
        self._compiled = tuple(torch.compile(stage, dynamic=False, backend=backend) for stage in (denoise, decode))
        self.lengths: set[int] = set()  # filled by prepare()'s warm-up, which compiles them

    def for_length(self, frames: int) -> tuple[Callable, Callable]:
        """(denoise, decode) for a chunk of `frames` frames."""
        return self._compiled if frames in self.lengths else self._eager


class StageClock:
    """Milliseconds per stage of one chunk. On the CPU from perf_counter as the stages run; on CUDA from events
    recorded on the stream current in `stage()`, read by `milliseconds()` once the chunk's frames are on the host
    (so timing adds no host sync; a stage's time is then the device's, launch gaps included)."""

    def __init__(self, device: torch.device):
        self._cuda = device.type == "cuda"
        self._marks: dict[str, tuple] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
        else:
            start = time.perf_counter()
            yield
            end = time.perf_counter()
        self._marks[name] = (start, end)

    def milliseconds(self) -> dict[str, float]:
        """Each stage's time; on CUDA only after the stages' work has finished."""
        if self._cuda:
            return {name: start.elapsed_time(end) for name, (start, end) in self._marks.items()}
        return {name: (end - start) * 1000 for name, (start, end) in self._marks.items()}


@dataclass
class QueuedFrames:
    """A chunk's frames on their way to the host: uint8 (T, H, W, 3), complete once `done` is (a CUDA event, or on
    the CPU the decode thread's Future of the frames; None: `host` holds them)."""

    host: torch.Tensor | None
    done: torch.cuda.Event | Future | None


class ChunkDecoder:
    """Decodes chunks without waiting for them: `queue(latents, decode, clock)` then, later, `collect(queued)`."""

    def __init__(self, device: torch.device, *, overlap: bool):
        self.device = device
        self.stream = torch.cuda.Stream(device) if overlap and device.type == "cuda" else None
        self.thread = DecodeThread() if overlap and device.type != "cuda" else None

    def queue(self, latents: torch.Tensor, decode: Callable, clock: StageClock) -> QueuedFrames:
        """Start decoding latents (T, C, h, w) with `decode` (latents -> uint8 (T, H, W, 3) on the device) and
        copying the frames to the host; on CUDA after the work queued so far on the current stream."""
        if self.device.type != "cuda":
            if self.thread is not None:
                return QueuedFrames(None, self.thread.submit(_decode_on_cpu, decode, latents, clock))
            return QueuedFrames(_decode_on_cpu(decode, latents, clock), None)
        stream = self.stream or torch.cuda.current_stream(self.device)
        denoised = torch.cuda.Event()
        denoised.record()
        with torch.cuda.stream(stream):
            stream.wait_event(denoised)
            latents.record_stream(stream)  # made on the denoiser's stream: not reused before this decode is done
            with clock.stage("decode"):
                pixels = decode(latents)
                host = torch.empty(pixels.shape, dtype=pixels.dtype, pin_memory=True)
                host.copy_(pixels, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
        return QueuedFrames(host, done)

    @staticmethod
    def collect(queued: QueuedFrames) -> np.ndarray:
        """The frames uint8 (T, H, W, 3), waiting for their decode and copy if they are still running."""
        if isinstance(queued.done, Future):
            return queued.done.result().numpy()
        if queued.done is not None:
            queued.done.synchronize()
        return queued.host.numpy()


def _decode_on_cpu(decode: Callable, latents: torch.Tensor, clock: StageClock) -> torch.Tensor:
    """`decode(latents)`, timed as the chunk's decode stage; without autograd (which is per thread)."""
    with torch.inference_mode(), clock.stage("decode"):
        return decode(latents)
