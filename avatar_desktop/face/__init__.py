"""The face mesh of a photo or frame: MediaPipe's face detection, face mesh and iris models run with LiteRT."""

from avatar_desktop.face.finder import FaceFinder, FaceTooSmallError, NoFaceError, find_face
from avatar_desktop.face.mesh import FaceMesh

__all__ = ["FaceFinder", "FaceMesh", "FaceTooSmallError", "NoFaceError", "find_face"]
