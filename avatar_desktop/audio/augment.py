"""Room and microphone augmentation of training audio (docs/DATA.md, "Augmentation").

Users speak through laptop microphones, in rooms, at whatever level their mixer sets; the synthetic voices are clean
and level. `apply_augmentation` puts a random draw (`draw_augmentation`) of what lies between a mouth and the app's
audio callback on a clip, each part with its own probability and a seeded random strength, in the order the sound
meets it:

1. the voice's pitch and tempo (a phase vocoder; a tempo change moves the timeline, so it is only applied where the
   caller moves its per-frame targets with it);
2. a room's reverberation (a synthetic impulse response: the direct path, then exponentially decaying noise);
3. background noise at an SNR against the clip's speech level: coloured noise, a fan (low noise with a blade hum) or
   babble (other clips' speech summed);
4. the microphone's band: a telephone (300-3400 Hz) or a laptop microphone (high-pass, low-pass, presence peak);
5. the input level (the speech's nominal peak in dBFS) and clipping (peaks driven past full scale).

Audio is float32 (N,) samples at 16 kHz; the chain's output is kept in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from avatar_desktop.config import SAMPLE_RATE

NOISE_KINDS = ("white", "pink", "brown", "fan", "babble")
"""Background noises; babble needs other speech (`babble_sources`) and is skipped without it."""
LEVEL_FRAME = SAMPLE_RATE // 50
"""Samples per 20 ms frame of the speech-level measure."""
SPEECH_CREST_DB = 12.0
"""Speech peaks lie about this far above its RMS: the input level sets the speech's nominal peak, its level + 12 dB."""
QUIET_CLIP_LEVEL = 0.05
"""The speech RMS (-26 dBFS) assumed for a clip without speech (the avatar only listens): its room noise and gain are
set as for a clip spoken at this level."""


@dataclass(frozen=True)
class AugmentConfig:
    """How training audio is augmented. `probability`: the share of clips or stretches augmented at all (0, the
    default, turns augmentation off); each other probability is the share of augmented ones that get that part, with
    its strength drawn uniformly from its (low, high) range. Units: dB, seconds, semitones; `tempo` is a speed factor
    (1.1 = 10 % faster); `level_dbfs` the speech's nominal peak (its level + SPEECH_CREST_DB) after the microphone;
    `clipping_db` how far peaks are driven past full scale before they are cut."""

    probability: float = 0.0
    pitch: float = 0.4
    pitch_semitones: tuple[float, float] = (-4.0, 4.0)
    tempo: float = 0.3
    tempo_range: tuple[float, float] = (0.85, 1.15)
    reverb: float = 0.4
    rt60_s: tuple[float, float] = (0.15, 0.8)
    noise: float = 0.7
    snr_db: tuple[float, float] = (0.0, 30.0)
    band: float = 0.4
    level_dbfs: tuple[float, float] = (-30.0, 0.0)
    clipping: float = 0.1
    clipping_db: tuple[float, float] = (3.0, 12.0)

    def __post_init__(self) -> None:
        for name in ("probability", "pitch", "tempo", "reverb", "noise", "band", "clipping"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} = {value}: a probability is from 0 to 1")
        for name in ("pitch_semitones", "tempo_range", "rt60_s", "snr_db", "level_dbfs", "clipping_db"):
            low, high = getattr(self, name)
            if not low <= high:
                raise ValueError(f"augment.{name} = [{low}, {high}]: give [low, high] with low <= high")
        if self.tempo_range[0] <= 0 or self.rt60_s[0] <= 0:
            raise ValueError("augment.tempo_range and augment.rt60_s must be above 0")

    @property
    def enabled(self) -> bool:
        return self.probability > 0


# ---------------------------------------------------------------------------------------------------------------
# Levels


