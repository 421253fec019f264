#!/usr/bin/env bash
# Export the shipped models for the installed app, which runs them on onnxruntime without torch:
#
#     packaging/export_models.sh [OUT]
#
# OUT (default build/models) gets default/ (the latent model) with default/motion/ (the photo path's motion model)
# inside, laid out as models/default: float and int8 graphs, each folder's default precision the one its export
# timed faster on this machine (engine/onnx_quantize.py). The int8 graphs have u8 activations (onnxruntime's faster
# kernels on the CPUs measured; TensorRT, which the installed app does not run, needs s8: scripts/gpu_bench.sh makes
# its own); their ranges are calibrated on a small `dataset synth` set of espeak-ng speech made here (seed 101, as
# docs/PERFORMANCE.md's exports). The spec
# (packaging/avatar-desktop.spec) bundles OUT/default as the app's models/default.
# PYTHON: the interpreter of a virtual environment with the project and its [train] extra (torch exports; default
# .venv/bin/python of the checkout).
set -euo pipefail
OUT=$(realpath -m "${1:-$(dirname "$0")/../build/models}")
cd "$(dirname "$0")/.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/avatar-export.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
app() { "$PYTHON" -m avatar_desktop "$@"; }

app dataset synth --out "$WORK/calibration" --identities 2 --clips-per-identity 3 --seconds 6 --seed 101 --no-progress
for model in default default/motion; do
    app export --model "$ROOT/models/$model" --out "$WORK/$model" --int8 --calibration "$WORK/calibration" \
        --int8-activations u8
done
mkdir -p "$OUT"
rm -rf "$OUT/default"
mv "$WORK/default" "$OUT/default"
echo "exported: $OUT/default (du: $(du -sh "$OUT/default" | cut -f1))"
