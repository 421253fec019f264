"""Speech through the real espeak-ng library: audio, phoneme timings, visemes, sentences, voices."""

import numpy as np
import pytest

from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.data.speech import (LANGUAGES, VARIANTS, SpeechError, Synthesizer, Viseme, Voice, make_sentence,
                                        phoneme_viseme, resample, speak)


def _envelope(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    """RMS per 10 ms."""
    frames = len(audio) // hop
    return np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1))


def test_speech_has_audio_and_ordered_phonemes_inside_it():
    utterance = speak("Bob may buy a map in the morning.", Voice("en-us+m3"))
    assert utterance.audio.dtype == np.float32 and utterance.audio.ndim == 1
    assert 1.0 < utterance.seconds < 4.0
    assert 0.05 < np.abs(utterance.audio).max() <= 1.0
    starts = [p.start for p in utterance.phonemes]
    assert starts == sorted(starts)
    assert all(0 <= p.start < p.end <= utterance.seconds + 1e-6 for p in utterance.phonemes)
    names = [p.name for p in utterance.phonemes]
    assert names.count("b") >= 3 and names.count("m") >= 3 and "p" in names


def test_phoneme_times_line_up_with_the_sound():
    """Voiced phonemes sit where the audio is loud; the pause at the end sits where it is quiet."""
    utterance = speak("Maybe Bob will bring a blue umbrella.", Voice("en-gb-x-rp+f2"))
    envelope = _envelope(utterance.audio)
    loud = envelope > 0.1 * envelope.max()
    onset = np.flatnonzero(loud)[0] / 100
    spoken = [p for p in utterance.phonemes if not p.name.startswith("_")]
    assert abs(spoken[0].start - onset) < 0.06
    vowels = [p for p in spoken if p.viseme in (Viseme.OPEN, Viseme.WIDE, Viseme.ROUND) and p.end - p.start > 0.04]
    vowel_loud = [loud[int(p.start * 100): int(p.end * 100)].mean() for p in vowels]
    assert np.mean(vowel_loud) > 0.9
    last_spoken_end = np.flatnonzero(loud)[-1] / 100
    assert abs(spoken[-1].end - last_spoken_end) < 0.1


def test_voices_rates_and_pitches_change_the_audio():
    text = "Paula paints the purple boat."
    base = speak(text, Voice("en-us+m1", rate=165, pitch=50))
    faster = speak(text, Voice("en-us+m1", rate=220, pitch=50))
    other = speak(text, Voice("en-029+f3", rate=165, pitch=50))
    assert faster.seconds < base.seconds * 0.9
    assert len(other.audio) != len(base.audio) or not np.allclose(other.audio, base.audio)


def test_every_listed_voice_exists_and_each_language_and_variant_sounds_its_own():
    synthesizer = Synthesizer.shared()
    for language in LANGUAGES:
        for variant in VARIANTS:
            synthesizer.check_voice(f"{language}+{variant}")

    def audio(name: str) -> np.ndarray:
        utterance = speak("Hello there.", Voice(name))
        assert utterance.phonemes and np.abs(utterance.audio).max() > 0.05, name  # spoken, audibly
        return utterance.audio

    def all_different(audios: list[np.ndarray]) -> bool:  # espeak-ng would ignore a variant or language it lacks
        return all(len(a) != len(b) or not np.allclose(a, b) for i, a in enumerate(audios) for b in audios[i + 1:])

    assert all_different([audio(f"en-us+{variant}") for variant in VARIANTS])
    assert all_different([audio(f"{language}+m1") for language in LANGUAGES])


def test_unknown_voice_is_a_clear_error():
    with pytest.raises(SpeechError, match="unknown espeak-ng voice 'xx-nowhere\\+m1'"):
        speak("hello", Voice("xx-nowhere+m1"))
    with pytest.raises(SpeechError, match="empty"):
        speak("  ", Voice("en-us"))


@pytest.mark.parametrize("name, viseme", [
    ("p", Viseme.CLOSED), ("b", Viseme.CLOSED), ("m", Viseme.CLOSED), ("f", Viseme.TEETH), ("v", Viseme.TEETH),
    ("u:", Viseme.ROUND), ("oU", Viseme.ROUND), ("w", Viseme.ROUND), ("i:", Viseme.WIDE), ("E", Viseme.WIDE),
    ("a", Viseme.OPEN), ("aI", Viseme.OPEN), ("T", Viseme.DENTAL), ("S", Viseme.POSTALVEOLAR), ("t", Viseme.MID),
    ("@", Viseme.MID), ("_:", Viseme.REST), ("_", Viseme.REST),
])
def test_phoneme_to_viseme(name, viseme):
    assert phoneme_viseme(name) == viseme


def test_sentences_are_deterministic_and_varied():
    first = [make_sentence(np.random.default_rng(3)) for _ in range(2)]
    assert first[0] == first[1]
    many = {make_sentence(np.random.default_rng(seed)) for seed in range(40)}
    assert len(many) > 30
    assert all(s[0].isupper() and s[-1] in ".?!" for s in many)


def test_resample_keeps_frequency_and_duration():
    source_rate = 22050
    t = np.arange(source_rate) / source_rate
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    out = resample(tone, source_rate, SAMPLE_RATE)
    assert len(out) == SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(out[1000:-1000]))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(out[1000:-1000])
    assert abs(peak_hz - 1000) < 3
    assert abs(np.abs(out[1000:-1000]).max() - 1.0) < 0.02
    aliased = resample(np.sin(2 * np.pi * 10000 * t).astype(np.float32), source_rate, SAMPLE_RATE)
    assert np.abs(aliased[1000:-1000]).max() < 0.05  # above the new Nyquist frequency: filtered out
