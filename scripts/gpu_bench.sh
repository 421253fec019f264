#!/usr/bin/env bash
# The GPU presets' speed table (issue 28) on any NVIDIA machine with torch and CUDA, in about 6 minutes:
# llia-384 and llia-512 in bf16 and fp16, each eager, compiled (--compile) and compiled with decode overlap
# (--compile --overlap-decode), in bf16 also with the tiny TAESD-layout decoder (--decoder tiny) instead of the
# SD-VAE one, and tiny-cpu, with random weights (speed does not depend on them); then the TensorRT backend (issue
# 26) in fp16 and int8 on ONNX exports of tiny-cpu (random weights), the shipped default latent model
# (models/default) and llia-384 / llia-512 (random weights; where their export succeeds).
#
#   scripts/gpu_bench.sh OUT.md [--wheels DIR] [--seconds S] [--run-timeout S] [--budget S] [--profile] [--device cpu]
#
# OUT.md gets the table (fps, first frame, p50 and p99 frame times, stage times, peak GPU memory, prepare time,
# graphs compiled while streaming) under a line naming the GPU, its driver and the torch and CUDA versions;
# OUT.md.log gets every run's messages. The eager runs come first, then the compiled ones, bf16 before fp16; each
# run has at most --run-timeout seconds (default 150: compiling a large preset's graphs takes most of that; they
# are cached on disk, so the same graphs compile quickly a second time) and no run starts after --budget seconds
# (default 330): a run that fails, runs out of time or is not started gets a row that says so.
# --profile: also torch.profiler tables (top kernels, idle gaps) of llia-384 bf16 eager and compiled+overlap.
# --device cpu: a smoke run of the script itself on tiny-cpu (fp32, eager and overlap; no compile: minutes on a CPU),
# and its export on the onnx backend (TensorRT needs a GPU).
# The exports (`avatar-desktop export`, needing torch and onnx) count against --budget and --run-timeout like the
# runs; their int8 graphs are calibrated on a small `dataset synth` set (needs espeak-ng), made once. A failed
# export or calibration set leaves rows that say so. TensorRT engines are built on the first run of each export and
# precision (its prepare time) and cached in ~/.cache/avatar-desktop/tensorrt (XDG_CACHE_HOME), so a second run of
# the script loads them.
#
# Such a machine has torch but often not diffusers (or opencv, safetensors, ...): bring their wheels in a folder
# (on a machine with internet: `pip download diffusers huggingface_hub safetensors opencv-python-headless --no-deps
# -d WHEELS`) and give it as --wheels DIR or AVATAR_WHEELS=DIR; every wheel in it is installed with --no-deps.
# PYTHON names the interpreter (default python3).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
PYTHON=${PYTHON:-python3}
wheels=${AVATAR_WHEELS:-}
seconds=6
run_timeout=150
budget=330
profile=0
device=cuda
out=""

usage() {
    echo "usage: scripts/gpu_bench.sh OUT.md [--wheels DIR] [--seconds S] [--run-timeout S] [--budget S] [--profile]" \
         "[--device cpu]  (the comment at the top of the script says more)" >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --wheels) wheels=${2:?--wheels needs a folder}; shift 2 ;;
        --seconds) seconds=${2:?--seconds needs a number}; shift 2 ;;
        --run-timeout) run_timeout=${2:?--run-timeout needs seconds}; shift 2 ;;
        --budget) budget=${2:?--budget needs seconds}; shift 2 ;;
        --profile) profile=1; shift ;;
        --device) device=${2:?--device needs cuda or cpu}; shift 2 ;;
        -h|--help) usage ;;
        -*) echo "gpu_bench.sh: unknown option $1" >&2; usage ;;
        *) [ -z "$out" ] || usage; out=$1; shift ;;
    esac
done
[ -n "$out" ] || usage
case $device in cuda|cpu) ;; *) echo "gpu_bench.sh: --device must be cuda or cpu, not $device" >&2; exit 2 ;; esac
mkdir -p "$(dirname "$out")"
out=$(cd "$(dirname "$out")" && pwd)/$(basename "$out")
log=$out.log
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}"

