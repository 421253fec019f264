"""Render the application icon, packaging/icon/avatar-desktop.svg, to the PNG sizes the window and the packages use.

    python packaging/make_icons.py [--out assets/icons]

Writes avatar-desktop-N.png for each N in SIZES (square, RGBA, transparent corners): the window loads them all
(gui/icon.py), the .deb installs them into the hicolor theme, PyInstaller, Inno Setup and the .app take the 256 and
512 px ones. Run it again after changing the SVG; tests/test_icons.py checks that the committed PNGs are current.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "packaging" / "icon" / "avatar-desktop.svg"
SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


def render_icons(out: Path, svg: Path = SVG) -> list[Path]:
    """Render `svg` at every size of SIZES into `out`; returns the files written."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QGuiApplication, QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (QPainter needs one)
    renderer = QSvgRenderer(str(svg))
    if not renderer.isValid():
        raise SystemExit(f"make_icons: {svg} is not a valid SVG file")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for size in SIZES:
        image = QImage(size, size, QImage.Format.Format_ARGB32)
        image.fill(Qt.GlobalColor.transparent)
        painter = QPainter(image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        renderer.render(painter)
        painter.end()
        path = out / f"avatar-desktop-{size}.png"
        if not image.save(str(path)):
            raise SystemExit(f"make_icons: cannot write {path}")
        written.append(path)
    return written


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "assets" / "icons", help="folder for the PNGs")
    args = parser.parse_args()
    for path in render_icons(args.out):
        print(f"make_icons: wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
