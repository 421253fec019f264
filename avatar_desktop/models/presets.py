"""Named model presets: the shipped CPU model's architecture and the SD1.5-class LLIA presets.

Every preset instantiates with random weights (`build_model`, which needs torch); trained weights come from
`models.store`. The presets themselves are plain configs (the window lists them without torch).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from avatar_desktop.config import (
    AudioConfig,
    AutoencoderConfig,
    ChunkPlanConfig,
    DenoiserConfig,
    ModelConfig,
    SamplingConfig,
)

if TYPE_CHECKING:
    from avatar_desktop.models.avatar import AvatarModel

# SD-VAE layout (AutoencoderKL), f=8, 4 latent channels: the large presets' autoencoder.
_SD_VAE = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 4,
    "up_block_types": ["UpDecoderBlock2D"] * 4,
    "block_out_channels": [128, 256, 512, 512],
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
}


def _llia(image_size: int) -> ModelConfig:
    return ModelConfig(
        preset=f"llia-{image_size}",
        autoencoder=AutoencoderConfig(
            kind="kl", image_size=image_size, latent_channels=4, downscale=8,
            encoder_channels=(), decoder_channels=(), scaling_factor=0.18215, diffusers_config=_SD_VAE,
            tiny_decoder={},  # TAESD's layout, the real-time choice (EngineConfig.decoder); the SD-VAE one for quality
        ),
        audio=AudioConfig(n_mels=80, channels=384, token_dim=768, tokens_per_frame=8),
        denoiser=DenoiserConfig(
            patch_size=1,
            block_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            attention_levels=(True, True, True, False),
            temporal_levels=(True, True, True, True),
            attention_head_dim=64,
            cross_attention_dim=768,
            reference_attention=True,
            norm_groups=32,
        ),
        sampling=SamplingConfig(steps=4),
        chunks=ChunkPlanConfig(first=2, after_state_change=4, steady=12),
    )




def tiny_test_config() -> ModelConfig:
    """A very small configuration for fast tests and smoke runs (64x64 video, reference attention on)."""
    return ModelConfig(
        preset="tiny-test",
        autoencoder=AutoencoderConfig(image_size=64, latent_channels=4, encoder_channels=(8, 16, 16), decoder_channels=(16, 16, 8)),
        audio=AudioConfig(n_mels=16, channels=16, token_dim=16, tokens_per_frame=2),
        denoiser=DenoiserConfig(
            block_channels=(16, 32),
            attention_levels=(False, True),
            temporal_levels=(True, True),
            attention_head_dim=8,
            cross_attention_dim=16,
            reference_attention=True,
            num_motion_frames=2,
            norm_groups=8,
            max_chunk_frames=16,
            audio_embedding=True,
        ),
    )


def _with_tiny_decoder(config: ModelConfig, preset: str) -> ModelConfig:
    """`config` named `preset`, its autoencoder with a small tiny decoder (TAESD layout, 16 channels, 1 block per
    resolution): for tests of the tiny decoder's training and use."""
    tiny_decoder = {"block_out_channels": (16,) * 4, "num_blocks": (1,) * 4}
    return replace(config, preset=preset, autoencoder=replace(config.autoencoder, tiny_decoder=tiny_decoder))


PRESETS: dict[str, ModelConfig] = {
    "tiny-cpu": ModelConfig(denoiser=DenoiserConfig(audio_embedding=True)),
    "llia-384": _llia(384),
    "llia-512": _llia(512),
    "tiny-test": tiny_test_config(),
    "tiny-test-taesd": _with_tiny_decoder(tiny_test_config(), "tiny-test-taesd"),
}


def preset_config(name: str) -> ModelConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}: available presets are {', '.join(PRESETS)}") from None


def build_model(preset: str | ModelConfig = "tiny-cpu", *, seed: int = 0) -> AvatarModel:
    """A model of `preset` (a name or a ModelConfig) with random weights drawn from `seed`, in eval mode."""
    import torch

    from avatar_desktop.models.avatar import AvatarModel

    config = preset_config(preset) if isinstance(preset, str) else preset
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AvatarModel(config)
    return model.eval()
