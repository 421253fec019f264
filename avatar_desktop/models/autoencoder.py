"""Image <-> latent autoencoders behind one interface.

Images are (B, 3, H, W) float in [-1, 1]; latents are (B, C, H/f, W/f), already multiplied by the scaling
factor so that the diffusion model sees roughly unit variance. Variants are registered in AUTOENCODERS:
'tiny' (ours, built for a fast CPU decoder), 'kl' (diffusers AutoencoderKL, the SD-VAE layout) and
'taesd' (diffusers AutoencoderTiny). Any of them may carry a second decoder, `tiny_decoder` (TAESD layout), that
decodes the same latents more cheaply (AutoencoderConfig.tiny_decoder).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from avatar_desktop.config import AutoencoderConfig


class _ResidualConv(nn.Module):
    """x + conv(silu(conv(x))): two 3x3 convolutions without normalisation (cheap on CPU). (B, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.silu(self.conv1(F.silu(x))))


class _PixelShuffleUp(nn.Module):
    """2x upsampling: 1x1 conv to 4*out channels at low resolution, pixel shuffle, then a 3x3 conv at high resolution."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.expand = nn.Conv2d(in_channels, out_channels * 4, 1)
        self.refine = nn.Conv2d(out_channels, out_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.pixel_shuffle(self.expand(x), 2)
        return x + self.refine(F.silu(x))


class TinyAutoencoder(nn.Module):
    """Strided-conv encoder, pixel-shuffle decoder. The decoder runs on every frame: most of its work is at low resolution."""

    decoder_prefixes = ("decoder.", "tiny_decoder.")

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.tiny_decoder: nn.Module | None = None  # build_autoencoder adds the configured one
        levels = len(cfg.encoder_channels)
        if 2**levels != cfg.downscale or len(cfg.decoder_channels) != levels:
            raise ValueError(
                f"tiny autoencoder: downscale {cfg.downscale} needs log2(downscale) = {levels} encoder and decoder levels"
            )
        self.cfg = cfg
        enc: list[nn.Module] = []
        channels = 3
        for width in cfg.encoder_channels:
            enc += [nn.Conv2d(channels, width, 4, stride=2, padding=1), nn.SiLU(), _ResidualConv(width)]
            channels = width
        enc += [nn.SiLU(), nn.Conv2d(channels, cfg.latent_channels, 3, padding=1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(cfg.latent_channels, cfg.decoder_channels[0], 3, padding=1)]
        dec.append(_ResidualConv(cfg.decoder_channels[0]))
        widths = list(cfg.decoder_channels)
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            dec.append(_PixelShuffleUp(width_in, width_out))
        dec += [nn.SiLU(), nn.Conv2d(widths[-1], 3 * 4, 3, padding=1), nn.PixelShuffle(2)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, C, H/f, W/f) scaled latents."""
        return self.encoder(images) * self.cfg.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) scaled latents -> (B, 3, h*f, w*f), nominally in [-1, 1] (not clamped)."""
        return self.decoder(latents / self.cfg.scaling_factor)


class DiffusersAutoencoder(nn.Module):
    """Adapter giving diffusers' AutoencoderKL / AutoencoderTiny the same encode/decode as TinyAutoencoder."""

    decoder_prefixes = ("vae.decoder.", "vae.post_quant_conv.", "tiny_decoder.")

    def __init__(self, cfg: AutoencoderConfig, vae: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.vae = vae
        self.tiny_decoder: nn.Module | None = None  # build_autoencoder adds the configured one

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        encoded = self.vae.encode(images)
        latents = encoded.latent_dist.mode() if hasattr(encoded, "latent_dist") else encoded.latents
        return latents * self.cfg.scaling_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(latents / self.cfg.scaling_factor).sample


def encoder_state(autoencoder: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors the latents depend on: the autoencoder's state dict without its decoder's entries."""
    return {name: tensor for name, tensor in autoencoder.state_dict().items()
            if not name.startswith(autoencoder.decoder_prefixes)}


def decoder_parameters(autoencoder: nn.Module) -> list[nn.Parameter]:
    """The parameters that only decoding uses (training them leaves every latent unchanged)."""
    return [parameter for name, parameter in autoencoder.named_parameters()
            if name.startswith(autoencoder.decoder_prefixes)]


def _build_kl(cfg: AutoencoderConfig) -> nn.Module:
    from diffusers import AutoencoderKL

    return DiffusersAutoencoder(cfg, AutoencoderKL(**cfg.diffusers_config))


def _build_taesd(cfg: AutoencoderConfig) -> nn.Module:
    from diffusers import AutoencoderTiny

    return DiffusersAutoencoder(cfg, AutoencoderTiny(**cfg.diffusers_config))


AUTOENCODERS: dict[str, Callable[[AutoencoderConfig], nn.Module]] = {
    "tiny": TinyAutoencoder,
    "kl": _build_kl,
    "taesd": _build_taesd,
}


TINY_DECODER_LAYOUT = {"block_out_channels": (64, 64, 64, 64), "num_blocks": (3, 3, 3, 1), "act_fn": "relu",
                       "upsample_fn": "nearest"}
"""TAESD's decoder (diffusers AutoencoderTiny's defaults): 3 2x upsamplings, so for 8x downscaling."""


def build_tiny_decoder(cfg: AutoencoderConfig) -> nn.Module:
    """diffusers' DecoderTiny (the TAESD layout, TINY_DECODER_LAYOUT with cfg.tiny_decoder's overrides) for cfg's
    latents: (B, C, h, w) scaled latents -> (B, 3, h*f, w*f) in [-1, 1]. Its num_blocks has one entry per
    resolution: log2(downscale) + 1."""
    from diffusers.models.autoencoders.vae import DecoderTiny

    unknown = set(cfg.tiny_decoder) - set(TINY_DECODER_LAYOUT)
    if unknown:
        raise ValueError(f"tiny_decoder: unknown key(s) {sorted(unknown)}; known: {sorted(TINY_DECODER_LAYOUT)}")
    layout = {**TINY_DECODER_LAYOUT, **cfg.tiny_decoder}
    if 2 ** (len(layout["num_blocks"]) - 1) != cfg.downscale or len(layout["block_out_channels"]) != len(layout["num_blocks"]):
        raise ValueError(f"tiny_decoder: downscale {cfg.downscale} needs log2(downscale) + 1 entries in both num_blocks "
                         f"and block_out_channels, got {list(layout['num_blocks'])} and {list(layout['block_out_channels'])}")
    return DecoderTiny(in_channels=cfg.latent_channels, out_channels=3, num_blocks=tuple(layout["num_blocks"]),
                       block_out_channels=tuple(layout["block_out_channels"]), upsampling_scaling_factor=2,
                       act_fn=layout["act_fn"], upsample_fn=layout["upsample_fn"])


def build_autoencoder(cfg: AutoencoderConfig) -> nn.Module:
    """Instantiate the registered variant `cfg.kind` (with its tiny decoder, when configured) with random weights."""
    try:
        factory = AUTOENCODERS[cfg.kind]
    except KeyError:
        raise ValueError(f"unknown autoencoder kind {cfg.kind!r}: expected one of {sorted(AUTOENCODERS)}") from None
    autoencoder = factory(cfg)
    if cfg.tiny_decoder is not None:
        autoencoder.tiny_decoder = build_tiny_decoder(cfg)
    return autoencoder


def load_diffusers_autoencoder(folder: str | Path, *, image_size: int) -> tuple[AutoencoderConfig, nn.Module]:
    """Load a local diffusers AutoencoderKL or AutoencoderTiny folder (config.json + safetensors); never downloads."""
    from diffusers import AutoencoderKL, AutoencoderTiny

    folder = Path(folder)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: not a diffusers model folder (no config.json)")
    class_name = json.loads(config_file.read_text()).get("_class_name")
    classes = {"AutoencoderKL": (AutoencoderKL, "kl"), "AutoencoderTiny": (AutoencoderTiny, "taesd")}
    if class_name not in classes:
        raise ValueError(f"{folder}: _class_name {class_name!r} is not one of {sorted(classes)}")
    cls, kind = classes[class_name]
    vae = cls.from_pretrained(folder, local_files_only=True, use_safetensors=True)
    stages = vae.config.block_out_channels if kind == "kl" else vae.config.encoder_block_out_channels
    downscale = 2 ** (len(stages) - 1)
    cfg = AutoencoderConfig(
        kind=kind,
        image_size=image_size,
        latent_channels=vae.config.latent_channels,
        downscale=downscale,
        scaling_factor=float(getattr(vae.config, "scaling_factor", 1.0) or 1.0),
        diffusers_config={k: v for k, v in dict(vae.config).items() if not k.startswith("_")},
    )
    return cfg, DiffusersAutoencoder(cfg, vae)
