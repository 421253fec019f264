"""`eval --photos --voices`: per-voice lip sync in clean and noisy audio; the checks judge what issue 24 asks, bad
options are named."""

import json

import numpy as np
import pytest

from avatar_desktop.audio.augment import speech_level
from avatar_desktop.cli import main
from avatar_desktop.eval import voices
from avatar_desktop.eval.photos import photo_speech
from avatar_desktop.eval.report import EvaluationError
from tests.eval.test_photos import astronaut_variants, write_photos


def test_noise_conditions_parse_and_bad_ones_are_named():
    assert voices.parse_noise("babble:10, fan:0") == [voices.NoiseCondition("babble", 10.0),
                                                      voices.NoiseCondition("fan", 0.0)]
    assert voices.parse_noise("") == []
    for bad in ("rain:10", "fan", "fan:loud", "pink:nan"):
        with pytest.raises(EvaluationError, match="--noise"):
            voices.parse_noise(bad)


def test_noise_is_added_at_its_snr_against_the_given_level():
    speech = photo_speech(4.0, seed=0, voice="flite:kal")
    level = speech_level(speech.audio)
    noisy = voices.with_noise(speech, voices.NoiseCondition("fan", 10.0), level, seed=0, babble_sources=[])
    noise = noisy.audio - speech.audio
    assert 20 * np.log10(level / np.sqrt((noise**2).mean())) == pytest.approx(10.0, abs=0.2)
    assert np.array_equal(noisy.states, speech.states) and np.array_equal(noisy.opening, speech.opening)


def test_the_same_plan_in_every_voice():
    """Each voice says the same sentences in the same states, at its own timing."""
    plans = {name: photo_speech(6.0, seed=3, voice=name) for name in ("flite:kal", "en-us+f2")}
    assert all(speech.voice == name for name, speech in plans.items())
    first, second = plans.values()
    assert first.states[0] == second.states[0]
    assert len(first.closure_windows()) > 0 and len(second.closure_windows()) > 0


def test_checks_apply_each_threshold_to_its_voices():
    def entry(voice, engine, heldout, condition, r, margin):
        return {"voice": voice, "engine": engine, "heldout": heldout, "condition": condition, "r": r,
                "margin": margin}

    table = [entry("flite:slt", "flite", True, "clean", 0.82, 0.31),
             entry("flite:slt", "flite", True, "fan 10 dB", 0.76, 0.2),
             entry("en-us+f2", "espeak", True, "clean", 0.84, 0.1),
             entry("flite:kal", "flite", False, "clean", 0.5, 0.0)]
    silent = [{"photo": "a.png", "condition": "fan 10 dB", "closed": 0.99},
              {"photo": "b.png", "condition": "fan 10 dB", "closed": 0.96}]
    checks = {(c["check"], c["subject"]): c for c in voices.voice_checks(table, silent)}
    assert checks[("lip-sync r", "flite:slt")]["pass"]
    assert checks[("closure margin over chance", "flite:slt")]["pass"]
    assert not checks[("lip-sync r", "en-us+f2")]["pass"]  # held-out espeak-ng voices need 0.85
    assert ("closure margin over chance", "en-us+f2") not in checks
    assert not any(subject == "flite:kal" for _, subject in checks)  # trained voices are context, not judged
    drop = checks[("r drop in noise", "flite:slt, fan 10 dB")]
    assert drop["value"] == pytest.approx(0.06) and not drop["pass"] and drop["threshold"] == "<= 0.05"
    assert checks[("closed in silence", "fan 10 dB")]["value"] == pytest.approx(0.975)
    assert not checks[("closed in silence", "fan 10 dB")]["pass"]


def test_bad_voice_options_are_named(tmp_path, capsys):
    folder = write_photos(tmp_path / "photos", {"astronaut.png": astronaut_variants()["astronaut.png"]})
    assert main(["eval", "--photos", str(folder), "--noise", "fan:10"]) == 2
    assert "--noise needs --voices" in capsys.readouterr().err
    assert main(["eval", "--photos", str(folder), "--voices", "flite:nobody"]) == 2
    assert "nobody" in capsys.readouterr().err
    assert main(["eval", "--photos", str(folder), "--voices", "flite:kal", "--noise", "rain:3"]) == 2
    assert "--noise 'rain:3'" in capsys.readouterr().err


@pytest.mark.slow
def test_voices_pipeline_reports_every_voice_condition_and_silence(tmp_path, capsys):
    """The whole path with a tiny random motion model: a row per voice and condition, held-out voices labelled,
    silence under each noise measured, and the checks the voices allow."""
    from avatar_desktop.models.motion import build_motion_model
    from avatar_desktop.models.store import save_motion_model

    model = save_motion_model(build_motion_model(seed=0), tmp_path / "motion")
    folder = write_photos(tmp_path / "photos", {"astronaut.png": astronaut_variants()["astronaut.png"]})
    code = main(["eval", "--photos", str(folder), "--model", str(model), "--seconds", "3", "--voices", "flite:kal",
                 "--heldout-voices", "en-us+f2", "--noise", "fan:10", "--json"])
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    table = {(e["voice"], e["condition"]): e for e in report["voices"]}
    assert set(table) == {("flite:kal", "clean"), ("flite:kal", "fan 10 dB"), ("en-us+f2", "clean"),
                          ("en-us+f2", "fan 10 dB")}
    assert table[("en-us+f2", "clean")]["heldout"] and not table[("flite:kal", "clean")]["heldout"]
    assert all(e["face_found"] == 1.0 for e in table.values())
    assert [row["condition"] for row in report["silence_in_noise"]] == ["fan 10 dB"]
    assert 0.0 <= report["silence_in_noise"][0]["closed"] <= 1.0
    kinds = sorted({c["check"] for c in report["checks"]})
    assert kinds == ["closed in silence", "lip-sync r", "r drop in noise"]
    text = voices.format_voice_report(report)
    assert "heldout" in text and "fan 10 dB" in text and "closed in silence" in text
