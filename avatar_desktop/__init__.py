"""avatar-desktop: a portrait and a microphone in, a talking avatar on a virtual camera out."""

__version__ = "0.1.0"
"""The one version number: pyproject.toml reads it, `avatar-desktop --version` and the window's About box show it."""

DESCRIPTION = "A talking avatar of your portrait, driven by your microphone, on a virtual camera."
"""What the app does, in one line: the command line's help and the About box."""

PROJECT_LINE = "Open source under the Apache-2.0 licence: the app, its training stack and its default model."
"""The licence and project line of the About box (pyproject.toml's licence)."""
