"""The virtual camera sink (pyvirtualcam) and the canvas a generated frame is composed onto."""

from __future__ import annotations

import platform
from dataclasses import dataclass

import cv2
import numpy as np

from avatar_desktop.errors import AvatarError


class CameraUnavailableError(AvatarError):
    """No virtual-camera driver, or the camera is busy or refused the format."""


@dataclass(frozen=True)
class CameraConfig:
    """The camera canvas (pixels) and rate (frames/s); 1280x720 at 30 fps is what video calls expect and all three
    OS backends accept. The photo path makes frames at this rate; a latent model makes its own (25), repeated.

    backend: a pyvirtualcam backend name, None = the first that works; device: e.g. /dev/video4, None = any.
    background: RGB of the letterbox bars; mirror: flip left-right (what a selfie preview shows).
    """

    width: int = 1280
    height: int = 720
    fps: int = 30
    mirror: bool = False
    background: tuple[int, int, int] = (20, 22, 26)
    backend: str | None = None
    device: str | None = None

    def __post_init__(self):
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ValueError(f"camera canvas must be even and >= 16 pixels, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 120:
            raise ValueError(f"camera fps must lie in [1, 120], got {self.fps}")


class Canvas:
    """Letterboxes frames onto a preallocated uint8 (height, width, 3) RGB canvas: scaled to fit, centred."""

    def __init__(self, config: CameraConfig):
        self.config = config
        self.image = np.empty((config.height, config.width, 3), np.uint8)
        self.image[:] = config.background
        self._box: tuple[int, int, int, int] | None = None  # y, x, h, w of the last frame's area

    def compose(self, frame: np.ndarray) -> np.ndarray:
        """frame: uint8 (H, W, 3) RGB of any size -> the canvas (a view that the next call overwrites)."""
        height, width = frame.shape[:2]
        scale = min(self.config.width / width, self.config.height / height)
        h, w = max(1, round(height * scale)), max(1, round(width * scale))
        box = ((self.config.height - h) // 2, (self.config.width - w) // 2, h, w)
        if box != self._box:
            self.image[:] = self.config.background
            self._box = box
        y, x = box[:2]
        if self.config.mirror:
            frame = frame[:, ::-1]
        interpolation = cv2.INTER_LINEAR if scale >= 1 else cv2.INTER_AREA
        cv2.resize(np.ascontiguousarray(frame), (w, h), dst=self.image[y : y + h, x : x + w], interpolation=interpolation)
        return self.image


def driver_advice(system: str | None = None) -> str:
    """What to install for a virtual camera on `system` (platform.system() names)."""
    system = system or platform.system()
    if system == "Linux":
        return (
            "install v4l2loopback (Debian/Ubuntu: sudo apt install v4l2loopback-dkms) and load it with "
            "`sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=\"Avatar Camera\"` "
            "(exclusive_caps=1 is needed for Chrome, Zoom and Teams to list it)"
        )
    if system in ("Windows", "Darwin"):
        return "install OBS Studio (obsproject.com), then start and stop its Virtual Camera once to register it"
    return f"no virtual-camera backend is known for {system}"


class VirtualCameraSink:
    """A pyvirtualcam camera taking RGB canvases; `send(canvas)` from one thread (the camera sender)."""

    def __init__(self, config: CameraConfig):
        import pyvirtualcam

        self.config = config
        try:
            self._camera = pyvirtualcam.Camera(
                config.width, config.height, config.fps, fmt=pyvirtualcam.PixelFormat.RGB,
                device=config.device, backend=config.backend,
            )
        except KeyError:
            known = ", ".join(pyvirtualcam.camera.BACKENDS) or "none"
            raise CameraUnavailableError(
                f"unknown virtual-camera backend {config.backend!r} (known: {known}); {driver_advice()}"
            ) from None
        except RuntimeError as error:
            reasons = " | ".join(line.strip() for line in str(error).splitlines() if line.strip())
            if "busy" in reasons.lower():
                advice = "another program is sending to the virtual camera: close it, or choose another device"
            else:
                advice = driver_advice()
            raise CameraUnavailableError(f"no virtual camera could be opened ({reasons}); {advice}") from None
        self.device = self._camera.device
        self.name = f"camera {self.device}"

    def send(self, canvas: np.ndarray, media_time: float) -> None:
        """canvas: uint8 (height, width, 3) RGB."""
        self._camera.send(canvas)

    def close(self) -> None:
        self._camera.close()
