"""The version state machine: which transitions are allowed and how refusals read."""

from __future__ import annotations

import itertools

import pytest

from modelport.lifecycle.manager import ModelVersion
from modelport.lifecycle.states import IllegalTransition, check_transition
from modelport.model_config import ModelConfig
from modelport.types import ModelState as S

from .fakes import folder

#: The state machine as documented: the normal life, failure, retry, and giving up.
ALLOWED: dict[S, set[S]] = {
    S.START: {S.LOADING, S.FAILED, S.END},
    S.LOADING: {S.AVAILABLE, S.FAILED},
    S.AVAILABLE: {S.UNLOADING},
    S.UNLOADING: {S.END},
    S.FAILED: {S.LOADING, S.END},
    S.END: set(),
}

PAIRS = list(itertools.product(S, S))
GOOD = [(a, b) for a, b in PAIRS if b in ALLOWED[a]]
BAD = [(a, b) for a, b in PAIRS if b not in ALLOWED[a]]


def test_table_covers_every_state() -> None:
    assert set(ALLOWED) == set(S)
    assert len(GOOD) + len(BAD) == len(S) ** 2


@pytest.mark.parametrize(("current", "new"), GOOD, ids=[f"{a}->{b}" for a, b in GOOD])
def test_allowed_transition_passes(current: S, new: S) -> None:
    check_transition(current, new, "model m version 1")


@pytest.mark.parametrize(("current", "new"), BAD, ids=[f"{a}->{b}" for a, b in BAD])
def test_disallowed_transition_raises_naming_thing_and_targets(current: S, new: S) -> None:
    with pytest.raises(IllegalTransition) as info:
        check_transition(current, new, "model m version 7")
    message = str(info.value)
    assert message.startswith("model m version 7 cannot go from ")
    assert f"from {current} to {new}" in message
    allowed_part = message.split("it may go to ", 1)[1]
    if ALLOWED[current]:
        assert set(allowed_part.split(", ")) == {str(s) for s in ALLOWED[current]}
    else:
        assert allowed_part == "nothing"


def test_illegal_transition_is_a_runtime_error() -> None:
    assert issubclass(IllegalTransition, RuntimeError)


def test_model_version_move_follows_the_state_machine() -> None:
    mv = ModelVersion("m", 3, folder("m", 3), ModelConfig(), "fp")
    assert mv.status().state is S.START
    for state in (S.LOADING, S.AVAILABLE, S.UNLOADING, S.END):
        mv.move(state)
        assert mv.state is state
    with pytest.raises(IllegalTransition, match="model m version 3 cannot go from END to LOADING"):
        mv.move(S.LOADING)
    assert mv.status().state is S.END


def test_model_version_refused_move_keeps_state() -> None:
    mv = ModelVersion("m", 1, folder("m", 1), ModelConfig(), "fp")
    mv.move(S.LOADING)
    with pytest.raises(IllegalTransition):
        mv.move(S.UNLOADING)
    assert mv.state is S.LOADING
    assert mv.status().state is S.LOADING
