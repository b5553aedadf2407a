"""The circuit breaker's states, driven by a hand-moved clock (the state machine alone;
tests/docker/test_pooled_client.py drives it with a real engine)."""

from __future__ import annotations

import pytest
from ofelia_docker_pooled.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, CircuitOpen
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_hookspecs.errors import EngineUnavailable


def fail(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        trial = breaker.before_call("ping")
        breaker.record(engine_failure=True, trial=trial, error="connection refused")


def test_opens_after_the_threshold_of_consecutive_engine_failures() -> None:
    breaker = CircuitBreaker(failure_threshold=10, clock=FakeClock())
    fail(breaker, 9)
    assert breaker.state == CLOSED
    fail(breaker, 1)
    assert breaker.state == OPEN
    with pytest.raises(CircuitOpen) as caught:
        breaker.before_call("exec_create")
    error = caught.value
    assert isinstance(error, EngineUnavailable) and error.engine_failure
    assert error.operation == "exec_create"
    assert "Docker engine unavailable, circuit open since " in str(error)
    assert "connection refused" in str(error)


def test_an_answer_from_the_engine_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    fail(breaker, 2)
    # A 404 or a registry failure: the engine answered, so it is up.
    breaker.record(engine_failure=False, trial=breaker.before_call("container_inspect"))
    fail(breaker, 2)
    assert breaker.state == CLOSED
    fail(breaker, 1)
    assert breaker.state == OPEN


def test_half_opens_after_the_timeout_and_lets_a_bounded_number_of_trials_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_timeout=30, half_open_max_calls=2, clock=clock)
    fail(breaker, 1)
    clock.advance(29.9)
    with pytest.raises(CircuitOpen, match="next trial in"):
        breaker.before_call("ping")
    clock.advance(0.1)
    assert breaker.state == HALF_OPEN
    assert breaker.before_call("ping") is True
    assert breaker.before_call("ping") is True
    with pytest.raises(CircuitOpen, match="trial call is in progress"):
        breaker.before_call("ping")
    breaker.record(engine_failure=False, trial=True)
    assert breaker.state == CLOSED
    # The other trial ends after the circuit closed: nothing changes.
    breaker.record(engine_failure=False, trial=True)
    assert breaker.state == CLOSED
    assert breaker.before_call("ping") is False


def test_a_failed_trial_opens_it_again_for_another_timeout() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, open_timeout=30, clock=clock)
    fail(breaker, 1)
    clock.advance(30)
    trial = breaker.before_call("ping")
    assert trial is True
    breaker.record(engine_failure=True, trial=True, error="still refused")
    assert breaker.state == OPEN
    clock.advance(29)
    with pytest.raises(CircuitOpen, match="still refused"):
        breaker.before_call("ping")
    clock.advance(1)
    assert breaker.state == HALF_OPEN


def test_stats_report_state_and_transitions() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, open_timeout=5, clock=clock)
    fail(breaker, 2)
    with pytest.raises(CircuitOpen):
        breaker.before_call("ping")
    clock.advance(5)
    breaker.record(engine_failure=False, trial=breaker.before_call("ping"))
    stats = breaker.stats()
    assert stats["state"] == CLOSED
    assert stats["times_opened"] == 1
    assert stats["rejected"] == 1
    assert [(t["before"], t["after"]) for t in stats["transitions"]] == [
        (CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)
    ]
    assert "2 consecutive engine failures" in stats["transitions"][0]["reason"]
