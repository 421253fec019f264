"""Speech engines (espeak-ng, flite, festival): timings that match the audio, the phone table, missing engines and
voices, held-out voices kept out of training clips, and `dataset synth --voices` with several engines."""

import json

import numpy as np
import pytest

from avatar_desktop.cli import main
from avatar_desktop.config import SAMPLE_RATE
from avatar_desktop.data.clips import load_clip, load_manifest
from avatar_desktop.data.phones import CMU_VISEMES, Viseme, cmu_viseme, phoneme_viseme, viseme_of
from avatar_desktop.data.speech import SpeechError, Voice, speak
from avatar_desktop.data.synth_dataset import DatasetError, SynthConfig, plan_clips
from avatar_desktop.data.voices import (
    HELDOUT_VOICES,
    FestivalEngine,
    FliteEngine,
    canonical_voice_name,
    check_voice,
    is_heldout_voice,
)

TEXT = "Bob may buy a map. Then we stop by the bakery."
VOICES = ["espeak:en-us+f3", "flite:kal", "flite:kal16", "flite:awb", "flite:rms", "festival:kal_diphone",
          "festival:ked_diphone", "flite:slt", "festival:cmu_us_slt_arctic_hts"]  # every voice offered


@pytest.fixture(scope="module")
def utterances():
    return {name: speak(TEXT, Voice(name)) for name in VOICES}