if [ -n "$wheels" ]; then
    shopt -s nullglob
    found=("$wheels"/*.whl)
    [ ${#found[@]} -gt 0 ] || { echo "gpu_bench.sh: no .whl files in $wheels" >&2; exit 2; }
    "$PYTHON" -m pip install --quiet --no-deps --no-index "${found[@]}"
fi
if ! missing=$("$PYTHON" -c "import diffusers, avatar_desktop.engine.bench" 2>&1); then
    echo "gpu_bench.sh: $PYTHON cannot run the benchmark: ${missing##*$'\n'}" >&2
    echo "  bring that package's wheel (pip download NAME --no-deps -d WHEELS) and pass --wheels WHEELS" >&2
    exit 2
fi
if [ "$device" = cuda ] && ! "$PYTHON" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    echo "gpu_bench.sh: torch sees no CUDA device here (use --device cpu for a smoke run of this script)" >&2
    exit 2
fi

: > "$log"
results=$work/results.jsonl
deadline=$((SECONDS + budget))
# bench LABEL ARGS...: one `avatar-desktop bench --json` run, its result (or why it failed) appended to $results.
bench() {
    local label=$1 status=0 why limit=$run_timeout left=$((deadline - SECONDS))
    shift
    if [ "$left" -lt 20 ]; then
        printf '{"run": "%s", "failed": "not started: the %s s budget was spent"}\n' "$label" "$budget" >> "$results"
        echo "$label: not started (budget spent)" >&2
        return
    fi
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== $label: bench $*" >> "$log"
    timeout "$limit" "$PYTHON" -m avatar_desktop bench --device "$device" --seconds "$seconds" \
        --json "$@" > "$work/run.out" 2>> "$log" || status=$?
    local json
    json=$(grep '^{' "$work/run.out" | tail -n 1 || true)
    if [ "$status" = 0 ] && [ -n "$json" ]; then
        printf '{"run": "%s", "result": %s}\n' "$label" "$json" >> "$results"
    else
        [ "$status" = 124 ] && why="timed out after ${limit} s" || why="exit $status, see $(basename "$log")"
        printf '{"run": "%s", "failed": "%s"}\n' "$label" "$why" >> "$results"
    fi
    echo "$label: $( [ "$status" = 0 ] && echo done || echo failed)" >&2
}

# time_left SECONDS: whether SECONDS are left of the budget (a step needing less may start).
time_left() { [ $((deadline - SECONDS)) -ge "$1" ]; }

# calibration_data: a small `dataset synth` set in $work/calibration for the int8 exports, made once; false when
# it cannot be made (the reason is in the log).
calibration_data() {
    [ -f "$work/calibration/manifest.json" ] && return 0
    [ -e "$work/calibration.failed" ] && return 1
    echo "== calibration data: dataset synth" >> "$log"
    if time_left 20 && timeout "$run_timeout" "$PYTHON" -m avatar_desktop dataset synth --out "$work/calibration" \
            --identities 2 --clips-per-identity 1 --seconds 4 --size 128 --seed 5 --no-progress >> "$log" 2>&1; then
        return 0
    fi
    touch "$work/calibration.failed"
    return 1
}

# export_model NAME SOURCE: `avatar-desktop export` of SOURCE (a model name or folder, or preset:PRESET for that
# preset's seeded random weights) into $work/exports/NAME, with int8 graphs when calibration data can be made.
export_model() {
    local name=$1 source=$2 int8=() limit=$run_timeout left=$((deadline - SECONDS))
    time_left 20 || return 0
    [ "$left" -lt "$limit" ] && limit=$left
    echo "== export $name ($source)" >> "$log"
    if [ "${source#preset:}" != "$source" ]; then  # a preset: its random weights saved as a torch model folder
        "$PYTHON" -c 'import sys
from avatar_desktop.models.presets import build_model
from avatar_desktop.models.store import save_model
save_model(build_model(sys.argv[1], seed=0), sys.argv[2])' "${source#preset:}" "$work/torch/$name" >> "$log" 2>&1 \
            || return 0
        source=$work/torch/$name
    fi
    [ "$device" = cuda ] && calibration_data && int8=(--int8 --calibration "$work/calibration" --calibration-chunks 16)
    timeout "$limit" "$PYTHON" -m avatar_desktop export --model "$source" --out "$work/exports/$name" "${int8[@]}" \
        >> "$log" 2>&1 || rm -rf "$work/exports/$name"
}

# bench_export LABEL NAME ARGS...: bench of the export NAME (export_model), or a row saying why there is none.
bench_export() {
    local label=$1 folder=$work/exports/$2
    shift 2
    if [ ! -f "$folder/model.json" ]; then
        printf '{"run": "%s", "failed": "no export (it failed or the budget was spent), see %s"}\n' "$label" \
            "$(basename "$log")" >> "$results"
        echo "$label: no export" >&2
    elif [[ " $* " == *" int8 "* ]] && ! grep -q '"int8"' "$folder/model.json"; then
        printf '{"run": "%s", "failed": "the export has no int8 graphs (no calibration data), see %s"}\n' "$label" \
            "$(basename "$log")" >> "$results"
        echo "$label: no int8 export" >&2
    else
        bench "$label" --model "$folder" "$@"
    fi
}

if [ "$device" = cpu ]; then
    bench "tiny-cpu fp32 eager" --random-weights --preset tiny-cpu --precision fp32
    bench "tiny-cpu fp32 overlap" --random-weights --preset tiny-cpu --precision fp32 --overlap-decode
    export_model tiny-cpu preset:tiny-cpu
    bench_export "tiny-cpu onnx fp32" tiny-cpu --backend onnx --precision fp32
else
    # eager runs first: they are quick, and the table has them even if a compilation runs out of time
    for preset in llia-384 llia-512; do
        for precision in bf16 fp16; do
            bench "$preset $precision eager" --random-weights --preset "$preset" --precision "$precision"
        done
        bench "$preset bf16 eager, tiny decoder" --random-weights --preset "$preset" --precision bf16 --decoder tiny
    done
    bench "tiny-cpu fp16 eager" --random-weights --preset tiny-cpu --precision fp16
    # TensorRT (issue 26) before the compiled runs: building an engine takes about as long as compiling
    for model in tiny-cpu default llia-384 llia-512; do
        case $model in default) source=default ;; *) source=preset:$model ;; esac
        export_model "$model" "$source"
        for precision in fp16 int8; do
            bench_export "$model tensorrt $precision" "$model" --backend tensorrt --precision "$precision"
        done
    done
    for precision in bf16 fp16; do
        for preset in llia-384 llia-512; do
            bench "$preset $precision compile+overlap" --random-weights --preset "$preset" --precision "$precision" \
                --compile --overlap-decode
            bench "$preset $precision compile" --random-weights --preset "$preset" --precision "$precision" --compile
        done
        if [ "$precision" = bf16 ]; then
            for preset in llia-384 llia-512; do
                bench "$preset bf16 compile+overlap, tiny decoder" --random-weights --preset "$preset" \
                    --precision bf16 --compile --overlap-decode --decoder tiny
            done
        fi
    done
    bench "tiny-cpu fp16 compile+overlap" --random-weights --preset tiny-cpu --precision fp16 --compile --overlap-decode
fi
"$PYTHON" "$root/scripts/bench_table.py" "$results" "$out"
echo "audio per run: $seconds s; random weights (default: the shipped model's); one process per run" >> "$out"

if [ "$profile" = 1 ]; then
    preset=llia-384 precision=bf16
    [ "$device" = cpu ] && preset=tiny-cpu precision=fp32
    printf '\n## Profiles\n\n' >> "$out"
    for mode in eager fast; do
        flags=()
        [ "$mode" = fast ] && { flags=(--overlap-decode); [ "$device" = cuda ] && flags+=(--compile); }
        if timeout "$run_timeout" "$PYTHON" -m avatar_desktop bench --random-weights --device "$device" --seconds 2 \
                --preset "$preset" --precision "$precision" "${flags[@]}" --profile "$work/profile.md" \
                >> "$log" 2>&1; then
            cat "$work/profile.md" >> "$out"
            echo >> "$out"
        else
            echo "profile of $preset $precision ${flags[*]:-eager} failed: see $(basename "$log")" >> "$out"
        fi
    done
fi
echo "gpu_bench.sh: wrote $out" >&2
