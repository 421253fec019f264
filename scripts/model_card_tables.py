"""Markdown tables for a model card from the JSON files scripts/evaluate_default.sh writes.

    .venv/bin/python scripts/model_card_tables.py runs/eval

Prints one table of the eval metrics (one column per evaluation found), the expression response, the long run and
the benchmarks, with the targets of the training issue beside them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

EVALUATIONS = {  # file stem -> column title
    "student": "student, 1 step (shipped)",
    "teacher_10steps": "teacher, 10 Heun steps",
    "chunk_1": "chunk 1",
    "chunk_2": "chunk 2",
    "chunk_4": "chunk 4",
    "chunk_8": "chunk 8 (L_max)",
    "autoencoder": "autoencoder only (ceiling)",
    "still_head": "still-head baseline (bound outside the mouth)",
}
METRICS = [  # (section, key, label, target)
    ("lip_sync", "pearson", "lip-sync Pearson r, lag 0", ""),
    ("lip_sync", "pearson_at_best_lag", "lip-sync r at the best lag", ">= 0.80 within +-1 frame"),
    ("lip_sync", "best_lag_frames", "best lag (frames, median)", "0 +- 1"),
    ("lip_sync", "closure_rate", "p/b/m closure rate", ">= 0.85"),
    ("lip_sync", "closure_chance", "closure by chance", ""),
    ("states", "listening_mouth_closed", "mouth closed, listening", ">= 0.95"),
    ("states", "idle_mouth_closed", "mouth closed, idle", ">= 0.95"),
    ("temporal", "chunk_boundary_ratio", "chunk-boundary jump ratio", "<= 1.3"),
    ("temporal", "flicker", "flicker", ""),
    ("appearance", "psnr_outside", "PSNR outside the mouth (dB)", ">= 26"),
    ("appearance", "psnr_mouth", "PSNR of the mouth (dB)", ""),
    ("appearance", "ssim_outside", "SSIM outside the mouth", ""),
    ("appearance_still_head", "psnr_outside", "PSNR outside the mouth against the still-head render (dB)", ""),
    ("appearance_still_head", "psnr_mouth", "PSNR of the mouth against the still-head render (dB)", ""),
]


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main(folder: Path) -> None:
    reports = {stem: json.loads((folder / f"{stem}.json").read_text())
               for stem in EVALUATIONS if (folder / f"{stem}.json").is_file()}
    if not reports:
        raise SystemExit(f"no evaluation JSON in {folder}; run scripts/evaluate_default.sh first")
    print("| metric | target | " + " | ".join(EVALUATIONS[s] for s in reports) + " |")
    print("| --- | --- |" + " --- |" * len(reports))
    for section, key, label, target in METRICS:
        cells = [_cell((r.get(section) or {}).get(key)) for r in reports.values()]
        print(f"| {label} | {target} | " + " | ".join(cells) + " |")
    print("| clips evaluated | | " + " | ".join(str(len(r["clips"])) for r in reports.values()) + " |\n")

    print("| expression component | Spearman (target >= 0.8) | gain (1: the renderer's full effect) |\n| --- | --- | --- |")
    student = reports.get("student", {})
    gains = student.get("expression_gain") or {}
    for name, value in (student.get("expression_response") or {}).items():
        print(f"| {name} | {_cell(value)} | {_cell(gains.get(name))} |")

    long_run = reports.get("student", {}).get("long_run")
    if long_run:
        print(f"\nlong run: {long_run['minutes']:.1f} min, windows of {long_run['window_seconds']:.0f} s")
        print("\n| window | PSNR outside (dB) | PSNR mouth (dB) |\n| --- | --- | --- |")
        for window in ("first", "last"):
            print(f"| {window} | {_cell(long_run[f'{window}_psnr_outside'])} | {_cell(long_run[f'{window}_psnr_mouth'])} |")

    print("\n| benchmark | fps | first frame (ms) | denoise / decode (ms per frame) |\n| --- | --- | --- | --- |")
    for path in sorted(folder.glob("bench_*.json")):
        bench = json.loads(path.read_text())
        stages = bench["stages_ms_per_frame"]
        print(f"| {path.stem[len('bench_'):]} ({bench['sampler']}, {bench['steps']} steps, {bench['threads']} threads) "
              f"| {bench['fps']} | {bench['first_frame_ms']} | {stages['denoise']} / {stages['decode']} |")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/eval"))
