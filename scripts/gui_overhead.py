"""What the window costs a live session: the same session run headless and inside the window, alternately.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/gui_overhead.py [--seconds 20] [--rounds 2]
        [--model preset:tiny-cpu]

Runs on the PulseAudio test rig (silence at the mic), with no virtual-camera driver (preview only) in both cases.
Prints one JSON line per run (generated fps, worker fps, chunk compute p50, CPU seconds of this process) and the
mean change of the generated fps with the window. Not a test: the numbers go to docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "runtime"))  # the PulseAudio rig of the tests


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(session, seconds: float, pump) -> dict:
    """Wait for the first generated frames, then measure `seconds` of the session's output."""
    deadline = time.monotonic() + 120
    while not (session.worker_ready.is_set() and session.stats.snapshot()["new_frames"] > 25):
        if time.monotonic() > deadline:
            raise RuntimeError(f"no frames after 120 s: {session.events}")
        pump(0.05)
    before, cpu_before, started = session.stats.snapshot(), cpu_seconds(), time.monotonic()
    pump(seconds)
    after, elapsed = session.stats.snapshot(), time.monotonic() - started
    return {
        "generated_fps": round((after["new_frames"] - before["new_frames"]) / elapsed, 2),
        "camera_fps": round((after["frames_sent"] - before["frames_sent"]) / elapsed, 2),
        "chunk_compute_p50_ms": after["chunk_compute_ms"]["p50"],
        "main_process_cpu_s_per_s": round((cpu_seconds() - cpu_before) / elapsed, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="preset:tiny-cpu")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    import cv2
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from avatar_desktop.engine.bench import benchmark_portrait
    from avatar_desktop.gui.settings import SettingsStore
    from avatar_desktop.gui.window import MainWindow
    from avatar_desktop.runtime.session import LiveSession
    from pulse_rig import PulseRig, refresh_portaudio

    app = QApplication.instance() or QApplication(sys.argv[:1])  # noqa: F841  (kept alive for the whole run)

    def pump(seconds: float) -> None:
        """Run Qt's event loop (what app.exec() does) for `seconds`."""
        loop = QEventLoop()
        QTimer.singleShot(round(seconds * 1000), loop.quit)
        loop.exec()

    results = []
    with tempfile.TemporaryDirectory(prefix="avatar-overhead-") as folder:
        folder = Path(folder)
        rig = PulseRig(folder / "pulse")
        os.environ["PULSE_SERVER"] = rig.server
        refresh_portaudio()
        portrait = folder / "portrait.png"
        cv2.imwrite(str(portrait), benchmark_portrait(256)[:, :, ::-1])
        try:
            def headless(store: SettingsStore) -> dict:
                window = MainWindow(store=store, portrait=str(portrait), model=args.model, autostart=False)
                config = window.session_config()
                window.close()
                with LiveSession(window.portrait_image, config) as session:
                    return measure(session, args.seconds, time.sleep)

            def windowed(store: SettingsStore) -> dict:
                window = MainWindow(store=store, portrait=str(portrait), model=args.model)
                window.show()
                while window.controller.session is None:
                    pump(0.05)
                try:
                    return measure(window.controller.session, args.seconds, pump)
                finally:
                    window.close()

            for round_index in range(args.rounds):  # alternate the order: the machine's load drifts
                runs = (("headless", headless), ("window", windowed))
                for name, run in runs if round_index % 2 == 0 else runs[::-1]:
                    results.append({"run": name, **run(SettingsStore(folder / f"settings-{round_index}.ini"))})
                    print(json.dumps(results[-1]), flush=True)
        finally:
            rig.stop()
    mean = {run: sum(r["generated_fps"] for r in results if r["run"] == run) / args.rounds
            for run in ("headless", "window")}
    change = (mean["window"] - mean["headless"]) / mean["headless"] * 100
    print(json.dumps({"mean_generated_fps": mean, "change_with_window_percent": round(change, 1)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
