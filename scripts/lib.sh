# Shell pieces of the training chains, sourced by scripts/train_default.sh and scripts/train_photo_default.sh.
# The sourcing script sets: root (the repository), out (the run folder, made), quick (1: cut every stage to a few
# steps) and exports PYTHON (the interpreter that has avatar_desktop).

avatar() { "$PYTHON" -m avatar_desktop "$@"; }

# quick_size: the data set size flags of --quick (3 clips of 4 s), none otherwise.
quick_size=()
[ "${quick:-0}" = 1 ] && quick_size=(--identities 3 --clips-per-identity 1 --seconds 4)

# data_complete DATA: whether the data set in DATA was finished. `dataset synth` writes manifest.json at its start
# with "complete": false and, run again on the same folder, goes on where a stopped build left off.
data_complete() { grep -q '"complete": true' "$1/manifest.json" 2>/dev/null; }

# motion_data DATA: the photo path's espeak-ng data set (models/default/motion/MODEL_CARD.md), made (or finished)
# unless DATA holds a complete one.
motion_data() {
    data_complete "$1" && return
    avatar dataset synth --out "$1" --identities 100 --clips-per-identity 4 --seconds 10 --seed 11 --size 64 \
        "${quick_size[@]}" --no-progress
}

# recipe NAME [KEY PATH]...: configs/NAME.toml copied to OUT/recipes/NAME.toml with each KEY (init, warm_start,
# audio_from) set to PATH; with quick, 4 steps and a save every 2.
recipe() {
    local name=$1 edits=()
    shift
    while [ $# -gt 0 ]; do
        edits+=(-e "s#^$1 = .*#$1 = \"$2\"#")
        shift 2
    done
    [ "$quick" = 1 ] && edits+=(-e 's/^steps = .*/steps = 4/' -e 's/^save_every = .*/save_every = 2/')
    mkdir -p "$out/recipes"
    # -e '' first: with no edits sed would read the recipe's path as its script
    sed -e '' "${edits[@]}" "$root/configs/$name.toml" > "$out/recipes/$name.toml"
}

# train STAGE NAME DATA: `avatar-desktop train STAGE` on OUT/recipes/NAME.toml into OUT/NAME, resumed when
# OUT/NAME/checkpoint exists.
train() {
    local resume=()
    [ -d "$out/$2/checkpoint" ] && resume=(--resume)
    avatar train "$1" --config "$out/recipes/$2.toml" --data "$3" --out "$out/$2" "${resume[@]}"
}

# motion_chain DATA AUDIO_FROM: the shipped motion model's stages (configs/motion-teacher.toml, then
# configs/motion-distill.toml) on DATA, hearing the audio encoder of the model folder AUDIO_FROM; the model is
# OUT/motion-distill/model.
motion_chain() {
    recipe motion-teacher audio_from "$2"
    recipe motion-distill init "$out/motion-teacher/model"
    train motion-teacher motion-teacher "$1"
    train motion-distill motion-distill "$1"
}
