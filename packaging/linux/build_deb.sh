#!/usr/bin/env bash
# Build the Linux package: freeze the app with PyInstaller (packaging/avatar-desktop.spec), then wrap the frozen
# folder in a .deb with plain dpkg-deb.
#
#     packaging/linux/build_deb.sh [--frozen DIR] [--opencv-wheel WHEEL] [--out DIR] [--compression xz|zstd|gzip]
#
# --frozen DIR: package an already frozen folder (the spec's dist/avatar-desktop) instead of freezing again.
# --opencv-wheel WHEEL: freeze this OpenCV (packaging/build_opencv.sh: what the app calls, without video I/O and
# LAPACK; 135 MB less installed) instead of the environment's stock one. Releases do; CI, which has no time to compile
# OpenCV, packages the stock one.
# --out DIR: where the .deb goes (default: build/deb).
# --compression: dpkg-deb's (default xz: the smallest package and the slowest to build; zstd needs dpkg >= 1.21.18
# to install; packaging/README.md has the sizes and times).
# PYTHON: the interpreter of a virtual environment holding the app's runtime dependencies (default: .venv/bin/python,
# what `make setup` makes); PyInstaller is installed into it from packaging/requirements.txt when missing. It also
# exports the shipped models (packaging/export_models.sh, which needs torch) unless build/models holds them.
# DEB_MAINTAINER: the package's Maintainer field.
#
# The package installs the folder to /opt/avatar-desktop, links /usr/bin/avatar-desktop to its executable, and adds
# a menu entry and the icon (hicolor theme). Depends: the system libraries the frozen executables load (found with
# ldd and dpkg -S on this machine, plus those loaded at run time or missing here: SYSTEM_LIBRARIES below).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
FROZEN=""
OPENCV_WHEEL=""
OUT=$ROOT/build/deb
COMPRESSION=xz
while [ $# -gt 0 ]; do
    case "$1" in
        --frozen) FROZEN=$2; shift 2 ;;
        --opencv-wheel) OPENCV_WHEEL=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --compression) COMPRESSION=$2; shift 2 ;;
        *) echo "build_deb.sh: unknown argument $1 (use --frozen DIR, --opencv-wheel WHEEL, --out DIR,"\
            "--compression TYPE)" >&2; exit 2 ;;
    esac
done

# What the app needs from the system that ldd cannot see or that this build machine may lack: ffmpeg (video files and
# audio decoding: the spec leaves imageio-ffmpeg's own copy out on Linux), PortAudio (sounddevice opens it at run
# time), and what Qt's xcb platform plugin (X11 desktops) and its EGL/GL need.
SYSTEM_LIBRARIES=(ffmpeg libportaudio2 libegl1 libgl1 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0
    libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-shape0 libxcb-xkb1
    libxcb-randr0 libxcb-xfixes0 libxcb-sync1 libxcb-shm0 libx11-xcb1)

if [ -z "$FROZEN" ]; then
    # The app bundles the shipped models exported to ONNX (it runs without torch): made here when missing.
    [ -f build/models/default/motion/model.json ] || PYTHON=$PYTHON packaging/export_models.sh build/models
    "$PYTHON" -m PyInstaller --version >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet -r packaging/requirements.txt
    FREEZE_PATH=""
    if [ -n "$OPENCV_WHEEL" ]; then
        # Installed into a folder of its own that the freeze sees before the environment's site-packages.
        FREEZE_PATH=build/opencv-site
        rm -rf "$FREEZE_PATH"
        "$PYTHON" -m pip install --quiet --no-deps --target "$FREEZE_PATH" "$OPENCV_WHEEL"
    fi
    PYTHONPATH=$FREEZE_PATH "$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath build/pyinstaller/dist \
        --workpath build/pyinstaller/work packaging/avatar-desktop.spec
    FROZEN=build/pyinstaller/dist/avatar-desktop
fi
[ -x "$FROZEN/avatar-desktop" ] || { echo "build_deb.sh: no frozen app at $FROZEN/avatar-desktop" >&2; exit 1; }
VERSION=$("$FROZEN/avatar-desktop" --version | awk '{print $2}')
ARCH=$(dpkg --print-architecture)

