"""Room and microphone augmentation (audio/augment.py): each part does what it says, measured on signals whose answer
is known, and the training samplers use it reproducibly."""

import numpy as np
import pytest
import torch

from avatar_desktop.audio import augment
from avatar_desktop.audio.augment import AugmentConfig, Augmentation
from avatar_desktop.config import SAMPLE_RATE, AudioConfig
from avatar_desktop.training.data import MouthClip, augmented_stretch, sample_mouth_windows


def tone(frequency: float, seconds: float = 1.0, amplitude: float = 0.5) -> np.ndarray:
    time = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


def peak_frequency(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)[spectrum.argmax()])


def band_energy(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    frequency = np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE)
    return float(spectrum[(frequency >= low) & (frequency < high)].sum())


@pytest.mark.parametrize("semitones, tempo", [(4.0, 1.0), (-4.0, 1.0), (0.0, 1.15), (0.0, 0.85), (3.0, 1.1)])
def test_pitch_and_tempo(semitones, tempo):
    voice = tone(200.0)
    shifted = augment.shift_pitch_and_tempo(voice, semitones, tempo)
    assert len(shifted) == round(len(voice) / tempo)
    assert peak_frequency(shifted) == pytest.approx(200.0 * 2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("kind", ["white", "pink", "brown", "fan", "babble"])
@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_noise_is_added_at_the_asked_snr(kind, snr_db):
    rng = np.random.default_rng(0)
    speech = tone(300.0, 2.0)
    sources = [tone(f, 3.0) * rng.uniform(0.1, 1) for f in (150.0, 220.0, 330.0, 410.0)]
    noisy = augment.add_noise(speech, kind, snr_db, augment.speech_level(speech), rng, sources)
    noise = noisy - speech
    measured = 20 * np.log10(augment.speech_level(speech) / np.sqrt((noise**2).mean()))
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_noise_reaches_the_pauses_at_the_clip_level():
    """A silent stretch of a clip still gets its room noise: the SNR is against the whole clip's speech level."""
    rng = np.random.default_rng(1)
    pause = np.zeros(SAMPLE_RATE, np.float32)
    noisy = augment.add_noise(pause, "pink", 20.0, 0.1, rng)
    assert np.sqrt((noisy**2).mean()) == pytest.approx(0.01, rel=0.01)


def test_coloured_noise_slopes():
    rng = np.random.default_rng(2)
    white, brown = (augment.coloured_noise(4 * SAMPLE_RATE, exponent, rng) for exponent in (0.0, 2.0))
    for noise in (white, brown):
        assert noise.std() == pytest.approx(1.0, rel=1e-3)
    ratio = lambda noise: band_energy(noise, 100, 400) / band_energy(noise, 3000, 6000)  # noqa: E731
    assert ratio(white) < 0.2 and ratio(brown) > 20  # 0.1 and 45 for exact 1 / f**0 and 1 / f**2 power


def test_reverberation_keeps_the_timing_and_adds_a_decaying_tail():
    rng = np.random.default_rng(3)
    click = np.zeros(SAMPLE_RATE, np.float32)
    click[1000] = 1.0
    rt60 = 0.5
    room = augment.convolve(click, augment.room_impulse(rt60, rng))
    assert int(np.argmax(np.abs(room))) == 1000  # the direct path comes first and is the loudest
    early = np.abs(room[1200:1200 + 800]).mean()
    late = np.abs(room[1000 + int(0.4 * SAMPLE_RATE):][:800]).mean()  # 0.4 s on: about 48 dB lower
    assert 0 < late < early / 30
    assert np.abs(room[:1000]).max() < 1e-6  # nothing before the sound (FFT rounding only)


def test_telephone_band_cuts_lows_and_highs():
    rng = np.random.default_rng(4)
    chord = tone(100.0) + tone(1000.0) + tone(6000.0)
    phone = augment.band_limit(chord, "telephone", rng)
    assert band_energy(phone, 950, 1050) == pytest.approx(band_energy(chord, 950, 1050), rel=0.01)
    assert band_energy(phone, 50, 150) < 1e-6 * band_energy(chord, 50, 150)
    assert band_energy(phone, 5900, 6100) < 1e-6 * band_energy(chord, 5900, 6100)


def test_level_and_clipping():
    """The input level puts the speech's nominal peak (its level + 12 dB) at the drawn dBFS; a clip without speech
    gets the gain a clip spoken at QUIET_CLIP_LEVEL would, so its room noise stays as quiet as the room."""
    rng = np.random.default_rng(6)
    voice = tone(250.0, amplitude=0.2)
    quiet = augment.apply_augmentation(voice, Augmentation(level_dbfs=-30.0), rng)
    assert augment.speech_level(quiet) == pytest.approx(10 ** ((-30 - augment.SPEECH_CREST_DB) / 20), rel=1e-3)
    silence = np.zeros(SAMPLE_RATE, np.float32)
    room = augment.apply_augmentation(silence, Augmentation(noise="pink", snr_db=20.0, level_dbfs=-6.0), rng)
    expected = augment.QUIET_CLIP_LEVEL * 0.1 * 10 ** ((-6 - augment.SPEECH_CREST_DB) / 20) / augment.QUIET_CLIP_LEVEL
    assert np.sqrt((room**2).mean()) == pytest.approx(expected, rel=0.01)
    clipped = augment.clip(voice, 6.0)
    assert np.abs(clipped).max() == pytest.approx(1.0)
    assert (np.abs(clipped) >= 0.999).mean() > 0.2  # a 6 dB overdrive flattens a good part of each period


def test_draws_are_seeded_and_respect_the_probabilities():
    config = AugmentConfig(probability=1.0, tempo=0.0)
    draws = [augment.draw_augmentation(config, np.random.default_rng(seed), babble=False) for seed in range(200)]
    again = [augment.draw_augmentation(config, np.random.default_rng(seed), babble=False) for seed in range(200)]
    assert draws == again
    assert all(d.tempo is None and d.noise != "babble" and -30 <= d.level_dbfs <= 0 for d in draws)
    assert 0.6 < np.mean([d.noise is not None for d in draws]) < 0.8  # noise = 0.7
    off = AugmentConfig()
    assert not off.enabled
    assert augment.draw_augmentation(off, np.random.default_rng(0)) == Augmentation()


@pytest.mark.parametrize("bad", [{"probability": 1.5}, {"noise": -0.1}, {"snr_db": (30.0, 0.0)},
                                 {"tempo_range": (0.0, 1.0)}])
def test_bad_settings_are_named(bad):
    with pytest.raises(ValueError, match=list(bad)[0]):
        AugmentConfig(**bad)


def test_a_tempo_change_moves_the_mouth_targets_with_the_audio():
    """Stretches sped up 1.15x: a tone burst over original frames 40..45 is heard in the frames whose interpolated
    targets say 'open' (the burst's edges may differ by a frame)."""
    fps, per_frame = 25, SAMPLE_RATE // 25
    frames = 100
    audio = np.zeros(frames * per_frame, np.float32)
    audio[40 * per_frame : 46 * per_frame] = tone(500.0, 6 / fps)
    mouth = np.zeros((frames, 4), np.float32)
    mouth[40:46, 0] = 1.0
    clip = MouthClip(torch.from_numpy(audio), torch.from_numpy(mouth), augment.speech_level(audio))
    config = AudioConfig()
    past = round(SAMPLE_RATE * config.past_ms / 1000)
    seen_burst = 0
    for seed in range(40):
        windows, targets = augmented_stretch(clip, 24, Augmentation(tempo=1.15), np.random.default_rng(seed), [],
                                             config, fps)
        assert windows.shape[0] == targets.shape[0] == 24
        loud = (windows[:, past : past + per_frame].pow(2).mean(dim=1) > 0.06).numpy()  # each frame's own samples
        open_ = (targets[:, 0] > 0.5).numpy()
        assert np.sum(loud != open_) <= 2
        if open_.any() and not open_[0] and not open_[-1]:  # the whole burst inside the stretch
            seen_burst += 1
            assert 5 <= open_.sum() <= 6  # sped up, its 6 frames take 6 / 1.15
    assert seen_burst >= 2


def test_sample_mouth_windows_is_reproducible_with_augmentation():
    rng = np.random.default_rng(5)
    clips = [MouthClip(torch.from_numpy(rng.standard_normal(8000).astype(np.float32) * 0.1),
                       torch.from_numpy(rng.random((12, 4)).astype(np.float32)), 0.1) for _ in range(3)]
    config = AugmentConfig(probability=1.0)
    batches = [sample_mouth_windows(clips, 6, 4, AudioConfig(), 25, torch.Generator().manual_seed(7), config)
               for _ in range(2)]
    assert batches[0]["windows"].shape == (6, 4, batches[0]["windows"].shape[-1])
    assert torch.equal(batches[0]["windows"], batches[1]["windows"])
    assert batches[0]["windows"].abs().max() <= 1.0
