"""The markdown table of scripts/gpu_bench.sh: one row per `avatar-desktop bench --json` run, under a line naming
the GPU, its driver and the torch, CUDA and TensorRT versions of this machine.

    python scripts/bench_table.py RESULTS.jsonl OUT.md

RESULTS.jsonl holds one JSON object per line: {"run": LABEL, "result": BENCH_JSON}, or {"run": LABEL, "failed":
WHY} for a run that failed or ran out of time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

COLUMNS = ("run", "fps", "first frame ms", "p50 frame ms", "p99 frame ms", "p99 / p50",
           "ms per frame: audio / denoise / decode", "peak GPU MB", "prepare s", "graphs compiled while streaming")


def environment() -> str:
    """GPU name, driver, torch, CUDA and TensorRT versions of this machine, as one line."""
    import torch

    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name()
        try:
            driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                    capture_output=True, text=True, check=True).stdout.split()[0]
        except (OSError, subprocess.CalledProcessError, IndexError):
            driver = "unknown (nvidia-smi did not answer)"
    else:
        gpu, driver = "none (CPU run)", "none"
    try:
        import tensorrt

        tensorrt_version = tensorrt.__version__
    except ImportError:
        tensorrt_version = "none"
    return (f"GPU: {gpu}; driver {driver}; torch {torch.__version__}; CUDA {torch.version.cuda or 'none'}; "
            f"TensorRT {tensorrt_version}")


def row(entry: dict) -> str:
    """One table row for a line of RESULTS.jsonl."""
    if "failed" in entry:
        return "| " + " | ".join([entry["run"], f"failed: {entry['failed']}"] + [""] * (len(COLUMNS) - 2)) + " |"
    result = entry["result"]
    stages = result["stages_ms_per_frame"]
    cells = [
        entry["run"],
        result["fps"],
        result["first_frame_ms"],
        result["p50_frame_ms"],
        result["p99_frame_ms"],
        f"{result['p99_frame_ms'] / result['p50_frame_ms']:.2f}",
        " / ".join(str(stages.get(stage, "-")) for stage in ("audio", "denoise", "decode")),
        result["peak_mem_mb"] if result["device"].startswith("cuda") else "- (CPU)",
        result.get("prepare_s", "-"),
        result.get("graphs_compiled_while_streaming", "-"),
    ]
    return "| " + " | ".join(str(cell) for cell in cells) + " |"


def table(entries: list[dict], env: str) -> str:
    """The markdown: the environment line, then the table."""
    lines = [env, "", "| " + " | ".join(COLUMNS) + " |", "| " + " | ".join("---" for _ in COLUMNS) + " |"]
    lines += [row(entry) for entry in entries]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python scripts/bench_table.py RESULTS.jsonl OUT.md", file=sys.stderr)
        return 2
    results, out = Path(argv[0]), Path(argv[1])
    entries = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    out.write_text(table(entries, environment()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
