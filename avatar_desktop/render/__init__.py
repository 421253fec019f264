"""The photo renderer: a real portrait moved by motion codes (DESIGN.md 5b)."""

from avatar_desktop.render.renderer import PhotoRenderer, camera_frame_size, default_output_size, fit_to_camera

__all__ = ["PhotoRenderer", "camera_frame_size", "default_output_size", "fit_to_camera"]
