"""Shape contracts at every boundary of the networks, and the presets' architectures."""

import dataclasses

import pytest
import torch

from avatar_desktop.audio.features import LogMel, frame_windows, window_geometry
from avatar_desktop.config import AudioConfig
from avatar_desktop.models.denoiser import DenoiserInputs
from avatar_desktop.models.presets import PRESETS, build_model
from avatar_desktop.models.avatar import AvatarModel
from avatar_desktop.sampling.schedules import preconditioning



@pytest.fixture(autouse=True)
def _inference_only():
    with torch.no_grad():
        yield


def _inputs(model, frames, batch=1):
    channels, h, w = model.latent_shape
    cfg = model.config
    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(batch, channels, h, w, generator=generator)
    return DenoiserInputs(
        reference=reference,
        motion=torch.randn(batch, cfg.denoiser.num_motion_frames, channels, h, w, generator=generator),
        audio=torch.randn(batch, frames, cfg.audio.tokens_per_frame, cfg.audio.token_dim, generator=generator),
        label=torch.tensor([0, 2][:batch]),
        expression=torch.zeros(batch, cfg.denoiser.expression_dim),
    )


def test_autoencoder_shapes(tiny_model):
    cfg = tiny_model.config.autoencoder
    images = torch.rand(3, 3, cfg.image_size, cfg.image_size) * 2 - 1
    latents = tiny_model.autoencoder.encode(images)
    assert latents.shape == (3, *tiny_model.latent_shape)
    assert tiny_model.autoencoder.decode(latents).shape == images.shape


def test_tiny_cpu_preset_outputs_at_least_256_pixels():
    cfg = PRESETS["tiny-cpu"]
    assert cfg.autoencoder.image_size >= 256 and cfg.fps == 25
    model = build_model("tiny-cpu")
    latents = model.autoencoder.encode(torch.zeros(1, 3, 256, 256))
    assert model.autoencoder.decode(latents).shape == (1, 3, 256, 256)


def test_audio_windows_and_tokens(tiny_model):
    cfg = tiny_model.config
    per_frame, past, ahead = window_geometry(cfg.audio, cfg.fps)
    assert per_frame == 640
    audio = torch.randn(2, 10 * per_frame + ahead)
    windows = frame_windows(audio, 0, 0, 10, cfg.audio, cfg.fps)
    assert windows.shape == (2, 10, past + per_frame + ahead)
    # frame 0's past lies before the stream: silence
    assert torch.all(windows[:, 0, : past] == 0)
    assert torch.equal(windows[:, 3, past : past + per_frame], audio[:, 3 * per_frame : 4 * per_frame])
    tokens = tiny_model.audio_encoder(windows)
    assert tokens.shape == (2, 10, cfg.audio.tokens_per_frame, cfg.audio.token_dim)


def test_audio_tokens_do_not_depend_on_chunking(tiny_model):
    cfg = tiny_model.config
    audio = torch.randn(12 * 640 + 2000)
    whole = tiny_model.audio_encoder(frame_windows(audio, 0, 0, 12, cfg.audio, cfg.fps))
    first = tiny_model.audio_encoder(frame_windows(audio, 0, 0, 5, cfg.audio, cfg.fps))
    # a later chunk given only a suffix of the stream, starting where its past window starts
    start = 5 * 640 - 3200
    rest = tiny_model.audio_encoder(frame_windows(audio[start:], start, 5, 7, cfg.audio, cfg.fps))
    torch.testing.assert_close(torch.cat([first, rest], dim=1), whole)


def test_frame_windows_refuse_missing_audio():
    cfg = AudioConfig()
    with pytest.raises(ValueError, match="need audio up to sample"):
        frame_windows(torch.zeros(640), 0, 0, 1, cfg, 25)
    with pytest.raises(ValueError, match="needs it from"):
        frame_windows(torch.zeros(20000), 6400, 10, 1, cfg, 25)