STAGE=$(mktemp -d "${TMPDIR:-/tmp}/avatar-deb.XXXXXX")
trap 'rm -rf "$STAGE"' EXIT
PKG=$STAGE/root
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/bin" "$PKG/usr/share/applications" \
    "$PKG/usr/share/icons/hicolor/scalable/apps"
cp -a "$FROZEN" "$PKG/opt/avatar-desktop"
# Symbol tables are for debuggers: strip them from the libraries that ship with theirs (Python's own: 23 MB -> 6 MB;
# LiteRT's; ICU's), but not from the auditwheel-repaired ones in *.libs/ folders, whose segments patchelf moved:
# strip makes those unloadable ("ELF load command address/offset not page-aligned").
find "$PKG/opt/avatar-desktop" -type f \( -name '*.so' -o -name '*.so.*' \) -not -path '*.libs/*' -print0 |
    xargs -0 file --no-pad | awk -F: '/ELF.*not stripped/ {print $1}' | xargs -r -d '\n' strip --strip-unneeded
ln -s /opt/avatar-desktop/avatar-desktop "$PKG/usr/bin/avatar-desktop"
install -m 644 packaging/linux/avatar-desktop.desktop "$PKG/usr/share/applications/"
install -m 644 packaging/icon/avatar-desktop.svg "$PKG/usr/share/icons/hicolor/scalable/apps/"
for png in assets/icons/avatar-desktop-*.png; do
    size=$(basename "$png" .png); size=${size##*-}
    install -D -m 644 "$png" "$PKG/usr/share/icons/hicolor/${size}x${size}/apps/avatar-desktop.png"
done

# The system libraries the frozen executables link to: every ELF file's ldd lines that resolve outside the bundle,
# mapped to the Debian packages that own them.
BUNDLE=$PKG/opt/avatar-desktop/_internal
LINKED=$(find "$PKG/opt/avatar-desktop" -type f \( -name '*.so*' -o -perm -u+x \) -print0 |
    xargs -0 file --no-pad | awk -F: '/ELF/ {print $1}' |
    LD_LIBRARY_PATH=$BUNDLE xargs -r ldd 2>/dev/null | awk '/=> \// {print $3}' | grep -v "^$PKG" | sort -u)
OWNERS=$(for library in $LINKED; do dpkg -S "$(readlink -f "$library")" 2>/dev/null || dpkg -S "$library" 2>/dev/null
    done | cut -d: -f1 | sort -u)
DEPENDS=$(printf '%s\n' $OWNERS "${SYSTEM_LIBRARIES[@]}" | sort -u | paste -sd, | sed 's/,/, /g')

cat > "$PKG/DEBIAN/control" <<CONTROL
Package: avatar-desktop
Version: $VERSION
Architecture: $ARCH
Maintainer: ${DEB_MAINTAINER:-avatar-desktop maintainers <maintainers@avatar-desktop.invalid>}
Installed-Size: $(du -sk --exclude=DEBIAN "$PKG" | cut -f1)
Depends: $DEPENDS
Recommends: v4l2loopback-dkms, pulseaudio | pipewire-pulse
Section: video
Priority: optional
Description: talking avatar of your portrait on a virtual camera
 Avatar Desktop animates a portrait (a photo of you, or a drawn character) from
 your microphone in real time and sends it to a virtual camera, for Zoom, Teams
 or Meet. The virtual camera on Linux is v4l2loopback: load it with
 sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label="Avatar Camera"
 (avatar-desktop doctor and the window say so when it is missing).
CONTROL

mkdir -p "$OUT"
DEB=$OUT/avatar-desktop_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group "-Z$COMPRESSION" --build "$PKG" "$DEB" >/dev/null
echo "build_deb.sh: wrote $DEB ($(du -h "$DEB" | cut -f1); installed $(du -sh --exclude=DEBIAN "$PKG" | cut -f1))"
echo "build_deb.sh: Depends: $DEPENDS"
