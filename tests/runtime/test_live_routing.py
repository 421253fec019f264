"""The far-end input (-> listening) and the delayed passthrough to a virtual cable, on the PulseAudio rig."""

import numpy as np
import pytest

from avatar_desktop.audio.capture import CaptureConfig
from avatar_desktop.audio.passthrough import DelayLine
from avatar_desktop.config import State
from avatar_desktop.runtime.session import LiveSession

from pulse_rig import SourceRecorder
from test_live_session import session_config, wait_until


def test_delay_line_reads_by_sample_index_with_silence_where_nothing_is():
    line = DelayLine(seconds=0.01)  # 160 samples
    line.write(np.arange(100, dtype=np.float32), 0)
    line.write(np.arange(100, 200, dtype=np.float32), 100)  # wraps around
    out = np.empty(50, np.float32)
    line.read(150, out)
    np.testing.assert_array_equal(out, np.arange(150, 200))
    line.read(20, out)  # samples 20..39 were overwritten; 40..69 are there
    np.testing.assert_array_equal(out, np.concatenate([np.zeros(20), np.arange(40, 70)]))
    line.read(190, out)  # only 10 samples written yet
    np.testing.assert_array_equal(out, np.concatenate([np.arange(190, 200), np.zeros(40)]))


@pytest.mark.slow
def test_far_end_speech_means_listening_and_the_override_wins(pulse, speech, recording_camera, tiny_model_dir, portrait):
    with LiveSession(portrait, session_config(tiny_model_dir, far_end=CaptureConfig())) as session:
        pulse.move_newest("source-output", "vfar.monitor")  # the far-end stream was opened last
        assert session.worker_ready.wait(60), session.events
        pulse.play(speech, device="vfar").wait(20)
        assert State.LISTENING.name.lower() in [c["state"] for c in session.stats.snapshot()["state_changes"]]
        assert wait_until(lambda: session.state == State.IDLE, 3)
        pulse.play(speech).wait(20)
        states = [c["state"] for c in session.stats.snapshot()["state_changes"]]
        assert states[-1] == "speaking" or (states[-2:] == ["speaking", "idle"])
        session.set_state_override(State.LISTENING)
        assert wait_until(lambda: session.state == State.LISTENING, 2)


@pytest.mark.slow
def test_passthrough_delays_the_voice_like_the_video(pulse, speech, recording_camera, tiny_model_dir, portrait):
    # PortAudio opens ALSA's `pulse` device, i.e. the default sink: make that the cable for this test (moving the
    # stream does not last: the ALSA plugin reconnects it after an underrun)
    pulse.pactl("set-default-sink", "vcable")
    mic, cable = SourceRecorder(pulse, "vmic"), SourceRecorder(pulse, "vcable.monitor")
    try:
        with LiveSession(portrait, session_config(tiny_model_dir, audio_out="pulse")) as session:
            assert session.worker_ready.wait(60), session.events
            assert wait_until(lambda: session.stats.snapshot()["new_frames"] > 25, 20)
            delays = []

            def both_heard():
                delays.append(session.pacer.delay_s)  # the delay may move while the speech goes through
                return mic.onset_times() and cable.onset_times()

            pulse.play(speech, device="vsink")
            assert wait_until(both_heard, 15, interval=0.05)
    finally:
        pulse.pactl("set-default-sink", "vsink")
        mic.stop()
        cable.stop()
    measured = cable.onset_times()[0] - mic.onset_times()[0]
    low, high = min(delays), max(delays)
    print(f"passthrough: voice {measured * 1000:.0f} ms behind the mic; video delay {low * 1000:.0f}..{high * 1000:.0f} ms")
    assert low - 0.03 < measured < high + 0.15  # + the listener's 10 ms poll and scheduling on a busy machine
