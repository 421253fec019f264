"""Take docs/screenshot.png: the window, offscreen, running a live session on the PulseAudio test rig.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py [--out docs/screenshot.png]
        [--model preset:tiny-cpu] [--portrait IMG] [--speech WAV]

Uses the model given (default: the untrained tiny-cpu preset; a trained `default` model when one is installed),
the bundled portrait (else a generated one), and a virtual camera that discards frames (no driver is needed).
Once the session shows its first generated frame, the bundled sample speech plays into the rig's microphone, and
the window is grabbed `--frames` generated frames later, while the avatar speaks.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))  # the PulseAudio rig of the tests


class DiscardingCamera:
    """A pyvirtualcam backend standing for the driver: accepts frames and drops them."""

    def __init__(self, *, width, height, fps, fourcc, device, **kw):
        self._device = device or "/dev/video-screenshot"

    def send(self, frame) -> None:
        pass

    def close(self) -> None:
        pass

    def device(self) -> str:
        return self._device

    def native_fourcc(self):
        return None


def generated(window) -> int:
    """Generated frames the session has shown so far (the portrait placeholder does not count)."""
    session = window.controller.session
    return session.stats.snapshot()["new_frames"] if session is not None else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    parser.add_argument("--model", default=None, help="model key, name or folder (default: the best one found)")
    parser.add_argument("--portrait", type=Path, default=None)
    parser.add_argument("--speech", type=Path, default=ROOT / "assets" / "sample_speech.wav",
                        help="WAV played into the microphone before the grab")
    parser.add_argument("--frames", type=int, default=60,
                        help="generated frames to wait for, after the speech starts, before the grab")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import cv2
    import pyvirtualcam
    from PySide6.QtWidgets import QApplication

    from avatar_desktop.engine.bench import benchmark_portrait
    from avatar_desktop.gui.catalog import bundled_portrait, model_choices
    from avatar_desktop.gui.settings import SettingsStore
    from avatar_desktop.gui.window import MainWindow
    from avatar_desktop.runtime.session import RuntimeConfig
    from pulse_rig import PulseRig, refresh_portaudio

    pyvirtualcam.register_backend("screenshot", DiscardingCamera)
    with tempfile.TemporaryDirectory(prefix="avatar-screenshot-") as folder:
        folder = Path(folder)
        rig = PulseRig(folder / "pulse")
        os.environ["PULSE_SERVER"] = rig.server
        refresh_portaudio()
        try:
            portrait = args.portrait or bundled_portrait()
            if portrait is None:
                portrait = folder / "portrait.png"
                cv2.imwrite(str(portrait), benchmark_portrait(256)[:, :, ::-1])
            trained = any(choice.trained for choice in model_choices())
            model = args.model or (None if trained else "preset:tiny-cpu")
            app = QApplication.instance() or QApplication(sys.argv[:1])
            window = MainWindow(store=SettingsStore(folder / "settings.ini"), portrait=str(portrait), model=model,
                                runtime=RuntimeConfig(standby_worker=False))
            window.resize(1180, 760)
            window.show()
            deadline = time.monotonic() + 120

            def wait_for(frames: int) -> bool:
                while generated(window) < frames and time.monotonic() < deadline:
                    app.processEvents()
                    time.sleep(0.01)
                return generated(window) >= frames

            running = wait_for(1)
            if running:
                rig.play(args.speech)
            if not (running and wait_for(generated(window) + args.frames)):
                print(f"screenshot: only {generated(window)} generated frames after 120 s", file=sys.stderr)
                return 1
            deadline = time.monotonic() + 1.5  # one more status poll for the overlay and status bar
            while time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.01)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            window.grab().save(str(args.out))
            window.close()
        finally:
            rig.stop()
    print(f"screenshot: wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
