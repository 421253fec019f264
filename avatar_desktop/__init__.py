"""avatar-desktop: a portrait and a microphone in, a talking avatar on a virtual camera out."""

__version__ = "0.1.0"