def speech_level(audio: np.ndarray) -> float:
    """RMS of the 20 ms frames within 30 dB of the loudest one: the level of the speech, not of its pauses (0 for
    silence)."""
    frames = np.asarray(audio, np.float64)[: len(audio) // LEVEL_FRAME * LEVEL_FRAME].reshape(-1, LEVEL_FRAME)
    rms = np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(1)
    if rms.max() <= 0:
        return 0.0
    active = rms >= rms.max() * 10 ** (-30 / 20)
    return float(np.sqrt((rms[active] ** 2).mean()))


def clip(audio: np.ndarray, overdrive_db: float) -> np.ndarray:
    """Drive the peaks `overdrive_db` past full scale and cut them at +-1, as an overloaded input does."""
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak <= 0:
        return audio
    return np.clip(audio * (10 ** (overdrive_db / 20) / peak), -1.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Noise


def coloured_noise(samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise whose power falls as 1 / f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    bins = samples // 2 + 1
    spectrum = rng.standard_normal(bins) + 1j * rng.standard_normal(bins)
    spectrum[0] = 0  # no DC: the RMS is the standard deviation
    frequency = np.fft.rfftfreq(samples, 1 / SAMPLE_RATE)
    frequency[0] = 1.0
    noise = np.fft.irfft(spectrum * frequency ** (-exponent / 2), samples)
    return (noise / (np.sqrt((noise**2).mean()) + 1e-12)).astype(np.float32)


def fan_noise(samples: int, rng: np.random.Generator) -> np.ndarray:
    """A fan: low-heavy broadband noise, a blade-pass hum (40-160 Hz and two harmonics) and a slow wobble, unit RMS."""
    time = np.arange(samples) / SAMPLE_RATE
    blade = rng.uniform(40, 160)
    hum = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * k * blade * time + rng.uniform(0, 2 * np.pi))
              for k in (1, 2, 3))
    wobble = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * time)
    noise = coloured_noise(samples, 1.5, rng) * wobble + rng.uniform(0.3, 1.5) * hum
    return (noise / (np.sqrt((noise**2).mean()) + 1e-12)).astype(np.float32)


