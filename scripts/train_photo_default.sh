#!/usr/bin/env bash
# Rebuild the photo path's shipped motion model (models/default/motion) from nothing but the repository:
# the voice-mix data set, the audio encoder, the motion teacher and its one-step student.
#   scripts/train_photo_default.sh DATA OUT          the full run (time and machine: models/default/motion/MODEL_CARD.md)
#   scripts/train_photo_default.sh --quick DATA OUT  3 short clips and 4 steps a stage: the chain end to end, in minutes
# DATA is made when it holds no manifest.json; the model is OUT/motion-distill/model. The recipes of configs/ are
# copied to OUT/recipes with their model paths pointed at OUT (and, with --quick, their step counts cut).
# PYTHON: the interpreter that has avatar_desktop (default: python).
set -euo pipefail
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
[ $# -eq 2 ] || { echo "usage: $0 [--quick] DATA OUT" >&2; exit 2; }
data=$1; out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
avatar() { "${PYTHON:-python}" -m avatar_desktop "$@"; }
export PYTHON=${PYTHON:-python}

if [ ! -f "$data/manifest.json" ]; then
    if [ $quick = 1 ]; then
        "$root/scripts/make_voice_data.sh" "$data" --identities 3 --clips-per-identity 1 --seconds 4 --no-progress
    else
        "$root/scripts/make_voice_data.sh" "$data" --no-progress
    fi
fi

mkdir -p "$out/recipes"
# recipe NAME KEY PATH: configs/NAME.toml with KEY (init or audio_from) set to PATH, and cut steps with --quick
recipe() {
    local cut=()
    [ $quick = 1 ] && cut=(-e 's/^steps = .*/steps = 4/' -e 's/^save_every = .*/save_every = 2/')
    sed -e "s#^$2 = .*#$2 = \"$3\"#" "${cut[@]}" "$root/configs/$1.toml" > "$out/recipes/$1.toml"
}
recipe motion-audio init "$root/models/default"
recipe motion-teacher audio_from "$(cd "$out" && pwd)/motion-audio/model"
recipe motion-distill init "$(cd "$out" && pwd)/motion-teacher/model"

for stage in audio:motion-audio motion-teacher:motion-teacher motion-distill:motion-distill; do
    name=${stage#*:}
    resume=(); [ -d "$out/$name/checkpoint" ] && resume=(--resume)
    avatar train "${stage%%:*}" --config "$out/recipes/$name.toml" --data "$data" --out "$out/$name" "${resume[@]}"
done
echo "model: $out/motion-distill/model"
