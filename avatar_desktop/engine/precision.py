"""Precision backends: how a model is cast and laid out for a device. Pipeline code never branches on them.

A backend prepares the model once (dtype, memory layout) and names the dtype that latents and conditioning use.
'auto' picks bf16 on CPUs with native bf16 (AVX512-BF16 or AMX) and fp32 on the others, fp16 on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from avatar_desktop.errors import AvatarError


@dataclass(frozen=True)
class PrecisionBackend:
    name: str
    dtype: torch.dtype
    devices: tuple[str, ...]

    def prepare(self, model: nn.Module, device: torch.device) -> nn.Module:
        """Cast `model` in place to this backend's dtype on `device`, convolutions in channels-last layout."""
        if device.type not in self.devices:
            usable = ", ".join(name for name, backend in BACKENDS.items() if device.type in backend.devices)
            raise AvatarError(f"--precision {self.name} runs on {', '.join(self.devices)}, not on {device.type}: "
                              f"use --precision {usable} or auto there")
        return model.to(device=device, dtype=self.dtype, memory_format=torch.channels_last)


BACKENDS: dict[str, PrecisionBackend] = {
    "fp32": PrecisionBackend("fp32", torch.float32, ("cpu", "cuda")),
    "bf16": PrecisionBackend("bf16", torch.bfloat16, ("cpu", "cuda")),
    "fp16": PrecisionBackend("fp16", torch.float16, ("cuda",)),
}


def cpu_has_native_bf16() -> bool:
    return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def select_backend(name: str, device: torch.device) -> PrecisionBackend:
    """Resolve a backend name ('auto' included) for `device`; unknown names list the known ones."""
    if name == "auto":
        if device.type == "cuda":
            name = "fp16"
        else:
            name = "bf16" if cpu_has_native_bf16() else "fp32"
    if name == "int8":
        raise ValueError("precision int8 runs on the ONNX backend: export the model with `avatar-desktop export "
                         "--model MODEL --out FOLDER --int8 --calibration DATA` and run that folder")
    try:
        return BACKENDS[name]
    except KeyError:
        raise ValueError(f"unknown precision {name!r}: expected auto or one of {', '.join(BACKENDS)}") from None
