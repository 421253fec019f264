"""Whether an exported model's int8 graphs pay on this machine, which decides what `--precision auto` runs.

int8 runs by default where its graphs take at most INT8_WINS of float's time and save at least INT8_MIN_SAVING_MS
a chunk. How fast int8 is depends on the CPU's int8 instructions, so the answer is the machine's: `export --int8`
times the precisions on the exporting machine (engine/onnx_quantize.py writes the answer as model.json's
"default_precision"), and the app times them again where it runs, once per CPU, onnxruntime version, model files
and thread count, and keeps the answer in the user cache (`files.user_cache_folder() / "precision.json"`).
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from avatar_desktop.errors import OutputError
from avatar_desktop.files import user_cache_folder, write_bytes_atomic

INT8_WINS = 0.8
INT8_MIN_SAVING_MS = 1.0
"""It costs a little quality (docs/PERFORMANCE.md), so a gain within timing noise, or on graphs that take well
under a millisecond anyway (the motion model's), is not enough."""
TIMED_RUNS = 7
KEPT_ANSWERS = 32


def int8_pays(fp32_ms: float, int8_ms: float) -> bool:
    """Whether int8 graphs timed at `int8_ms` a chunk should run by default instead of float ones at `fp32_ms`."""
    return int8_ms <= INT8_WINS * fp32_ms and fp32_ms - int8_ms >= INT8_MIN_SAVING_MS


def time_precisions(runners: dict[str, Callable[[str, dict[str, np.ndarray]], Any]],
                    feeds: dict[str, dict[str, np.ndarray]]) -> dict[str, float]:
    """Precision -> ms of one run of every graph in `feeds` (graph -> its inputs), summed. `runners`: precision ->
    run(graph, inputs). The precisions take turns, TIMED_RUNS times after a warm-up round, and each keeps its
    fastest run: other work on the machine slows runs down, never speeds them up."""
    best = dict.fromkeys(runners, 0.0)
    for graph, inputs in feeds.items():
        fastest = dict.fromkeys(runners, float("inf"))
        for round_index in range(TIMED_RUNS + 1):
            for precision, run in runners.items():
                start = time.perf_counter()
                run(graph, inputs)
                if round_index:  # the first run of a session allocates its buffers
                    fastest[precision] = min(fastest[precision], (time.perf_counter() - start) * 1000)
        for precision in runners:
            best[precision] += fastest[precision]
    return best


def machine_key(files: list[Path], threads: int | None, runtime_version: str) -> str:
    """What the answer depends on: the CPU, the runtime's version, the thread count and the model's timed files
    (their path, size and modification time)."""
    stamps = [f"{file.resolve()}:{file.stat().st_size}:{file.stat().st_mtime_ns}" for file in files]
    return " | ".join([cpu_name(), f"onnxruntime {runtime_version}", f"threads {threads or 'all'}", *stamps])


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere what the platform module says)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_precision(key: str, time_both: Callable[[], dict[str, float]], cache_file: Path | None = None) -> str:
    """'int8' or 'fp32' for the model and machine `key` (machine_key) names: read from `cache_file` (default: the
    user cache's precision.json) when this machine has timed it, else `time_both()` (precision -> ms a chunk, e.g.
    time_precisions on a steady chunk) is judged by int8_pays and the answer stored there. A cache that cannot be
    read or written costs a new timing next time, nothing else."""
    cache_file = cache_file or user_cache_folder() / "precision.json"
    try:
        answers = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        answers = {}
    answers = answers if isinstance(answers, dict) else {}
    if answers.get(key) in ("fp32", "int8"):
        return answers[key]
    timings = time_both()
    answers[key] = "int8" if int8_pays(timings["fp32"], timings["int8"]) else "fp32"
    answers = dict(list(answers.items())[-KEPT_ANSWERS:])  # the latest: old exports and test folders drop out
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(cache_file, (json.dumps(answers, indent=1) + "\n").encode())
    except (OSError, OutputError):
        pass
    return answers[key]