def babble(samples: int, sources: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """3-6 talkers at once: excerpts of random `sources` (other clips' speech) at random offsets, each at its own
    speech level, looped where a source is shorter; unit RMS."""
    if not sources:
        raise ValueError("babble needs other speech: pass babble_sources")
    mix = np.zeros(samples, np.float64)
    for _ in range(int(rng.integers(3, 7))):
        source = sources[int(rng.integers(len(sources)))]
        level = speech_level(source)
        if level <= 0:
            continue
        start = int(rng.integers(len(source)))
        mix += np.resize(np.roll(source, -start), samples) / level * rng.uniform(0.5, 1.0)
    rms = np.sqrt((mix**2).mean())
    return (mix / rms).astype(np.float32) if rms > 0 else coloured_noise(samples, 1.0, rng)


def add_noise(audio: np.ndarray, kind: str, snr_db: float, reference_level: float, rng: np.random.Generator,
              babble_sources: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Add noise of `kind` (NOISE_KINDS) whose RMS is `snr_db` below `reference_level` (the speech RMS of the whole
    clip, so that its pauses get the same room noise)."""
    samples = len(audio)
    if kind == "babble":
        noise = babble(samples, babble_sources, rng)
    elif kind == "fan":
        noise = fan_noise(samples, rng)
    else:
        noise = coloured_noise(samples, {"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng)
    return (audio + noise * reference_level * 10 ** (-snr_db / 20)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Room and microphone


def room_impulse(rt60: float, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room: a unit direct path, then noise decaying 60 dB in `rt60` seconds from 2-10 ms on, at a
    direct-to-reverberant ratio of -3..12 dB."""
    delay = int(rng.uniform(0.002, 0.010) * SAMPLE_RATE)
    tail_time = np.arange(int(rt60 * SAMPLE_RATE)) / SAMPLE_RATE
    tail = rng.standard_normal(len(tail_time)) * np.exp(-math.log(1000) * tail_time / rt60)
    tail *= 10 ** (-rng.uniform(-3, 12) / 20) / (np.sqrt((tail**2).sum()) + 1e-12)
    impulse = np.zeros(delay + len(tail))
    impulse[0] = 1.0
    impulse[delay:] += tail
    return impulse


def convolve(audio: np.ndarray, impulse: np.ndarray) -> np.ndarray:
    """audio (N,) convolved with impulse (K,) by FFT, cut to N samples (the direct path keeps the timing)."""
    size = 1 << (len(audio) + len(impulse) - 1).bit_length()
    out = np.fft.irfft(np.fft.rfft(audio, size) * np.fft.rfft(impulse, size), size)[: len(audio)]
    return out.astype(np.float32)


def band_gain(frequency: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Amplitude gain per frequency (Hz) of a microphone: 'telephone' passes 300-3400 Hz; 'laptop' a high-pass at
    100-300 Hz, a low-pass at 4-8 kHz and a presence peak of 3-8 dB at 2-5 kHz. Edges are cosine ramps."""

    def ramp(low: float, high: float) -> np.ndarray:  # 0 below low, 1 above high
        position = np.clip((frequency - low) / (high - low), 0.0, 1.0)
        return 0.5 - 0.5 * np.cos(np.pi * position)

    if kind == "telephone":
        return ramp(200, 300) * (1 - ramp(3400, 3700))
    high_pass, low_pass = rng.uniform(100, 300), rng.uniform(4000, 8000)
    centre, boost = rng.uniform(2000, 5000), rng.uniform(3, 8)
    peak = 10 ** (boost / 20 * np.exp(-0.5 * (np.log2(np.maximum(frequency, 1) / centre) / 0.4) ** 2))
    return ramp(0.6 * high_pass, high_pass) * (1 - ramp(low_pass, 1.2 * low_pass)) * peak


def band_limit(audio: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """`audio` through the band of a microphone of `kind` ('telephone' or 'laptop'; see band_gain)."""
    spectrum = np.fft.rfft(audio)
    gain = band_gain(np.fft.rfftfreq(len(audio), 1 / SAMPLE_RATE), kind, rng)
    return np.fft.irfft(spectrum * gain, len(audio)).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------------
# Pitch and tempo

VOCODER_FFT, VOCODER_HOP = 512, 128


def time_stretch(audio: np.ndarray, factor: float) -> np.ndarray:
    """Phase vocoder: `audio` (N,) lasting `factor` times as long (about N * factor samples), pitch unchanged."""
    window = np.hanning(VOCODER_FFT)
    padded = np.pad(np.asarray(audio, np.float64), (VOCODER_FFT, VOCODER_FFT + VOCODER_HOP))
    starts = np.arange(0, len(padded) - VOCODER_FFT, VOCODER_HOP)
    spectra = np.fft.rfft(padded[starts[:, None] + np.arange(VOCODER_FFT)] * window, axis=1)  # (F, K)
    expected = 2 * np.pi * VOCODER_HOP * np.arange(spectra.shape[1]) / VOCODER_FFT  # phase advance per hop
    positions = np.arange(0, len(spectra) - 1, 1 / factor)  # analysis frames read by each output frame
    index, fraction = positions.astype(int), (positions % 1)[:, None]
    magnitude = (1 - fraction) * np.abs(spectra[index]) + fraction * np.abs(spectra[index + 1])
    deviation = np.angle(spectra[1:]) - np.angle(spectra[:-1]) - expected
    deviation -= 2 * np.pi * np.round(deviation / (2 * np.pi))
    advance = expected + deviation[index]
    phase = np.angle(spectra[0]) + np.concatenate([np.zeros((1, len(expected))), np.cumsum(advance[:-1], axis=0)])
    frames = np.fft.irfft(magnitude * np.exp(1j * phase), VOCODER_FFT, axis=1) * window
    out = overlap_add(frames) / np.maximum(overlap_add(np.broadcast_to(window**2, frames.shape)), 1e-3)
    return out[VOCODER_FFT : VOCODER_FFT + int(round(len(audio) * factor))].astype(np.float32)


def overlap_add(frames: np.ndarray) -> np.ndarray:
    """Frames (F, VOCODER_FFT) laid VOCODER_HOP apart and summed -> (F * VOCODER_HOP + VOCODER_FFT,). The frames
    of each residue class modulo FFT / HOP do not overlap, so each class is one flat add."""
    per_class = VOCODER_FFT // VOCODER_HOP
    out = np.zeros(len(frames) * VOCODER_HOP + VOCODER_FFT)
    for offset in range(per_class):
        laid = frames[offset::per_class].reshape(-1)
        start = offset * VOCODER_HOP
        out[start : start + len(laid)] += laid
    return out


def resample_to_length(audio: np.ndarray, samples: int) -> np.ndarray:
    """`audio` resampled to `samples` samples through its spectrum (band-limited both ways)."""
    if samples == len(audio):
        return audio
    spectrum = np.fft.rfft(audio)
    bins = samples // 2 + 1
    spectrum = spectrum[:bins] if bins <= len(spectrum) else np.pad(spectrum, (0, bins - len(spectrum)))
    return (np.fft.irfft(spectrum, samples) * (samples / len(audio))).astype(np.float32)


def shift_pitch_and_tempo(audio: np.ndarray, semitones: float, tempo: float) -> np.ndarray:
    """The voice `semitones` higher and `tempo` times as fast: round(N / tempo) samples."""
    pitch = 2 ** (semitones / 12)
    stretched = time_stretch(audio, pitch / tempo) if not math.isclose(pitch, tempo) else audio
    return resample_to_length(stretched, int(round(len(audio) / tempo)))


# ---------------------------------------------------------------------------------------------------------------
# The chain


@dataclass(frozen=True)
class Augmentation:
    """One draw of the chain; None where a part is not applied."""

    semitones: float | None = None
    tempo: float | None = None
    rt60: float | None = None
    noise: str | None = None
    snr_db: float | None = None
    band: str | None = None
    level_dbfs: float | None = None
    clipping_db: float | None = None

    @property
    def speed(self) -> float:
        """How much faster the augmented audio runs than the original (1 without a tempo change)."""
        return self.tempo or 1.0


def draw_augmentation(config: AugmentConfig, rng: np.random.Generator, *, allow_tempo: bool = True,
                      babble: bool = True) -> Augmentation:
    """A random draw of the parts `config` enables (all None when the clip is left clean)."""
    if rng.random() >= config.probability:
        return Augmentation()

    def maybe(probability: float, bounds: tuple[float, float]) -> float | None:
        return float(rng.uniform(*bounds)) if rng.random() < probability else None

    kinds = NOISE_KINDS if babble else tuple(k for k in NOISE_KINDS if k != "babble")
    snr = maybe(config.noise, config.snr_db)
    return Augmentation(
        semitones=maybe(config.pitch, config.pitch_semitones),
        tempo=maybe(config.tempo, config.tempo_range) if allow_tempo else None,
        rt60=maybe(config.reverb, config.rt60_s),
        noise=str(rng.choice(kinds)) if snr is not None else None, snr_db=snr,
        band=str(rng.choice(("telephone", "laptop"))) if rng.random() < config.band else None,
        level_dbfs=float(rng.uniform(*config.level_dbfs)),
        clipping_db=maybe(config.clipping, config.clipping_db),
    )


def apply_augmentation(audio: np.ndarray, draw: Augmentation, rng: np.random.Generator, *,
                       reference_level: float | None = None,
                       babble_sources: Sequence[np.ndarray] = ()) -> np.ndarray:
    """`audio` float32 (N,) through the parts of `draw`, in the order of the module docstring. The result has
    round(N / draw.speed) samples. reference_level: the speech RMS that the SNR and the input level refer to (default:
    the speech level of `audio`; pass the whole clip's when `audio` is a stretch of it; QUIET_CLIP_LEVEL when 0)."""
    out = np.asarray(audio, np.float32)
    level = speech_level(out) if reference_level is None else reference_level
    level = level if level > 0 else QUIET_CLIP_LEVEL
    if draw.semitones is not None or draw.tempo is not None:
        out = shift_pitch_and_tempo(out, draw.semitones or 0.0, draw.speed)
    if draw.rt60 is not None:
        out = convolve(out, room_impulse(draw.rt60, rng))
    if draw.noise is not None:
        out = add_noise(out, draw.noise, draw.snr_db, level, rng, babble_sources)
    if draw.band is not None:
        out = band_limit(out, draw.band, rng)
    if draw.level_dbfs is not None:
        out = out * np.float32(10 ** ((draw.level_dbfs - SPEECH_CREST_DB) / 20) / level)
    if draw.clipping_db is not None:
        out = clip(out, draw.clipping_db)
    return np.clip(out, -1.0, 1.0).astype(np.float32)
