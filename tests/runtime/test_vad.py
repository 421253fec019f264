"""Voice activity on real synthesized speech, hysteresis timing, the state decision and speech onsets."""

import wave

import numpy as np
import pytest

from avatar_desktop.audio.resample import StreamingResampler
from avatar_desktop.audio.vad import (WINDOW, Hysteresis, OnsetDetector, VadConfig, VoiceActivity, decide_state,
                                      speech_states)
from avatar_desktop.config import State

from pulse_rig import espeak_wav


@pytest.fixture(scope="module")
def speech_16k(tmp_path_factory):
    """1 s silence, ~2 s of espeak-ng speech, 2 s silence: float32 at 16 kHz, and where the speech lies (s)."""
    path = espeak_wav(tmp_path_factory.mktemp("vad"), "Good morning everyone, shall we begin?")
    with wave.open(str(path)) as handle:
        rate = handle.getframerate()
        samples = np.frombuffer(handle.readframes(handle.getnframes()), "<i2").astype(np.float32) / 32768
    speech = StreamingResampler(rate, 16000).process(samples)
    audio = np.concatenate([np.zeros(16000, np.float32), speech, np.zeros(32000, np.float32)])
    loud = np.flatnonzero(np.abs(audio) > 0.02)
    return audio, loud[0] / 16000, loud[-1] / 16000


def test_silero_hysteresis_follows_the_speech(speech_16k):
    audio, start, end = speech_16k
    vad = VoiceActivity(VadConfig(onset_ms=64, hangover_ms=500))
    flags = []
    for k in range(0, audio.size, 320):  # 20 ms blocks, as the capture delivers them
        flags.append((k + 320) / 16000 if vad.feed(audio[k : k + 320]) else None)
    active = [t for t in flags if t is not None]
    assert active, "silero-vad never detected the speech"
    assert start < active[0] < start + 0.4
    assert end + 0.3 < active[-1] < end + 1.0  # the hang-over keeps it active across the last syllable
    assert not vad.active  # 2 s of silence after the speech
    vad.reset()
    assert not vad.active


@pytest.mark.parametrize("fps", [25, 30])  # 16000 / 30 samples a frame is not a whole number
def test_a_whole_recording_is_speaking_where_the_speech_is_and_idle_around_it(speech_16k, fps):
    audio, start, end = speech_16k
    states = speech_states(audio, round(len(audio) / 16000 * fps), fps)
    seconds = np.arange(len(states)) / fps  # each frame's start
    speaking = seconds[states == int(State.SPEAKING)]
    assert set(np.unique(states)) == {int(State.SPEAKING), int(State.IDLE)}
    assert start - 0.1 < speaking[0] < start + 0.15 and end - 0.15 < speaking[-1] < end + 0.15
    assert (states[seconds < start - 0.1] == int(State.IDLE)).all()
    assert (states[seconds > end + 0.2] == int(State.IDLE)).all()
    inside = states[(seconds > start + 0.2) & (seconds < end - 0.2)]
    assert (inside == int(State.SPEAKING)).mean() > 0.8  # pauses between words may be idle


def test_hysteresis_needs_onset_and_hangover_time():
    config = VadConfig(threshold=0.5, onset_ms=96, hangover_ms=128)
    gate = Hysteresis(config, window_s=0.032)
    assert [gate.update(p) for p in (0.9, 0.9, 0.2, 0.9, 0.9, 0.9)] == [False, False, False, False, False, True]
    # a pause shorter than the hang-over, or probabilities between the two thresholds, keep it active
    assert [gate.update(p) for p in (0.1, 0.1, 0.4, 0.1, 0.1, 0.1, 0.1)] == [True] * 6 + [False]
    with pytest.raises(ValueError, match="threshold"):
        VadConfig(threshold=1.5)


def test_override_wins_then_own_voice_then_far_end():
    assert decide_state(mic_active=True, far_end_active=True, override=State.IDLE) == State.IDLE
    assert decide_state(mic_active=True, far_end_active=True, override=None) == State.SPEAKING
    assert decide_state(mic_active=False, far_end_active=True, override=None) == State.LISTENING
    assert decide_state(mic_active=False, far_end_active=False, override=None) == State.IDLE


def test_onsets_are_the_first_loud_sample_after_silence():
    detector = OnsetDetector(level=0.1, quiet_s=0.25)
    block = np.zeros(16000, np.float32)
    block[1000:3000] = 0.5
    block[5000:6000] = 0.5  # 125 ms later: the same utterance
    block[12000] = 0.5  # 375 ms of quiet before it: a new onset
    assert detector.feed(block[:8000], 0) == [1000]
    assert detector.feed(block[8000:], 8000) == [12000]
    assert WINDOW == 512
