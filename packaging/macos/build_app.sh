#!/usr/bin/env bash
# Build "Avatar Desktop.app" with PyInstaller (packaging/avatar-desktop.spec makes the .app on macOS, with the keys of
# packaging/macos/Info.plist) and put it in a disk image: build/dmg/avatar-desktop-VERSION-macos-ARCH.dmg.
#
#     packaging/macos/build_app.sh
#
# PYTHON: the interpreter of a virtual environment holding the app's runtime dependencies (default: .venv/bin/python).
# Not tried by the project's own machines (Linux only): .github/workflows/release.yml runs it on a macOS runner.
# The app is not signed or notarized: the first start needs right-click > Open (packaging/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-.venv/bin/python}
"$PYTHON" -m PyInstaller --version >/dev/null 2>&1 || "$PYTHON" -m pip install --quiet -r packaging/requirements.txt
"$PYTHON" -m PyInstaller --noconfirm --log-level WARN --distpath build/pyinstaller/dist \
    --workpath build/pyinstaller/work packaging/avatar-desktop.spec
APP="build/pyinstaller/dist/Avatar Desktop.app"
VERSION=$("$APP/Contents/MacOS/avatar-desktop" --version | awk '{print $2}')
mkdir -p build/dmg
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT
cp -R "$APP" "$STAGE/"
ln -s /Applications "$STAGE/Applications"  # drag the app onto it to install
DMG=build/dmg/avatar-desktop-$VERSION-macos-$(uname -m).dmg
hdiutil create -volname "Avatar Desktop" -srcfolder "$STAGE" -ov -format UDZO "$DMG"
echo "build_app.sh: wrote $DMG"