def _envelope(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    """RMS per 10 ms."""
    frames = len(audio) // hop
    return np.sqrt((audio[: frames * hop].reshape(frames, hop) ** 2).mean(axis=1))


@pytest.mark.parametrize("name", VOICES)
def test_audio_is_16khz_float_in_range_and_phonemes_cover_it(utterances, name):
    utterance = utterances[name]
    audio = utterance.audio
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.1 < np.abs(audio).max() <= 1.0
    assert 1.5 < utterance.seconds < 5.0
    phonemes = utterance.phonemes
    assert all(a.end <= b.start + 1e-6 for a, b in zip(phonemes, phonemes[1:]))
    # times are at the engine's own rate: the last end may pass the 16 kHz audio's end by half a sample
    assert all(0 <= p.start < p.end <= utterance.seconds + 0.5 / SAMPLE_RATE + 1e-9 for p in phonemes)
    assert phonemes[-1].end > utterance.seconds - 0.3  # the timings span the audio (16 kHz, as their times say)
    if not name.startswith("espeak"):
        assert {p.name for p in phonemes} <= set(CMU_VISEMES)  # every phone is in the table, none falls to MID


@pytest.mark.parametrize("name", VOICES)
def test_timings_match_the_audio(utterances, name):
    """Vowels sit where the audio is loud, pauses (between the sentences, at the ends) where it is near silent,
    and the first and last sounds start and end where the speech does."""
    utterance = utterances[name]
    envelope = _envelope(utterance.audio)
    loud = envelope > 0.1 * envelope.max()
    spoken = [p for p in utterance.phonemes if p.viseme != Viseme.REST]
    vowels = [p for p in spoken if p.viseme in (Viseme.OPEN, Viseme.WIDE, Viseme.ROUND) and p.end - p.start > 0.04]
    assert len(vowels) >= 8
    assert np.mean([loud[int(p.start * 100): int(p.end * 100)].mean() for p in vowels]) > 0.85
    pauses = [p for p in utterance.phonemes if p.viseme == Viseme.REST and p.end - p.start >= 0.06]
    inner = [p for p in pauses if spoken[0].start < p.start < spoken[-1].end]
    assert inner, "no pause between the two sentences"
    for pause in pauses:
        quiet = envelope[int(pause.start * 100) + 2: int(pause.end * 100) - 2]
        assert quiet.max() < 0.05 * envelope.max(), (pause, float(quiet.max() / envelope.max()))
    onset, offset = np.flatnonzero(loud)[[0, -1]] / 100
    assert -0.02 < onset - spoken[0].start < 0.12  # a first stop (b) is silent until its burst
    assert abs(offset - spoken[-1].end) < 0.12


@pytest.mark.parametrize("name", VOICES)
def test_bilabials_are_closures(utterances, name):
    phonemes = utterances[name].phonemes
    bilabials = [p for p in phonemes if p.name in ("p", "b", "m")]
    assert len(bilabials) >= 6
    assert all(p.viseme == Viseme.CLOSED for p in bilabials)
    visemes = {p.viseme for p in phonemes}
    assert {Viseme.REST, Viseme.CLOSED, Viseme.OPEN, Viseme.WIDE, Viseme.DENTAL} <= visemes


def test_rate_changes_the_length_for_every_engine():
    for name in ("flite:kal", "festival:kal_diphone", "festival:cmu_us_slt_arctic_hts"):
        slow, fast = (speak("Paula paints the purple boat.", Voice(name, rate=rate)) for rate in (140, 195))
        assert fast.seconds < slow.seconds * 0.85, name


def test_same_utterance_same_samples():
    """flite's clustergen voices draw noise from libc's rand(): seeded per utterance, they repeat exactly."""
    for name in ("flite:awb", "festival:kal_diphone"):
        first = speak("Pablo buys the map.", Voice(name, rate=170, pitch=40))
        speak("Something else in between.", Voice(name))
        again = speak("Pablo buys the map.", Voice(name, rate=170, pitch=40))
        np.testing.assert_array_equal(first.audio, again.audio)
        assert first.phonemes == again.phonemes


def test_phone_table():
    assert all(cmu_viseme(p) == Viseme.CLOSED for p in ("p", "b", "m", "em"))
    assert cmu_viseme("f") == Viseme.TEETH and cmu_viseme("dh") == Viseme.DENTAL
    assert cmu_viseme("uw") == Viseme.ROUND and cmu_viseme("iy") == Viseme.WIDE and cmu_viseme("aa") == Viseme.OPEN
    assert cmu_viseme("ch") == Viseme.POSTALVEOLAR and cmu_viseme("pau") == Viseme.REST
    assert cmu_viseme("ay1") == Viseme.OPEN and cmu_viseme("zz") == Viseme.MID
    assert viseme_of("b", "espeak") == phoneme_viseme("b") == Viseme.CLOSED
    assert viseme_of("aI", "espeak") == Viseme.OPEN and viseme_of("ay", "cmu") == Viseme.OPEN
    with pytest.raises(ValueError, match="unknown phone set"):
        viseme_of("b", "klingon")


def test_voice_names():
    assert canonical_voice_name("espeak:en-us+f3") == "en-us+f3" == canonical_voice_name(" en-us+f3 ")
    assert Voice("en-us+f3").engine == "espeak" and Voice("espeak:en+m1").speaker == "en+m1"
    assert Voice("festival:kal_diphone").engine == "festival" and Voice("flite:kal").speaker == "kal"
    for name in ("en-us+f3", "espeak:en+m2", "flite:kal", "flite:kal16", "flite:awb", "flite:rms", "flite:slt",
                 "festival:kal_diphone", "festival:ked_diphone", "festival:cmu_us_slt_arctic_hts"):
        check_voice(name)
    assert is_heldout_voice("flite:slt") and is_heldout_voice("festival:cmu_us_slt_arctic_hts")
    assert not is_heldout_voice("flite:kal") and len(HELDOUT_VOICES) == 2


def test_missing_engines_and_voices_name_the_package(monkeypatch, tmp_path):
    with pytest.raises(SpeechError, match="unknown flite voice 'nobody'"):
        speak("hello", Voice("flite:nobody"))
    with pytest.raises(SpeechError, match="unknown festival voice 'nobody'"):
        speak("hello", Voice("festival:nobody"))
    with pytest.raises(SpeechError, match="unknown speech engine 'say'"):
        check_voice("say:alex")
    with pytest.raises(SpeechError, match="unknown espeak-ng voice"):
        check_voice("espeak:klingon+m9")
    with pytest.raises(SpeechError, match="festival voice 'kal_diphone' is not installed: `apt-get install "
                                          "festvox-kallpc16k`"):
        FestivalEngine(voice_dirs=(tmp_path,)).check_voice("kal_diphone")
    with pytest.raises(SpeechError, match="festvox-us-slt-hts"):
        FestivalEngine(voice_dirs=(tmp_path,)).check_voice("cmu_us_slt_arctic_hts")
    with pytest.raises(SpeechError, match="festival is not installed .*`apt-get install festival`"):
        FestivalEngine(program="festival-not-installed")
    monkeypatch.setattr(FliteEngine, "library", "libflite-not-installed.so.1")
    with pytest.raises(SpeechError, match="flite is not installed .*`apt-get install flite`"):
        FliteEngine()
    with pytest.raises(SpeechError, match="nobody"):
        SynthConfig(identities=1, clips_per_identity=1, seconds=3, voices=("flite:kal", "flite:nobody")).validate()


def test_heldout_voices_are_refused_for_training():
    for voices in (("flite:kal", "flite:slt"), ("en-us+f3", "festival:cmu_us_slt_arctic_hts")):
        with pytest.raises(DatasetError, match="held-out voice.*--heldout-voices"):
            SynthConfig(identities=2, clips_per_identity=1, seconds=3, voices=voices).validate()
    with pytest.raises(DatasetError, match="--heldout-voices needs --voices"):
        SynthConfig(identities=2, clips_per_identity=1, seconds=3, heldout_voices=("flite:slt",)).validate()
    with pytest.raises(DatasetError, match="at least two voices outside"):
        SynthConfig(identities=2, clips_per_identity=1, seconds=3, voices=("flite:kal", "flite:slt"),
                    heldout_voices=("flite:slt",)).validate()
    assert main(["dataset", "synth", "--out", "/nonexistent/never", "--identities", "1", "--seconds", "3",
                 "--voices", "flite:kal,flite:slt", "--no-progress"]) == 2


def test_heldout_voices_never_reach_training_clips():
    config = SynthConfig(identities=10, clips_per_identity=6, seconds=3, voices=("flite:kal", "espeak:en-us+f3",
                         "festival:kal_diphone"), heldout_voices=("flite:slt", "festival:cmu_us_slt_arctic_hts"))
    config.validate()
    plans = plan_clips(config)
    train = [p for p in plans if p.split == "train"]
    assert train and all(p.voice.name in ("flite:kal", "en-us+f3", "festival:kal_diphone") for p in train)
    assert not {p.far_voice.name for p in train} & HELDOUT_VOICES
    heldout = [p for p in plans if p.heldout_voice]
    assert {p.voice.name for p in heldout} == set(HELDOUT_VOICES)
    assert all(p.split == "heldout" for p in heldout)


def test_dataset_synth_with_flite_and_festival(tmp_path):
    """Seed 71 gives three clips that start speaking, spoken by festival:kal_diphone, flite:kal and flite:slt."""
    out = tmp_path / "data"
    assert main(["dataset", "synth", "--out", str(out), "--identities", "1", "--clips-per-identity", "3",
                 "--seconds", "3", "--size", "64", "--seed", "71", "--workers", "1", "--no-progress",
                 "--voices", "flite:kal,festival:kal_diphone", "--heldout-voices", "flite:slt"]) == 0
    manifest = load_manifest(out)
    assert manifest["complete"] and len(manifest["clips"]) == 3
    assert manifest["settings"]["heldout_voices"] == ["flite:slt"]
    assert {entry["voice"]["name"] for entry in manifest["clips"]} == {"flite:kal", "festival:kal_diphone",
                                                                        "flite:slt"}
    for entry in manifest["clips"]:
        meta = json.loads((out / entry["path"] / "clip.json").read_text())
        assert meta["heldout_voice"] == (meta["voice"]["name"] == "flite:slt")
        assert meta["split"] == ("heldout" if meta["heldout_voice"] else "train")
        if meta["split"] == "train":
            assert {meta["voice"]["name"], meta["far_voice"]["name"]} == {"flite:kal", "festival:kal_diphone"}
        clip = load_clip(out / entry["path"], with_frames=False)
        assert len(clip.audio) == 75 * SAMPLE_RATE // 25
        record = clip.record
        names = record["phoneme_name"].tolist()
        assert sum(cmu_viseme(n) == Viseme.CLOSED for n in names) >= 1
        assert set(names) <= set(CMU_VISEMES)
        assert [int(cmu_viseme(n)) for n in names] == record["phoneme_viseme"].tolist()
        for start, end, name in zip(record["phoneme_start"], record["phoneme_end"], names):
            if name in ("aa", "ae", "ay", "iy", "ey", "uw", "ow") and end - start > 0.05:
                segment = clip.audio[int(start * SAMPLE_RATE): int(end * SAMPLE_RATE)]
                assert np.sqrt((segment**2).mean()) > 0.01
