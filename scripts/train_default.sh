#!/usr/bin/env bash
# Rebuild the whole shipped default model (models/default and models/default/motion) from nothing but the repository.
#   scripts/train_default.sh [--quick] DATA OUT
# DATA/latent: the latent model's data set (seed 0, models/default/MODEL_CARD.md); DATA/motion: the motion model's
# (seed 11, models/default/motion/MODEL_CARD.md); each is made, or finished, unless it holds a complete one.
# Stages, each into OUT/<recipe name>, resumed when its checkpoint exists: the latent model's autoencoder, audio
# encoder, first teacher, residual teacher, one-step student and two decoder passes, then the motion model's teacher
# and student, which hear this chain's audio encoder. OUT/default is the result, laid out as models/default (the
# latent model with the motion model in motion/; printed at the end). The recipes are copied to OUT/recipes with
# their model paths pointed at the earlier stages in OUT.
#   --quick: 3 short clips in each data set and 4 steps a stage: the chain end to end in minutes, as CI runs it.
# PYTHON: the interpreter that has avatar_desktop (default: python).
set -euo pipefail
quick=0
if [ "${1:-}" = --quick ]; then quick=1; shift; fi
[ $# -eq 2 ] && [ "${1#--}" = "$1" ] || { echo "usage: $0 [--quick] DATA OUT" >&2; exit 2; }
data=$1
mkdir -p "$2"
out=$(cd "$2" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
export PYTHON=${PYTHON:-python}
source "$root/scripts/lib.sh"

data_complete "$data/latent" || avatar dataset synth --out "$data/latent" --identities 100 \
    --clips-per-identity 3 --seconds 8 --seed 0 "${quick_size[@]}" --no-progress
motion_data "$data/motion"

recipe tiny-cpu-autoencoder
recipe tiny-cpu-audio init "$out/tiny-cpu-autoencoder/model"
recipe tiny-cpu-teacher init "$out/tiny-cpu-audio/model"
recipe tiny-cpu-teacher-residual init "$out/tiny-cpu-audio/model" warm_start "$out/tiny-cpu-teacher/model"
recipe tiny-cpu-distill init "$out/tiny-cpu-teacher-residual/model"
recipe tiny-cpu-decoder init "$out/tiny-cpu-distill/model"
recipe tiny-cpu-decoder-blur init "$out/tiny-cpu-decoder/model"
train autoencoder tiny-cpu-autoencoder "$data/latent"
train audio tiny-cpu-audio "$data/latent"
train teacher tiny-cpu-teacher "$data/latent"
train teacher tiny-cpu-teacher-residual "$data/latent"
train distill tiny-cpu-distill "$data/latent"
train autoencoder tiny-cpu-decoder "$data/latent"
train autoencoder tiny-cpu-decoder-blur "$data/latent"
motion_chain "$data/motion" "$out/tiny-cpu-decoder-blur/model"

rm -rf "$out/default"
cp -r "$out/tiny-cpu-decoder-blur/model" "$out/default"
cp -r "$out/motion-distill/model" "$out/default/motion"
echo "model: $out/default"