def test_log_mel_shape():
    mel = LogMel(AudioConfig(n_mels=40))(torch.randn(3, 16000))
    assert mel.shape == (3, 40, 1 + (16000 - 512) // 160)


@pytest.mark.parametrize("frames", [1, 2, 5, 16])
def test_denoiser_keeps_chunk_shape_mixes_a_chunk_and_keeps_batch_items_apart(tiny_model, frames):
    x = torch.randn(2, frames, *tiny_model.latent_shape, generator=torch.Generator().manual_seed(frames))
    inputs = _inputs(tiny_model, frames, batch=2)
    with torch.no_grad():
        out = tiny_model.denoise(x, torch.tensor(2.0), inputs)
        nudged = x.clone()
        nudged[1, -1] += 1.0  # the last frame of the second chunk
        moved = (tiny_model.denoise(nudged, torch.tensor(2.0), inputs) - out).abs().amax(dim=(2, 3, 4))  # (2, T)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert moved[0].max() < 1e-5  # the first chunk does not see the second
    assert moved[1, -1] > 0.05  # the nudged frame's output moves
    assert (moved[1, :-1] > 1e-4).all()  # and, through the temporal layers, every other frame of its chunk


def test_denoiser_refuses_chunk_longer_than_trained(tiny_model):
    frames = tiny_model.config.denoiser.max_chunk_frames + 1
    with pytest.raises(ValueError, match="max_chunk_frames"):
        tiny_model.denoise(torch.randn(1, frames, *tiny_model.latent_shape), torch.tensor(1.0), _inputs(tiny_model, frames))


def test_conditioning_changes_the_output(tiny_model):
    x = torch.randn(1, 3, *tiny_model.latent_shape)
    base = _inputs(tiny_model, 3)
    reference_out = tiny_model.denoise(x, torch.tensor(1.0), base)
    for field, value in [
        ("label", torch.tensor([1])),
        ("expression", torch.full((1, 5), 0.8)),
        ("audio", base.audio + 1),
        ("motion", base.motion + 1),
    ]:
        changed = DenoiserInputs(**{**base.__dict__, field: value})
        assert not torch.allclose(tiny_model.denoise(x, torch.tensor(1.0), changed), reference_out), field


def test_a_motion_expression_model_reads_the_sliders_its_motion_frames_were_made_with(tiny_model):
    """With DenoiserConfig.motion_expression the motion frames' slider values change the output; left out, they are
    taken to be the chunk's own (a slider held since the motion frames)."""
    config = tiny_model.config
    denoiser = dataclasses.replace(config.denoiser, motion_expression=True)
    model = AvatarModel(dataclasses.replace(config, denoiser=denoiser))
    assert model.denoiser.expression_embedding[0].in_features == 2 * config.denoiser.expression_dim
    x = torch.randn(1, 3, *model.latent_shape)
    held = DenoiserInputs(**{**_inputs(model, 3).__dict__, "expression": torch.full((1, 5), 0.5)})
    out = model.denoise(x, torch.tensor(1.0), held)
    same = DenoiserInputs(**{**held.__dict__, "motion_expression": held.expression})
    torch.testing.assert_close(model.denoise(x, torch.tensor(1.0), same), out, rtol=0, atol=0)
    moved = DenoiserInputs(**{**held.__dict__, "motion_expression": torch.zeros(1, 5)})
    assert not torch.allclose(model.denoise(x, torch.tensor(1.0), moved), out)


def test_a_reference_residual_model_denoises_around_the_portrait(tiny_model):
    """D(x) = r + D_net(x - r), D_net the same network without the residual: with a zero output layer the estimate
    at high noise is the reference itself."""
    config = tiny_model.config
    residual = AvatarModel(dataclasses.replace(config, sampling=dataclasses.replace(config.sampling,
                                                                                    reference_residual=True)))
    residual.load_state_dict(tiny_model.state_dict())
    inputs = _inputs(residual, 3)
    x = torch.randn(1, 3, *residual.latent_shape) * 80
    torch.nn.init.zeros_(residual.denoiser.conv_out.weight)
    torch.nn.init.zeros_(residual.denoiser.conv_out.bias)
    c_skip = preconditioning(torch.tensor(80.0), config.sampling)[0]
    expected = inputs.reference[:, None] + c_skip * (x - inputs.reference[:, None])  # c_skip ~ 4e-5 here
    torch.testing.assert_close(residual.denoise(x, torch.tensor(80.0), inputs), expected, rtol=0, atol=1e-5)
    residual.load_state_dict(tiny_model.state_dict())
    x = torch.randn(1, 3, *residual.latent_shape)
    reference = inputs.reference[:, None]
    torch.testing.assert_close(residual.denoise(x, torch.tensor(1.0), inputs),
                               reference + tiny_model.denoise(x - reference, torch.tensor(1.0), inputs), rtol=0, atol=1e-5)


def test_reference_kv_cache_equals_recomputation(tiny_model):
    inputs = _inputs(tiny_model, 4)
    x = torch.randn(1, 4, *tiny_model.latent_shape)
    recomputed = tiny_model.denoise(x, torch.tensor(1.5), inputs)
    inputs.reference_kv = tiny_model.denoiser.reference_kv(inputs.reference)
    assert len(inputs.reference_kv) == len(tiny_model.denoiser.spatial_layers())
    cached = tiny_model.denoise(x, torch.tensor(1.5), inputs)
    torch.testing.assert_close(cached, recomputed, rtol=0, atol=1e-6)
    # the cache is really used: a cache from another portrait changes the output
    inputs.reference_kv = tiny_model.denoiser.reference_kv(inputs.reference + 1)
    assert not torch.allclose(tiny_model.denoise(x, torch.tensor(1.5), inputs), recomputed, atol=1e-4)


@pytest.mark.parametrize("name", ["llia-384", "llia-512"])
def test_llia_presets_have_sd15_widths(name):
    cfg = PRESETS[name]
    assert cfg.denoiser.block_channels == (320, 640, 1280, 1280)
    assert cfg.denoiser.cross_attention_dim == 768 and cfg.denoiser.reference_attention
    assert cfg.autoencoder.image_size == int(name.split("-")[1]) and cfg.autoencoder.kind == "kl"
    with torch.device("meta"):
        model = AvatarModel(cfg)
    denoiser_params = sum(p.numel() for p in model.denoiser.parameters())
    assert 0.8e9 < denoiser_params < 3e9, denoiser_params  # SD1.5-class UNet plus reference network
    assert model.denoiser.reference_net is not None
