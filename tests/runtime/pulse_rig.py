"""The PulseAudio test rig of DESIGN.md section 9, started and stopped by the tests themselves.

A user-mode PulseAudio server with a null sink `vsink` whose monitor is remapped to the source `vmic` (the default
source, so PortAudio's `default`/`pulse` devices record it), and a second null sink `vcable` that stands for a
virtual cable (passthrough output; its monitor `vcable.monitor` is recorded to check what was sent), and `vfar`,
the other side of a call (its monitor is the far-end input). PortAudio reaches PulseAudio through ALSA's `pulse`
device, which always opens the default source or sink: `move_newest(...)` routes the stream opened last, as a
user would with pavucontrol. Everything
lives in a temporary folder with its own XDG_RUNTIME_DIR, so it runs as root in CI and never touches a user's
sound server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

_CONFIG = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-null-sink sink_name=vcable rate=16000 channels=1
load-module module-null-sink sink_name=vfar rate=16000 channels=1
load-module module-always-sink
set-default-sink vsink
"""


class PulseRig:
    """A running PulseAudio server; `play(wav)` plays into the mic, `stop()` kills the server."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.runtime_dir = folder / "run"
        self.runtime_dir.mkdir(parents=True)
        config = folder / "rig.pa"
        config.write_text(_CONFIG)
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(self.runtime_dir), "HOME": str(folder)}
        self.env.pop("PULSE_SERVER", None)
        self._config = config
        self.start()

    def start(self) -> None:
        """Start the server (again, after `stop()`: same socket, so clients can reconnect)."""
        subprocess.run(
            ["pulseaudio", "-D", "-n", "-F", str(self._config), "--exit-idle-time=-1", "--disallow-exit=false"],
            env=self.env, check=True, timeout=30, capture_output=True,
        )
        self.pactl("load-module", "module-remap-source", "master=vsink.monitor", "source_name=vmic")
        self.pactl("set-default-source", "vmic")

    @property
    def server(self) -> str:
        return f"unix:{self.runtime_dir / 'pulse' / 'native'}"

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, timeout=15, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"pactl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def move_newest(self, kind: str, target: str) -> None:
        """Route this process' newest stream of `kind` ('source-output': a recording, 'sink-input': a playback)
        to `target`."""
        streams = json.loads(self.pactl("-f", "json", "list", f"{kind}s"))
        mine = [s["index"] for s in streams if s["properties"].get("application.process.id") == str(os.getpid())]
        if not mine:
            raise RuntimeError(f"this process has no {kind} stream to move (streams: {streams})")
        self.pactl(f"move-{kind}", str(max(mine)), target)

    def play(self, wav: Path, device: str = "vsink") -> subprocess.Popen:
        """Start playing `wav` into `device` (a sink); returns the paplay process."""
        return subprocess.Popen(["paplay", f"--device={device}", str(wav)], env=self.env)

    def stop(self) -> None:
        subprocess.run(["pulseaudio", "--kill"], env=self.env, timeout=15, capture_output=True)
        deadline = time.monotonic() + 10
        pid_file = self.runtime_dir / "pulse" / "pid"
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


class SourceRecorder:
    """Records a PulseAudio source with `parec` (float32 16 kHz mono, 10 ms latency) in a thread; every block keeps
    its arrival time, so `onset_times(level)` gives the monotonic time of each sound's start."""

    def __init__(self, rig: PulseRig, source: str):
        self.process = subprocess.Popen(
            ["parec", f"--device={source}", "--rate=16000", "--channels=1", "--format=float32le",
             "--latency-msec=10", "--raw"], env=rig.env, stdout=subprocess.PIPE,
        )
        self.blocks: list[tuple[float, np.ndarray]] = []  # (arrival time, float32 (N,))
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while chunk := self.process.stdout.read(640):
            self.blocks.append((time.monotonic(), np.frombuffer(chunk, np.float32)))

    def onset_times(self, level: float = 0.05, quiet_s: float = 0.4) -> list[float]:
        """Monotonic times of the first sample above `level` after `quiet_s` of samples below it.

        Sample s arrived at `s / 16000 + offset`, offset being the smallest `arrival - block end / 16000` seen:
        a block read late (this thread waited for the GIL) does not make its samples look late.
        """
        blocks = list(self.blocks)
        ends = np.cumsum([block.size for _, block in blocks])
        offset = min((arrived - end / 16000 for (arrived, _), end in zip(blocks, ends)), default=0.0)
        audio = np.concatenate([block for _, block in blocks]) if blocks else np.zeros(0, np.float32)
        loud = np.flatnonzero(np.abs(audio) > level)
        gaps = np.diff(np.concatenate([[-np.inf], loud]))
        return [float(index / 16000 + offset) for index in loud[gaps > quiet_s * 16000]]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self._thread.join(5)


def pulseaudio_missing_reason() -> str | None:
    for binary in ("pulseaudio", "pactl", "paplay", "parec"):
        if shutil.which(binary) is None:
            return f"`{binary}` is not installed (Debian: apt-get install pulseaudio pulseaudio-utils)"
    return None


def refresh_portaudio() -> None:
    """Re-initialise PortAudio so that its device list sees the server just started (or stopped)."""
    import sounddevice as sd

    sd._terminate()
    sd._initialize()


def espeak_wav(folder: Path, text: str, name: str = "speech.wav") -> Path:
    """Synthesize `text` with espeak-ng into a WAV file (22.05 kHz mono)."""
    path = folder / name
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, timeout=60, capture_output=True)
    return path
