#!/usr/bin/env bash
# The evaluations behind models/default/MODEL_CARD.md, one after the other (run on an otherwise idle machine):
#   scripts/evaluate_default.sh DATA STUDENT TEACHER OUT
# DATA: a `dataset synth` folder; STUDENT, TEACHER: model folders (runs/tiny-cpu-distill/model,
# runs/tiny-cpu-teacher/model), TEACHER "-" to skip the teacher (when only the student changed and the teacher's
# earlier report still holds); OUT: where the JSON reports, plots and benchmarks go.
set -euo pipefail
if [ $# -ne 4 ]; then
    echo "usage: $0 DATA STUDENT TEACHER OUT" >&2
    exit 2
fi
data=$1 student=$2 teacher=$3 out=$4
bin=$(dirname "$0")/../.venv/bin/avatar-desktop
clips=20  # the shipped student; the comparisons (chunk lengths, teacher) use `compare` clips
compare=10
mkdir -p "$out"

step() {  # step NAME COMMAND...: run the command unless NAME's output exists, keep its JSON and time
    local name=$1
    shift
    if [ -s "$out/$name.json" ]; then return; fi
    local start=$SECONDS
    "$@" --json > "$out/$name.json.tmp"
    mv "$out/$name.json.tmp" "$out/$name.json"
    echo "$name: $((SECONDS - start)) s" | tee -a "$out/times.txt"
}

step student "$bin" eval --model "$student" --data "$data" --clips $clips --minutes 10 --plot "$out/student.png"
for chunk in 1 2 4 8; do
    step "chunk_$chunk" "$bin" eval --model "$student" --data "$data" --clips $compare --chunk $chunk
done
step autoencoder "$bin" eval --model "$student" --data "$data" --clips $clips --autoencoder-only
step still_head "$bin" eval --model still-head --data "$data" --clips $clips
step bench_student "$bin" bench --model "$student"
step bench_student_1thread "$bin" bench --model "$student" --threads 1
if [ "$teacher" != - ]; then
    step teacher_10steps "$bin" eval --model "$teacher" --data "$data" --clips $compare --steps 10 --plot "$out/teacher.png"
    step bench_teacher_10steps "$bin" bench --model "$teacher" --steps 10
fi
