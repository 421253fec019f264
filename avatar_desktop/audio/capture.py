"""Audio devices with sounddevice: which input to record (CaptureConfig), finding a device by index or name, and
the error that names the devices there are. The recording itself, into the session's AudioRing, is
runtime/mic.py."""

from __future__ import annotations

from dataclasses import dataclass

from avatar_desktop.errors import AvatarError


class AudioDeviceError(AvatarError):
    """An audio device that does not exist, cannot be opened, or stopped delivering audio."""


@dataclass(frozen=True)
class CaptureConfig:
    """device: sounddevice index or (part of a) name, None = the system's default input.
    device_rate: rate (Hz) to open the device at; None = 16 kHz if the device takes it, else its default rate.
    block_ms: callback block length (ms)."""

    device: str | int | None = None
    device_rate: int | None = None
    block_ms: float = 20.0


def resolve_device(device: str | int | None, kind: str) -> dict:
    """sounddevice's description of `device` for `kind` ('input' or 'output'); AudioDeviceError lists the choices."""
    import sounddevice as sd

    try:
        return sd.query_devices(device, kind)
    except (ValueError, sd.PortAudioError) as error:
        channels = "max_input_channels" if kind == "input" else "max_output_channels"
        choices = [f"{i}: {d['name']}" for i, d in enumerate(sd.query_devices()) if d[channels] > 0]
        listing = "; ".join(choices) if choices else "none (is a sound server or driver running?)"
        what = "default" if device is None else repr(device)
        raise AudioDeviceError(f"no {kind} device {what} ({error}); available {kind} devices: {listing}") from None
