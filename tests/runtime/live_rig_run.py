"""Run `avatar-desktop live` on the PulseAudio rig with speech in a loop: the live benchmark and the soak run.

    python tests/runtime/live_rig_run.py --out DIR [--talk-s 4 --pause-s 3] -- --preset tiny-cpu --random-weights
        --seconds 60
    python tests/runtime/live_rig_run.py --out DIR --portrait PHOTO -- --seconds 60     (the photo path)

Writes DIR/stats.json (the session's `--stats-json`) and DIR/memory.csv (seconds, RSS MiB of the session process,
RSS MiB of its worker processes, CPU % of each since the previous sample), and prints a summary. Not a test: benchmarks are recorded in
docs/PERFORMANCE.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pulse_rig import PulseRig, espeak_wav


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` (s)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError):
        return 0.0


def children(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--talk-s", type=float, default=4.0, help="speech per turn (s)")
    parser.add_argument("--pause-s", type=float, default=3.0, help="silence between turns (s)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="memory sampling period (s)")
    parser.add_argument("--portrait", type=Path, help="portrait image (default: the drawn stand-in portrait)")
    parser.add_argument("live_args", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="live-rig-") as folder:
        rig = PulseRig(Path(folder))
        try:
            wav = espeak_wav(Path(folder), "The quick brown fox jumps over the lazy dog, and then it rests a while.")
            portrait = args.portrait or Path(folder) / "portrait.png"
            if args.portrait is None:
                subprocess.run([sys.executable, "-c", (
                    "import cv2, sys; from avatar_desktop.engine.bench import benchmark_portrait; "
                    "cv2.imwrite(sys.argv[1], benchmark_portrait(256)[:, :, ::-1])"), str(portrait)], check=True)
            env = {**rig.env, "PULSE_SERVER": rig.server}
            live_args = [a for a in args.live_args if a != "--"]
            command = [str(Path(sys.executable).parent / "avatar-desktop"), "live", "--portrait", str(portrait),
                       "--stats-json", str(args.out / "stats.json"), *live_args]
            session = subprocess.Popen(command, env=env)
            memory = [("seconds", "session_mib", "workers_mib", "session_cpu_pct", "workers_cpu_pct")]
            last_cpu = (0.0, 0.0, time.monotonic())
            started = time.monotonic()
            next_turn = started + 8.0  # let the worker load first
            next_sample = started
            while session.poll() is None:
                now = time.monotonic()
                if now >= next_turn:
                    rig.play(wav)
                    next_turn = now + args.talk_s + args.pause_s
                if now >= next_sample:
                    kids = [c for c in children(session.pid) if "python" in _name(c)]
                    cpu = (cpu_seconds(session.pid), sum(cpu_seconds(c) for c in kids), now)
                    span = max(cpu[2] - last_cpu[2], 1e-6)
                    memory.append((
                        round(now - started, 1), round(rss_mib(session.pid), 1), round(sum(rss_mib(c) for c in kids), 1),
                        round((cpu[0] - last_cpu[0]) / span * 100), round(max(0.0, cpu[1] - last_cpu[1]) / span * 100),
                    ))
                    last_cpu = cpu
                    next_sample += args.sample_s
                time.sleep(0.2)
            (args.out / "memory.csv").write_text("\n".join(",".join(map(str, row)) for row in memory) + "\n")
            _summarise(memory[1:])
            return session.returncode
        finally:
            rig.stop()


def _name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text()
    except OSError:
        return ""


def _summarise(rows) -> None:
    rows = [r for r in rows if r[1] > 0][:-1]  # the last sample is taken while the session shuts down
    steady = [r for r in rows if r[0] >= 60] or rows
    if not steady:
        return
    total = [r[1] + r[2] for r in steady]
    print(f"memory after the first minute: session+workers {min(total):.0f}..{max(total):.0f} MiB "
          f"({(max(total) - min(total)) / min(total) * 100:.1f}% spread); CPU: session "
          f"{sum(r[3] for r in steady) / len(steady):.0f}%, workers {sum(r[4] for r in steady) / len(steady):.0f}% "
          "(100% = one core)")


if __name__ == "__main__":
    sys.exit(main())
