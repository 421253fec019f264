"""Noise sources of the streaming generators: seeded standard-normal float32 arrays, drawn in a fixed order.

A generator draws every random number through its noise source, so that a backend can use its own (the torch
backend a CPU torch.Generator: its videos stay what they were; the ONNX backend numpy's, and imports no torch), and
a test can hand one backend the other's source to compare the two on the same noise.
"""

from __future__ import annotations

import numpy as np


class NumpyNoise:
    """Standard normal float32 from numpy's PCG64 generator."""

    def __init__(self, seed: int = 0):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        """Start the sequence again from `seed`."""
        self._rng = np.random.default_rng(seed)

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """float32 array of `shape`."""
        return self._rng.standard_normal(shape, dtype=np.float32)
