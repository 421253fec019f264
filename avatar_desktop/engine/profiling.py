"""Where a steady chunk's time goes: torch.profiler over a few steady chunks of a prepared torch latent generator,
summarised as markdown (`avatar-desktop bench --profile FILE`): the top kernels by device time and the idle gaps
between them.

On CUDA the "kernels" are the device's kernels and copies, on every stream; on the CPU, the top-level torch
operators. Busy time is the union of their intervals (so overlapping streams count once); idle time is the rest of
the span from the first kernel's start to the last one's end.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

from avatar_desktop.config import State


@dataclass(frozen=True)
class Interval:
    """One kernel (or CPU operator) run: name, start and end in microseconds on the profiler's clock."""

    name: str
    start: float
    end: float


def profile_steady_chunks(generator, *, chunks: int = 3) -> tuple[list[Interval], int]:
    """The kernels of `chunks` steady chunks of a prepared StreamingGenerator (after its first chunk and one steady
    chunk, unprofiled: their first-use costs are not what repeats), sorted by start, and the frames profiled.
    Resets the stream before and after. With overlap_decode the profile also holds the queued next chunk's start."""
    lengths = generator.planner.plan
    steady = generator.config.fixed_chunk or lengths.steady
    frames = (generator.config.fixed_chunk or lengths.first) + (chunks + 2) * steady
    generator.reset()
    generator.push_audio(np.zeros(frames * generator.samples_per_frame + generator.audio.lookahead_samples, np.float32))
    for _ in range(2):
        generator.step(None, State.SPEAKING)
    cuda = generator.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as profiler:
        for _ in range(chunks):
            if generator.step(None, State.SPEAKING) is None:
                raise RuntimeError("internal error: a profiled chunk found no audio")
        if cuda:
            torch.cuda.synchronize(generator.device)
    generator.reset()
    events = profiler.events()
    if cuda:
        chosen = [e for e in events if e.device_type == DeviceType.CUDA]
    else:
        chosen = [e for e in events if e.device_type == DeviceType.CPU and e.cpu_parent is None]
    intervals = sorted((Interval(e.name, e.time_range.start, e.time_range.end) for e in chosen), key=lambda i: i.start)
    return intervals, chunks * steady


def idle_gaps(intervals: list[Interval]) -> tuple[float, list[tuple[float, str, str]]]:
    """(busy microseconds, gaps): the union of the intervals (sorted by start), and every gap between them as
    (microseconds, the kernel before, the kernel after), longest first."""
    busy, gaps = 0.0, []
    covered_until, last_name = None, ""
    for interval in intervals:
        if covered_until is None or interval.start > covered_until:
            if covered_until is not None:
                gaps.append((interval.start - covered_until, last_name, interval.name))
            busy += interval.end - interval.start
            covered_until, last_name = interval.end, interval.name
        elif interval.end > covered_until:
            busy += interval.end - covered_until
            covered_until, last_name = interval.end, interval.name
    return busy, sorted(gaps, reverse=True)


def profile_table(intervals: list[Interval], *, title: str, chunks: int, frames: int, top: int = 15) -> str:
    """Markdown: span, busy and idle time per frame, the `top` kernels by total time, the `top` longest gaps."""
    if not intervals:
        return f"### {title}\n\nThe profiler recorded no kernels.\n"
    span = max(i.end for i in intervals) - intervals[0].start
    busy, gaps = idle_gaps(intervals)
    totals: dict[str, list[float]] = defaultdict(list)
    for interval in intervals:
        totals[interval.name].append(interval.end - interval.start)
    ranked = sorted(totals.items(), key=lambda item: -sum(item[1]))[:top]
    per_frame = 1000 * frames
    lines = [
        f"### {title}", "",
        f"{chunks} steady chunks, {frames} frames: span {span / per_frame:.2f} ms per frame, busy "
        f"{busy / per_frame:.2f} ms ({100 * busy / span:.0f}%), idle {(span - busy) / per_frame:.2f} ms in "
        f"{len(gaps)} gaps.", "",
        "| kernel | calls | total ms | ms per frame | share of busy |", "| --- | --- | --- | --- | --- |",
    ]
    for name, durations in ranked:
        total = sum(durations)
        lines.append(f"| `{_short(name)}` | {len(durations)} | {total / 1000:.3f} | {total / per_frame:.3f} | "
                     f"{100 * total / busy:.1f}% |")
    lines += ["", "| idle gap ms | after | before |", "| --- | --- | --- |"]
    for gap, before, after in gaps[:top]:
        lines.append(f"| {gap / 1000:.3f} | `{_short(before)}` | `{_short(after)}` |")
    return "\n".join(lines) + "\n"


def _short(name: str, limit: int = 70) -> str:
    """A kernel name cut to `limit` characters, without markdown table separators."""
    name = name.replace("|", "/")
    return name if len(name) <= limit else name[: limit - 3] + "..."
