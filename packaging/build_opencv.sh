#!/usr/bin/env bash
# Build the OpenCV the installed app bundles: the environment's opencv-python-headless release, compiled from its
# source distribution with only what the runtime calls (core, imgproc, imgcodecs for PNG and JPEG, photo for the eye
# inpainting, calib3d for the lip fit, objdetect for `dataset videos`), without video I/O (FFmpeg and its codecs),
# LAPACK (OpenBLAS) and the other image formats. The stock wheel installs 151 MB; this one about a tenth of that
# (packaging/README.md has the sizes, the build time and the speed against the stock wheel).
#
#     packaging/build_opencv.sh OUT_DIR
#
# Writes OUT_DIR/opencv_python_headless-VERSION-*.whl (reused when it is there) and prints its path. Needs a C++
# compiler and CMake (Debian: build-essential cmake), and the package registry for the source and its build tools.
# PYTHON: the environment whose opencv-python-headless version is rebuilt (default: .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$PWD/.venv/bin/python}
[ $# -eq 1 ] || { echo "usage: packaging/build_opencv.sh OUT_DIR" >&2; exit 2; }
OUT=$1
VERSION=$("$PYTHON" -c 'from importlib.metadata import version; print(version("opencv-python-headless"))') ||
    { echo "build_opencv.sh: $PYTHON has no opencv-python-headless to match (make setup installs it)" >&2; exit 1; }
mkdir -p "$OUT"
for wheel in "$OUT"/opencv_python_headless-"$VERSION"-*.whl; do
    [ -f "$wheel" ] && { echo "$wheel"; exit 0; }
done

# The modules the app's code calls (grep 'cv2\.' avatar_desktop) and what they need; every other one is left out.
MODULES=core,imgproc,imgcodecs,photo,calib3d,objdetect,python3  # python3: the cv2 module itself
OFF=(FFMPEG GSTREAMER V4L LAPACK EIGEN IPP OPENCL VA 1394 ADE PROTOBUF TIFF WEBP OPENJPEG JASPER OPENEXR AVIF
    IMGCODEC_HDR IMGCODEC_SUNRASTER IMGCODEC_PXM IMGCODEC_PFM)
# IPP is off because its binaries are downloaded from GitHub at configure time (not from the package registry).
export CMAKE_ARGS="-DBUILD_LIST=$MODULES $(printf -- '-DWITH_%s=OFF ' "${OFF[@]}")-DBUILD_OPENEXR=OFF \
-DPYTHON3_LIMITED_API=ON"
export ENABLE_HEADLESS=1
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
"$PYTHON" -m pip wheel --quiet --no-deps --no-binary opencv-python-headless \
    "opencv-python-headless==$VERSION" --wheel-dir "$OUT" >&2
ls "$OUT"/opencv_python_headless-"$VERSION"-*.whl
