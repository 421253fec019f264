"""The diffusers autoencoder variants behind the same interface, and loading a local diffusers folder."""

import dataclasses

import pytest
import torch
from diffusers import AutoencoderKL, AutoencoderTiny

from avatar_desktop.config import AutoencoderConfig
from avatar_desktop.models.autoencoder import build_autoencoder, load_diffusers_autoencoder
from avatar_desktop.models.presets import build_model, tiny_test_config
from avatar_desktop.models.store import load_model, save_model

TINY_KL = {
    "block_out_channels": [8, 16],
    "down_block_types": ["DownEncoderBlock2D"] * 2,
    "up_block_types": ["UpDecoderBlock2D"] * 2,
    "latent_channels": 4,
    "norm_num_groups": 4,
    "layers_per_block": 1,
}



@pytest.fixture(autouse=True)
def _inference_only():
    with torch.no_grad():
        yield


def test_kl_variant_encodes_and_decodes_with_scaling():
    cfg = AutoencoderConfig(kind="kl", image_size=32, latent_channels=4, downscale=2, scaling_factor=0.5, diffusers_config=TINY_KL)
    ae = build_autoencoder(cfg)
    images = torch.rand(2, 3, 32, 32) * 2 - 1
    latents = ae.encode(images)
    assert latents.shape == (2, 4, 16, 16)
    torch.testing.assert_close(latents, ae.vae.encode(images).latent_dist.mode() * 0.5)
    assert ae.decode(latents).shape == images.shape


def test_model_with_kl_autoencoder_round_trips_through_the_store(tmp_path):
    base = tiny_test_config()
    cfg = dataclasses.replace(
        base,
        autoencoder=AutoencoderConfig(kind="kl", image_size=16, latent_channels=4, downscale=2, diffusers_config=TINY_KL),
    )
    model = build_model(cfg, seed=1)
    loaded = load_model(save_model(model, tmp_path / "kl"))
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


@pytest.mark.parametrize("cls, kind", [(AutoencoderKL, "kl"), (AutoencoderTiny, "taesd")])
def test_local_diffusers_folder_loads_without_network(tmp_path, cls, kind):
    if cls is AutoencoderKL:
        vae = cls(**TINY_KL)
    else:
        vae = cls(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8), num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4)
    vae.save_pretrained(tmp_path / "vae", safe_serialization=True)
    cfg, ae = load_diffusers_autoencoder(tmp_path / "vae", image_size=32)
    assert cfg.kind == kind and cfg.downscale == 2 and cfg.latent_channels == 4
    for key, value in vae.state_dict().items():
        assert torch.equal(value, ae.vae.state_dict()[key]), key
    assert ae.decode(ae.encode(torch.zeros(1, 3, 32, 32))).shape == (1, 3, 32, 32)


def test_non_diffusers_folder_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_diffusers_autoencoder(tmp_path, image_size=32)
    (tmp_path / "config.json").write_text('{"_class_name": "UNet2DModel"}')
    with pytest.raises(ValueError, match="UNet2DModel"):
        load_diffusers_autoencoder(tmp_path, image_size=32)


def test_a_tiny_decoder_decodes_the_same_latents_and_is_stored_with_the_decoders(tmp_path):
    """AutoencoderConfig.tiny_decoder: a TAESD-layout decoder of the autoencoder's latents, saved in the model
    folder, outside encoder_state (so a latent cache stays valid when it trains)."""
    from avatar_desktop.models.autoencoder import encoder_state
    from avatar_desktop.models.presets import preset_config

    config = preset_config("tiny-test-taesd")
    model = build_model(config, seed=0)
    latents = torch.randn(2, 4, 8, 8)
    assert model.autoencoder.tiny_decoder(latents).shape == model.autoencoder.decode(latents).shape == (2, 3, 64, 64)
    assert not any(name.startswith("tiny_decoder.") for name in encoder_state(model.autoencoder))
    loaded = load_model(save_model(model, tmp_path / "taesd"))
    torch.testing.assert_close(loaded.autoencoder.tiny_decoder(latents), model.autoencoder.tiny_decoder(latents))
    assert build_model("tiny-test").autoencoder.tiny_decoder is None

    uneven = dataclasses.replace(config.autoencoder, tiny_decoder={"num_blocks": [1, 1, 1]})
    with pytest.raises(ValueError, match=r"downscale 8 needs log2\(downscale\) \+ 1 entries in both num_blocks"):
        build_autoencoder(uneven)
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['channels'\]"):
        build_autoencoder(dataclasses.replace(config.autoencoder, tiny_decoder={"channels": 4}))
