#!/usr/bin/env bash
# The voice-mix data set the photo path's audio encoder and motion model are trained on (docs/DATA.md, "Voices"):
# 150 characters x 4 clips of 10 s, 64 px frames (the motion stages read only the records and the audio).
# Training voices: 18 espeak-ng voices (six accents, male, female and klatt variants), flite kal, kal16, awb, rms and
# festival's two diphone voices. Held out (never in a training clip; the evaluation's unseen voices): flite slt,
# festival cmu_us_slt_arctic_hts and four other espeak-ng voices.
#   scripts/make_voice_data.sh OUT [extra dataset-synth flags]   (PYTHON: the interpreter with avatar_desktop)
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT [extra dataset-synth flags]" >&2; exit 2; }
out=$1; shift
espeak="en-us+m3,en-us+f1,en-us+klatt,en+m1,en+f5,en+m7,en-gb-x-rp+m5,en-gb-x-rp+f3,en-gb-x-rp+klatt2"
espeak="$espeak,en-gb-scotland+m3,en-gb-scotland+f1,en-gb-scotland+m6,en-029+m1,en-029+f3,en-029+klatt"
espeak="$espeak,en-gb-x-gbcwmd+m7,en-gb-x-gbcwmd+f5,en-gb-x-gbcwmd+m3"
others="flite:kal,flite:kal16,flite:awb,flite:rms,festival:kal_diphone,festival:ked_diphone"
heldout="flite:slt,festival:cmu_us_slt_arctic_hts,en-us+f2,en-gb-x-rp+m4,en+f4,en-029+m2"
exec "${PYTHON:-python}" -m avatar_desktop dataset synth --out "$out" --identities 150 --clips-per-identity 4 --seconds 10 --seed 21 \
    --size 64 --voices "$espeak,$others,$heldout" --heldout-voices "$heldout" "$@"
