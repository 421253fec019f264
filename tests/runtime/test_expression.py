"""The expression is held once, in an ExpressionState: validated on every set, each change told to the sessions
that follow it, and a LiveSession (not started: no devices needed) reads it instead of keeping a copy."""

import numpy as np
import pytest

from avatar_desktop.engine.model_spec import ModelSpec
from avatar_desktop.runtime.expression import ExpressionState
from avatar_desktop.runtime.session import LiveSession, SessionConfig


@pytest.mark.parametrize("values, message", [
    ({"grin": 0.5}, "unknown expression components ['grin']"),
    ({"smile": 1.5}, "must lie in [-1, 1]"),
    ({"smile": float("nan")}, "must lie in [-1, 1]"),
    ({"smile": True}, "must be numbers"),
    ({"smile": "0.5"}, "must be numbers"),
])
def test_a_bad_value_is_refused_and_changes_nothing(values, message):
    state = ExpressionState({"brow": -0.25})
    told = []
    state.subscribe(told.append)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        state.set(values)
    assert state.values == {"brow": -0.25} and told == []


def test_every_subscriber_is_told_each_change_until_it_unsubscribes():
    state = ExpressionState()
    first, second = [], []
    state.subscribe(first.append)
    unsubscribe = state.subscribe(second.append)
    state.set({"smile": 1})
    unsubscribe()
    unsubscribe()  # twice is harmless
    state.set({"brow": -0.5})
    assert first == [{"smile": 1.0}, {"brow": -0.5}] and second == [{"smile": 1.0}]
    copy = state.values
    copy["smile"] = 0.9  # a reader's copy: the state does not change with it
    assert state.values == {"brow": -0.5}


def test_a_session_reads_the_state_it_is_given_and_sets_it():
    state = ExpressionState({"smile": 0.5})
    portrait = np.zeros((64, 64, 3), np.uint8)
    session = LiveSession(portrait, SessionConfig(model=ModelSpec(None)), expression=state)
    assert session.expression == {"smile": 0.5}
    state.set({"eye_open": -1.0})  # the window's sliders
    assert session.expression == {"eye_open": -1.0}
    session.set_expression({"head_yaw": 0.25})
    assert state.values == {"head_yaw": 0.25}
    with pytest.raises(ValueError, match="must lie in"):
        session.set_expression({"head_yaw": 2})
    assert session.expression == state.values == {"head_yaw": 0.25}
    assert session.portrait is portrait  # taken as it is: load_portrait normalised it
    assert LiveSession(portrait, SessionConfig(model=ModelSpec(None))).expression == {}
