"""Capture through the PulseAudio rig: real speech into the null sink, real sounddevice, any device rate."""

import time

import numpy as np
import pytest

from avatar_desktop.audio.capture import AudioDeviceError, CaptureConfig
from avatar_desktop.audio.resample import StreamingResampler
from avatar_desktop.runtime.mic import MicCapture
from avatar_desktop.runtime.rings import AudioReader, AudioRing


def _record(pulse, speech, config, seconds_after=0.3):
    ring = AudioRing.create(None, seconds=8.0)
    reader = AudioReader(ring)
    capture = MicCapture(ring, config).start()
    try:
        assert capture.wait_first_block(10.0), "the rig's microphone delivered nothing within 10 s"
        pieces = []
        player = pulse.play(speech)
        deadline = time.monotonic() + 20
        while player.poll() is None and time.monotonic() < deadline:
            pieces.append(reader.read())
            time.sleep(0.02)
        end = time.monotonic() + seconds_after
        while time.monotonic() < end:
            pieces.append(reader.read())
            time.sleep(0.02)
        assert player.returncode == 0
    finally:
        capture.close()
    return capture, np.concatenate(pieces), reader


@pytest.mark.slow
@pytest.mark.parametrize("device_rate", [None, 48000])
def test_speech_played_into_the_rig_is_captured_at_16k(pulse, speech, device_rate):
    capture, audio, reader = _record(pulse, speech, CaptureConfig(device_rate=device_rate))
    assert capture.device_rate == (device_rate or 16000)
    loud = np.flatnonzero(np.abs(audio) > 0.05)
    assert loud.size > 1000, f"no speech captured (peak {np.abs(audio).max():.3f})"
    duration = (loud[-1] - loud[0]) / 16000
    assert 1.5 < duration < 5.0  # the sentence lasts ~3 s at 16 kHz, whatever the device rate
    assert reader.samples_lost == 0
    assert capture.overflows == 0


def test_missing_input_device_lists_the_available_ones(pulse):
    with pytest.raises(AudioDeviceError, match=r"no input device 'no-such-mic'.*available input devices: .*pulse"):
        MicCapture(AudioRing.create(None, seconds=1.0), CaptureConfig(device="no-such-mic"))


def test_resampler_streams_like_one_shot_and_keeps_the_pitch():
    rate = 44100
    t = np.arange(rate) / rate
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    streamed = StreamingResampler(rate, 16000)
    blocks = np.concatenate([streamed.process(tone[i : i + 441]) for i in range(0, rate, 441)])
    whole = StreamingResampler(rate, 16000).process(tone)
    np.testing.assert_allclose(blocks, whole[: blocks.size], atol=1e-5)
    expected = np.sin(2 * np.pi * 440 * np.arange(blocks.size) / 16000)
    assert np.abs(blocks[100:-100] - expected[100:-100]).max() < 2e-3
    noise = StreamingResampler(48000, 16000).process(np.sin(np.pi * 0.9 * np.arange(48000)).astype(np.float32))
    assert np.abs(noise[100:-100]).max() < 0.05  # 21.6 kHz is above the new Nyquist: filtered, not aliased
