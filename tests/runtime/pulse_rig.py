"""The PulseAudio test rig of DESIGN.md section 9, started and stopped by the tests themselves.

A user-mode PulseAudio server with a null sink `vsink` whose monitor is remapped to the source `vmic` (the default
source, so PortAudio's `default`/`pulse` devices record it), and a second null sink `vcable` that stands for a
virtual cable (passthrough output; its monitor `vcable.monitor` is recorded to check what was sent). Everything
lives in a temporary folder with its own XDG_RUNTIME_DIR, so it runs as root in CI and never touches a user's
sound server.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

_CONFIG = """\
load-module module-native-protocol-unix
load-module module-null-sink sink_name=vsink rate=16000 channels=1
load-module module-null-sink sink_name=vcable rate=16000 channels=1
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
        subprocess.run(
            ["pulseaudio", "-D", "-n", "-F", str(config), "--exit-idle-time=-1", "--disallow-exit=false"],
            env=self.env, check=True, timeout=30, capture_output=True,
        )
        self.pactl("load-module", "module-remap-source", "master=vsink.monitor", "source_name=vmic")
        self.pactl("set-default-source", "vmic")

    @property
    def server(self) -> str:
        return f"unix:{self.runtime_dir / 'pulse' / 'native'}"

    def pactl(self, *args: str) -> str:
        done = subprocess.run(["pactl", *args], env=self.env, check=True, timeout=15, capture_output=True, text=True)
        return done.stdout

    def play(self, wav: Path, device: str = "vsink") -> subprocess.Popen:
        """Start playing `wav` into `device` (a sink); returns the paplay process."""
        return subprocess.Popen(["paplay", f"--device={device}", str(wav)], env=self.env)

    def stop(self) -> None:
        subprocess.run(["pulseaudio", "--kill"], env=self.env, timeout=15, capture_output=True)
        deadline = time.monotonic() + 10
        pid_file = self.runtime_dir / "pulse" / "pid"
        while pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)


def pulseaudio_missing_reason() -> str | None:
    for binary in ("pulseaudio", "pactl", "paplay"):
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
