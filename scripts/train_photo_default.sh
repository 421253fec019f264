#!/usr/bin/env bash
# Rebuild the photo path's motion model from nothing but the repository.
#   scripts/train_photo_default.sh DATA OUT               the shipped models/default/motion: espeak-ng data (seed 11),
#                                                         teacher and one-step student hearing the latent model's
#                                                         audio encoder (time and machine: its MODEL_CARD.md)
#   scripts/train_photo_default.sh --voice-mix DATA OUT   the voice-mix model of the card's "Voices" section: voice-mix
#                                                         data, an audio encoder trained through the room and
#                                                         microphone chain, teacher and student (configs/motion-voices-*)
#   --quick (first): 3 short clips and 4 steps a stage: the chain end to end in minutes, as CI runs it.
# DATA is made, or finished, unless it holds a complete data set; the model is OUT/<last stage>/model (printed at
# the end). The recipes are copied to OUT/recipes with their model paths pointed at OUT (and, with --quick, their
# step counts cut).
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
data=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHON=${PYTHON:-python}
source "$root/scripts/lib.sh"

if [ $voices = 1 ]; then
    data_complete "$data" || "$root/scripts/make_voice_data.sh" "$data" "${quick_size[@]}" --no-progress
    recipe motion-voices-audio init "$root/models/default"
    recipe motion-voices-teacher audio_from "$out/motion-voices-audio/model"
    recipe motion-voices-distill init "$out/motion-voices-teacher/model"
    train audio motion-voices-audio "$data"
    train motion-teacher motion-voices-teacher "$data"
    train motion-distill motion-voices-distill "$data"
    echo "model: $out/motion-voices-distill/model"
else
    motion_data "$data"
    motion_chain "$data" "$root/models/default"
    echo "model: $out/motion-distill/model"
fi
