"""What of scripts/gpu_bench.sh runs without a GPU: its argument checks, the table writer, `bench --profile` and
the idle-gap arithmetic; the whole script as a CPU smoke run (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from avatar_desktop.cli import main
from avatar_desktop.config import EngineConfig
from avatar_desktop.engine.bench import run_benchmark
from avatar_desktop.engine.profiling import Interval, idle_gaps, profile_steady_chunks, profile_table
from avatar_desktop.engine.streaming import StreamingGenerator
from avatar_desktop.models.presets import build_model, tiny_test_config

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "gpu_bench.sh"


def _script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600)


def test_the_script_parses_and_refuses_what_it_cannot_run(tmp_path):
    assert subprocess.run(["bash", "-n", str(SCRIPT)]).returncode == 0
    no_out = _script()
    assert no_out.returncode == 2 and "scripts/gpu_bench.sh OUT.md" in no_out.stderr
    bad_device = _script(str(tmp_path / "out.md"), "--device", "tpu")
    assert bad_device.returncode == 2 and "--device must be cuda or cpu, not tpu" in bad_device.stderr
    empty = tmp_path / "wheels"
    empty.mkdir()
    no_wheels = _script(str(tmp_path / "out.md"), "--wheels", str(empty))
    assert no_wheels.returncode == 2 and f"no .whl files in {empty}" in no_wheels.stderr
    no_cuda = _script(str(tmp_path / "out.md"))  # this machine has no CUDA device
    assert no_cuda.returncode == 2 and "torch sees no CUDA device here (use --device cpu" in no_cuda.stderr
    assert not (tmp_path / "out.md").exists()


def test_the_table_has_a_row_per_run_under_the_machine_line(portrait, tmp_path):
    generator = StreamingGenerator(build_model(tiny_test_config(), seed=0), EngineConfig(precision="fp32"))
    generator.prepare(portrait, warmup=False)
    result = run_benchmark(generator, seconds=1.0)
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"run": "tiny-test fp32 eager", "result": result}) + "\n"
                       + json.dumps({"run": "llia-512 fp16 compile", "failed": "timed out after 150 s"}) + "\n")
    out = tmp_path / "table.md"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_table.py"), str(results), str(out)], check=True)
    lines = out.read_text().splitlines()
    assert lines[0].startswith("GPU: none (CPU run); driver none; torch ") and lines[0].endswith("; TensorRT none")
    assert lines[2].startswith("| run | fps | first frame ms | p50 frame ms | p99 frame ms |")
    cells = [cell.strip() for cell in lines[4].strip("|").split("|")]
    assert cells[:5] == ["tiny-test fp32 eager", str(result["fps"]), str(result["first_frame_ms"]),
                         str(result["p50_frame_ms"]), str(result["p99_frame_ms"])]
    assert cells[6] == " / ".join(str(result["stages_ms_per_frame"][s]) for s in ("audio", "denoise", "decode"))
    assert lines[5].startswith("| llia-512 fp16 compile | failed: timed out after 150 s |")
    assert len(lines) == 6


def test_a_profile_of_steady_chunks_lists_the_top_kernels_and_idle_gaps(portrait):
    generator = StreamingGenerator(build_model(tiny_test_config(), seed=0), EngineConfig(precision="fp32"))
    generator.prepare(portrait, warmup=False)
    intervals, frames = profile_steady_chunks(generator, chunks=1)
    assert frames == 4 and intervals == sorted(intervals, key=lambda interval: interval.start)
    text = profile_table(intervals, title="tiny-test", chunks=1, frames=frames, top=3)
    lines = text.splitlines()
    assert lines[0] == "### tiny-test" and lines[2].startswith("1 steady chunks, 4 frames: span ")
    assert lines[4:6] == ["| kernel | calls | total ms | ms per frame | share of busy |", "| --- | --- | --- | --- | --- |"]
    assert len([line for line in lines if line.startswith("| `aten::")]) == 3
    assert "| idle gap ms | after | before |" in lines
    assert generator.frame_index == 0  # the stream is reset afterwards


def test_bench_profile_writes_the_top_kernels_and_idle_gaps(tmp_path, capsys):
    out = tmp_path / "profiles" / "tiny.md"
    assert main(["bench", "--preset", "tiny-test", "--random-weights", "--seconds", "1", "--precision", "fp32",
                 "--json", "--profile", str(out)]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert result["prepare_s"] > 0
    text = out.read_text()
    assert text.startswith("### tiny-test float32 eager on cpu\n\n3 steady chunks, 12 frames: span ")
    assert "| `aten::linear` |" in text and "| idle gap ms | after | before |" in text


def test_idle_gaps_count_overlapping_streams_once():
    intervals = [Interval("denoise", 0, 10), Interval("decode", 5, 12), Interval("copy", 15, 16),
                 Interval("inside", 15.2, 15.8), Interval("next", 20, 21)]
    busy, gaps = idle_gaps(intervals)
    assert busy == 12 + 1 + 1
    assert gaps == [(4, "copy", "next"), (3, "decode", "copy")]


@pytest.mark.slow
def test_the_script_runs_on_the_cpu_and_writes_its_table(tmp_path):
    out = tmp_path / "bench" / "table.md"
    done = _script(str(out), "--device", "cpu", "--seconds", "1")
    assert done.returncode == 0, done.stderr
    rows = [line for line in out.read_text().splitlines() if line.startswith("| tiny-cpu")]
    assert [row.split("|")[1].strip() for row in rows] == ["tiny-cpu fp32 eager", "tiny-cpu fp32 overlap",
                                                           "tiny-cpu onnx fp32"]  # its export, on onnxruntime
    assert all(float(row.split("|")[2]) > 0 for row in rows)
    assert (tmp_path / "bench" / "table.md.log").stat().st_size > 0
