#!/usr/bin/env bash
# Rebuild the photo path's motion model from nothing but the repository.
#   scripts/train_photo_default.sh DATA OUT               the shipped models/default/motion: espeak-ng data (seed 11),
#                                                         teacher and one-step student hearing the latent model's
#                                                         audio encoder (time and machine: its MODEL_CARD.md)
#   scripts/train_photo_default.sh --voice-mix DATA OUT   the voice-mix model of the card's "Voices" section: voice-mix
#                                                         data, an audio encoder trained through the room and
#                                                         microphone chain, teacher and student (configs/motion-voices-*)
#   --quick (first): 3 short clips and 4 steps a stage: the chain end to end in minutes, as CI runs it.
# DATA is made when it holds no manifest.json; the model is OUT/<last stage>/model (printed at the end). The recipes
# are copied to OUT/recipes with their model paths pointed at OUT (and, with --quick, their step counts cut).
# PYTHON: the interpreter that has avatar_desktop (default: python).
set -euo pipefail
quick=0; voices=0
while [ $# -gt 0 ] && [ "${1#--}" != "$1" ]; do
    case $1 in
        --quick) quick=1 ;;
        --voice-mix) voices=1 ;;
        *) echo "$0: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ $# -eq 2 ] || { echo "usage: $0 [--quick] [--voice-mix] DATA OUT" >&2; exit 2; }
data=$1; out=$2
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHON=${PYTHON:-python}
avatar() { "$PYTHON" -m avatar_desktop "$@"; }

if [ ! -f "$data/manifest.json" ]; then
    size=(); [ $quick = 1 ] && size=(--identities 3 --clips-per-identity 1 --seconds 4)
    if [ $voices = 1 ]; then
        "$root/scripts/make_voice_data.sh" "$data" "${size[@]}" --no-progress
    else
        avatar dataset synth --out "$data" --identities 100 --clips-per-identity 4 --seconds 10 --seed 11 --size 64 \
            "${size[@]}" --no-progress
    fi
fi

mkdir -p "$out/recipes"
runs=$(cd "$out" && pwd)
# recipe NAME KEY PATH: configs/NAME.toml with KEY (init or audio_from) set to PATH; steps cut with --quick
recipe() {
    local cut=()
    [ $quick = 1 ] && cut=(-e 's/^steps = .*/steps = 4/' -e 's/^save_every = .*/save_every = 2/')
    sed -e "s#^$2 = .*#$2 = \"$3\"#" "${cut[@]}" "$root/configs/$1.toml" > "$out/recipes/$1.toml"
}
if [ $voices = 1 ]; then
    recipe motion-voices-audio init "$root/models/default"
    recipe motion-voices-teacher audio_from "$runs/motion-voices-audio/model"
    recipe motion-voices-distill init "$runs/motion-voices-teacher/model"
    stages="audio:motion-voices-audio motion-teacher:motion-voices-teacher motion-distill:motion-voices-distill"
else
    recipe motion-teacher audio_from "$root/models/default"
    recipe motion-distill init "$runs/motion-teacher/model"
    stages="motion-teacher:motion-teacher motion-distill:motion-distill"
fi

for stage in $stages; do
    name=${stage#*:}
    resume=(); [ -d "$out/$name/checkpoint" ] && resume=(--resume)
    avatar train "${stage%%:*}" --config "$out/recipes/$name.toml" --data "$data" --out "$out/$name" "${resume[@]}"
done
echo "model: $out/$name/model"
