#!/usr/bin/env bash
# Try a built .deb as a user would run it, with no virtual environment: unpack it into a fresh folder (dpkg -x), then
# run the installed executable: --version, doctor, render of the bundled drawn portrait (latent model) and of a photo
# (photo renderer) to video files, a live session on a PulseAudio test rig (timed: launch -> first frame), and the
# window offscreen to a screenshot. Fails (exit 1) if any step fails; prints the sizes and times measured.
#
#     packaging/linux/try_deb.sh DEB [PHOTO] [--keep DIR]
#
# PHOTO: a portrait photo with a face (default: scikit-image's astronaut, written with the repository's .venv).
# --keep DIR: copy the outputs there (videos, screenshot, doctor.json, live.json, measurements.txt).
# Needs: dpkg, pulseaudio and pulseaudio-utils (the rig), python3 (reads the JSON the app writes).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEB=""; PHOTO=""; KEEP=""
while [ $# -gt 0 ]; do
    case "$1" in
        --keep) KEEP=$2; shift 2 ;;
        *) if [ -z "$DEB" ]; then DEB=$1; elif [ -z "$PHOTO" ]; then PHOTO=$1; else
               echo "try_deb.sh: unexpected argument $1" >&2; exit 2; fi; shift ;;
    esac
done
[ -f "$DEB" ] || { echo "usage: try_deb.sh DEB [PHOTO] [--keep DIR] (no .deb at '$DEB')" >&2; exit 2; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/avatar-try.XXXXXX")
PULSE_PID=""
cleanup() {
    [ -n "$PULSE_PID" ] && kill "$PULSE_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
OUTS=$WORK/out
mkdir -p "$OUTS" "$WORK/home" "$WORK/run"
step() { echo "try_deb.sh: $*"; }
fail() { echo "try_deb.sh: FAILED: $*" >&2; exit 1; }

if [ -z "$PHOTO" ]; then
    PHOTO=$OUTS/astronaut.png
    "$ROOT/.venv/bin/python" -c "import sys, cv2; from skimage import data
cv2.imwrite(sys.argv[1], data.astronaut()[:, :, ::-1])" "$PHOTO" ||
        fail "no PHOTO given and the repository's .venv cannot write scikit-image's astronaut: pass a photo"
fi

step "unpacking $DEB into a fresh folder"
INSTALL=$WORK/root
dpkg -x "$DEB" "$INSTALL"
APP=$INSTALL/opt/avatar-desktop/avatar-desktop
[ "$(readlink "$INSTALL/usr/bin/avatar-desktop")" = /opt/avatar-desktop/avatar-desktop ] ||
    fail "/usr/bin/avatar-desktop does not link to /opt/avatar-desktop/avatar-desktop"
for part in usr/share/applications/avatar-desktop.desktop usr/share/icons/hicolor/256x256/apps/avatar-desktop.png; do
    [ -f "$INSTALL/$part" ] || fail "the package has no /$part"
done
ASSETS=$INSTALL/opt/avatar-desktop/_internal/assets

# The user's environment, without the repository, a virtual environment or a display.
run_app() {
    env -i HOME="$WORK/home" PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="$WORK/run" LANG=C.UTF-8 \
        ${PULSE_SERVER:+PULSE_SERVER=$PULSE_SERVER} ${QT_QPA_PLATFORM:+QT_QPA_PLATFORM=$QT_QPA_PLATFORM} "$APP" "$@"
}
json_value() {  # json_value FILE EXPRESSION: EXPRESSION evaluated on the parsed file (`d`)
    python3 -c "import json, sys; d = json.load(open(sys.argv[1])); print($2)" "$1"
}

step "--version"
run_app --version > "$OUTS/version.txt" || fail "--version exited with an error"
grep -q "^avatar-desktop [0-9]" "$OUTS/version.txt" || fail "--version printed no version"

step "doctor (no microphone and no virtual camera here: exit code 1 is expected; the models must be found)"
code=0; run_app doctor --json > "$OUTS/doctor.json" || code=$?
[ "$code" -le 1 ] || fail "doctor exited with $code"
[ "$(json_value "$OUTS/doctor.json" 'd["models"]["ok"] and d["photo_path"]["ok"]')" = True ] ||
    fail "doctor did not find the bundled models: $(cat "$OUTS/doctor.json")"
run_app doctor > "$OUTS/doctor.txt" || true
grep -q "modprobe v4l2loopback .*exclusive_caps=1" "$OUTS/doctor.txt" ||
    fail "doctor does not say how to load v4l2loopback"

step "render: the bundled drawn portrait on the latent model"
run_app render --portrait "$ASSETS/portrait_1.png" --audio "$ASSETS/sample_speech.wav" --model default \
    --out "$OUTS/drawn.mp4" > "$OUTS/render_drawn.log" 2>&1 ||
    fail "render (drawn): $(tail -5 "$OUTS/render_drawn.log")"
grep -q "latent model" "$OUTS/render_drawn.log" || fail "render (drawn) did not run the latent model"
[ -s "$OUTS/drawn.mp4" ] || fail "render (drawn) wrote no video"

step "render: the photo on the photo renderer"
run_app render --portrait "$PHOTO" --audio "$ASSETS/sample_speech.wav" --out "$OUTS/photo.mp4" \
    > "$OUTS/render_photo.log" 2>&1 || fail "render (photo): $(tail -5 "$OUTS/render_photo.log")"
grep -q "photo renderer" "$OUTS/render_photo.log" || fail "render (photo) did not run the photo renderer"
[ -s "$OUTS/photo.mp4" ] || fail "render (photo) wrote no video"

step "starting a PulseAudio test rig (a virtual microphone playing the sample speech)"
cat > "$WORK/rig.pa" <<'PA'
load-module module-native-protocol-unix
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-remap-source master=vsink.monitor source_name=vmic
set-default-sink vsink
set-default-source vmic
PA
env -i HOME="$WORK/home" PATH=/usr/bin:/bin XDG_RUNTIME_DIR="$WORK/run" \
    pulseaudio -n -F "$WORK/rig.pa" --exit-idle-time=-1 --daemonize=no >"$WORK/pulse.log" 2>&1 &
PULSE_PID=$!
export PULSE_SERVER=unix:$WORK/run/pulse/native
for _ in $(seq 50); do [ -S "$WORK/run/pulse/native" ] && break; sleep 0.2; done
[ -S "$WORK/run/pulse/native" ] || fail "the PulseAudio rig did not start: $(cat "$WORK/pulse.log")"
( while kill -0 "$PULSE_PID" 2>/dev/null; do
      env -i XDG_RUNTIME_DIR="$WORK/run" PULSE_SERVER="$PULSE_SERVER" \
          paplay --device=vsink "$ASSETS/sample_speech.wav" || sleep 1
  done ) >/dev/null 2>&1 &

step "live: the photo, 20 s, no virtual camera (the frames go to the camera sender all the same); timed"
launched=$(date +%s.%N)
run_app live --portrait "$PHOTO" --camera off --seconds 20 --stats-json "$OUTS/live.json" 2>"$OUTS/live.log" ||
    fail "live exited with an error: $(tail -5 "$OUTS/live.log")"
first=$(json_value "$OUTS/live.json" 'd["first_frame_unix"]')
[ "$first" != None ] || fail "live generated no frame in 20 s: $(tail -5 "$OUTS/live.log")"
COLD_START=$(python3 -c "print(f'{$first - $launched:.2f}')")
SESSION_START=$(json_value "$OUTS/live.json" 'd["first_frame_s"]')

step "gui: the window offscreen with the photo, 20 s, then a screenshot"
QT_QPA_PLATFORM=offscreen run_app gui --portrait "$PHOTO" --settings "$WORK/settings.ini" --seconds 20 \
    --screenshot "$OUTS/window.png" 2>"$OUTS/gui.log" || fail "gui exited with an error: $(tail -5 "$OUTS/gui.log")"
[ -s "$OUTS/window.png" ] || fail "gui wrote no screenshot"

PACKAGE_MB=$(du -m "$DEB" | cut -f1)
INSTALLED_MB=$(du -sm "$INSTALL" | cut -f1)
{
    echo "package: $(basename "$DEB") $PACKAGE_MB MB"
    echo "installed: $INSTALLED_MB MB"
    echo "cold start, launch of \`avatar-desktop live\` -> first frame sent: $COLD_START s" \
        "(session start -> first frame: $SESSION_START s)"
} | tee "$OUTS/measurements.txt"
if [ -n "$KEEP" ]; then mkdir -p "$KEEP" && cp -r "$OUTS"/. "$KEEP"/; fi
step "all steps passed"
