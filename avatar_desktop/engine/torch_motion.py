"""The torch backend of the photo path's motion generator: the MotionModel's audio encoder and sampler, driven by
engine/motion_stream.py's MotionStreamer. `sample_motion` is also what the ONNX export traces (engine/onnx_export.py),
so that both backends run one definition of a chunk's sampling."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from avatar_desktop.config import EngineConfig
from avatar_desktop.models.motion import MotionInputs, MotionModel
from avatar_desktop.motion_code import MOTION_HIGH, MOTION_LOW
from avatar_desktop.sampling import ChosenSampler, choose_sampler


class TorchNoise:
    """Standard normal float32 drawn by a CPU torch.Generator (a seed means the same on every device)."""

    def __init__(self, seed: int = 0):
        self._generator = torch.Generator()
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self._generator.manual_seed(seed)

    def normal(self, shape: tuple[int, ...]) -> np.ndarray:
        return torch.randn(shape, generator=self._generator, dtype=torch.float32).numpy()


def fresh_draws(chosen: ChosenSampler) -> int:
    """Noise tensors a sampler draws after the initial noise: one per consistency step after the first."""
    return chosen.steps - 1 if chosen.name == "consistency" else 0


def sample_motion(model: MotionModel, chosen: ChosenSampler, sigmas: torch.Tensor, inputs: MotionInputs,
                  noise: torch.Tensor, fresh_noise: Sequence[torch.Tensor]) -> torch.Tensor:
    """One chunk of motion codes (1, T, D) in code units, clamped to the components' ranges (slider offsets not yet
    added): noise (1, T, D) standard normal, fresh_noise fresh_draws(chosen) more of its shape."""
    extra = {"fresh_noise": fresh_noise} if chosen.name == "consistency" else {}
    sample = chosen.sample(lambda x, sigma: model.denoise(x, sigma, inputs), noise, sigmas, **extra)
    low, high = (torch.from_numpy(bound).to(noise.device) for bound in (MOTION_LOW, MOTION_HIGH))
    return model.denormalise(sample).clamp(low, high)


class TorchMotionNetwork:
    """A MotionModel on `config.device`, float32, as MotionStreamer runs it: numpy in, numpy out."""

    backend = "torch"

    def __init__(self, model: MotionModel, config: EngineConfig):
        self.device = torch.device(config.device)
        self.model = model.to(self.device).eval()
        self.config = model.config
        self.chosen = choose_sampler(self.config.sampling, config.sampler, config.steps)
        self.sampler_name, self.steps = self.chosen.name, self.chosen.steps
        self.fresh_draws = fresh_draws(self.chosen)
        self._sigmas = self.chosen.sigmas.to(self.device)

    def noise_source(self, seed: int) -> TorchNoise:
        return TorchNoise(seed)

    @torch.inference_mode()
    def audio_tokens(self, windows: np.ndarray) -> torch.Tensor:
        """(1, T, W) audio windows -> (1, T, N, A) tokens."""
        return self.model.audio_tokens(torch.from_numpy(windows).to(self.device))

    @torch.inference_mode()
    def sample(self, tokens: torch.Tensor, context: np.ndarray, labels: np.ndarray, sliders: np.ndarray,
               noise: list[np.ndarray]) -> np.ndarray:
        """The chunk's motion (T, D) in code units: context (1, M, D) normalised and noised, labels int64 (1, T),
        sliders (1, T, E), noise 1 + fresh_draws arrays (1, T, D)."""
        context, labels, sliders, *noise_tensors = (torch.from_numpy(array).to(self.device)
                                                    for array in (context, labels, sliders, *noise))
        inputs = MotionInputs(context=context, audio=tokens, label=labels, sliders=sliders)
        motion = sample_motion(self.model, self.chosen, self._sigmas, inputs, noise_tensors[0], noise_tensors[1:])
        return motion[0].cpu().numpy()
