"""engine/int8_choice.py: the rule, and the answer kept per machine (the timing itself runs on a real export in
tests/engine/test_onnx_backend.py)."""

from __future__ import annotations

import json

from avatar_desktop.engine.int8_choice import KEPT_ANSWERS, int8_pays, machine_precision


def test_int8_pays_only_for_a_clear_and_sizeable_saving():
    assert int8_pays(40.0, 30.0)
    assert not int8_pays(40.0, 35.0)  # under 20 % faster: within what noise and quality cost allow
    assert not int8_pays(0.33, 0.25)  # 24 % faster, but a twelfth of a millisecond


def test_the_answer_is_timed_once_and_then_read(tmp_path):
    cache = tmp_path / "cache" / "precision.json"
    timings = []

    def time_both() -> dict[str, float]:
        timings.append(1)
        return {"fp32": 30.0, "int8": 20.0}

    assert machine_precision("cpu A | model 1", time_both, cache) == "int8"
    assert machine_precision("cpu A | model 1", time_both, cache) == "int8"
    assert len(timings) == 1
    assert machine_precision("cpu B | model 1", lambda: {"fp32": 30.0, "int8": 29.0}, cache) == "fp32"
    assert json.loads(cache.read_text()) == {"cpu A | model 1": "int8", "cpu B | model 1": "fp32"}


def test_a_damaged_or_unwritable_cache_costs_a_timing_and_nothing_else(tmp_path):
    cache = tmp_path / "precision.json"
    for damaged in ("{not json", "[1, 2]", json.dumps({"key": "fp64"})):
        cache.write_text(damaged)
        assert machine_precision("key", lambda: {"fp32": 30.0, "int8": 20.0}, cache) == "int8"
        assert json.loads(cache.read_text())["key"] == "int8"
    blocked = tmp_path / "a-file" / "precision.json"  # its folder cannot be made: a file holds the name
    blocked.parent.write_text("")
    assert machine_precision("key", lambda: {"fp32": 30.0, "int8": 29.0}, blocked) == "fp32"


def test_the_cache_keeps_the_latest_answers(tmp_path):
    cache = tmp_path / "precision.json"
    for index in range(KEPT_ANSWERS + 5):
        machine_precision(f"model {index}", lambda: {"fp32": 30.0, "int8": 20.0}, cache)
    kept = json.loads(cache.read_text())
    assert len(kept) == KEPT_ANSWERS and f"model {KEPT_ANSWERS + 4}" in kept and "model 0" not in kept
