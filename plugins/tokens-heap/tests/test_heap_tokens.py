"""The heap token manager's own behaviour: LRU eviction, batch clean-up, the heap's
bound on garbage, the worker's life, stats and logs. No test sleeps for a fixed
time or asserts a timing: expiry is driven by a FakeClock, and waiting for the
worker polls for what it did."""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from loguru import logger
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_tokens_heap import COMPACT_SLACK, WORKER_NAME, HeapTokenManager, build_manager


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (a bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


def workers() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == WORKER_NAME]


Build = Callable[..., HeapTokenManager]


@pytest.fixture
def build() -> Iterator[Build]:
    """``build(settings=None, clock=None)``: a manager (default settings, a FakeClock), closed after the test."""
    made: list[HeapTokenManager] = []

    def make(settings: dict[str, Any] | None = None, clock: Callable[[], float] | None = None) -> HeapTokenManager:
        manager = build_manager(settings or {}, clock or FakeClock(), env={})
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.close()


def held(manager: HeapTokenManager, token: str) -> bool:
    """Whether the manager still holds ``token`` (expired or not), without touching it."""
    return token in manager._tokens


# -- LRU eviction -------------------------------------------------------------------------


def test_past_the_cap_the_least_recently_used_token_is_evicted(build: Build) -> None:
    manager = build({"max-tokens": 3})
    first, second, third = (manager.issue(name, 3600) for name in ("first", "second", "third"))
    assert manager.validate(first) == "first"  # first is now the most recently used
    fourth = manager.issue("fourth", 3600)
    assert not held(manager, second), "second was idle longest"
    assert [manager.validate(t) for t in (first, third, fourth)] == ["first", "third", "fourth"]
    # Validating them in that order left first idle longest.
    fifth = manager.issue("fifth", 3600)
    assert not held(manager, first)
    assert [manager.validate(t) for t in (third, fourth, fifth)] == ["third", "fourth", "fifth"]
    assert manager.stats()["evicted"] == 2


def test_without_use_the_oldest_login_is_evicted(build: Build) -> None:
    manager = build({"max-tokens": 2})
    first = manager.issue("first", 3600)
    second = manager.issue("second", 3600)
    third = manager.issue("third", 3600)
    assert (held(manager, first), held(manager, second), held(manager, third)) == (False, True, True)


def test_eviction_ignores_expiry_order(build: Build) -> None:
    # The baseline evicts the token closest to expiry; LRU evicts the idle one even if it lives longest.
    manager = build({"max-tokens": 2})
    idle_long_life = manager.issue("idle", 86_400)
    busy_short_life = manager.issue("busy", 60)
    manager.validate(busy_short_life)
    manager.issue("new", 60)
    assert not held(manager, idle_long_life)
    assert manager.validate(busy_short_life) == "busy"


def test_a_failed_validate_is_not_a_use(build: Build) -> None:
    manager = build({"max-tokens": 2})
    first = manager.issue("first", 3600)
    manager.issue("second", 3600)
    assert manager.validate(first + "x") is None
    manager.revoke("never-issued")
    manager.issue("third", 3600)
    assert not held(manager, first)


def test_at_the_cap_expired_tokens_go_before_the_least_recently_used(build: Build) -> None:
    clock = FakeClock()
    manager = build({"max-tokens": 3}, clock)
    idle = manager.issue("idle", 3600)
    manager.issue("short-a", 10)
    short_b = manager.issue("short-b", 10)
    manager.validate(short_b)  # used recently, but it will have expired
    clock.advance(11)
    manager.issue("new-1", 3600)
    manager.issue("new-2", 3600)
    assert manager.validate(idle) == "idle", "a live token was evicted while expired ones were held"
    stats = manager.stats()
    assert (stats["evicted"], stats["expired"], stats["held"]) == (0, 2, 3)
    manager.issue("new-3", 3600)  # now a live one must go: the least recently used
    assert manager.stats()["evicted"] == 1


# -- batch clean-up -------------------------------------------------------------------------


def test_a_clean_up_pass_removes_at_most_a_batch_expired_first(build: Build) -> None:
    clock = FakeClock()
    manager = build({"cleanup-batch-size": 3}, clock)
    lifetimes = [7, 2, 9, 1, 5, 3, 8, 4, 6, 10]  # issued out of expiry order
    by_life = {life: manager.issue(f"user{life}", life) for life in lifetimes}
    keep = [manager.issue("keep-a", 3600), manager.issue("keep-b", 3600)]
    clock.advance(5.5)  # lifetimes 1..5 have expired
    assert manager.cleanup_once() == 3
    assert [life for life in sorted(by_life) if not held(manager, by_life[life])] == [1, 2, 3]
    assert manager.cleanup_once() == 2  # only two expired ones are left: live tokens are never removed
    assert [life for life in sorted(by_life) if not held(manager, by_life[life])] == [1, 2, 3, 4, 5]
    assert manager.cleanup_once() == 0
    assert all(held(manager, by_life[life]) for life in (6, 7, 8, 9, 10))
    assert all(manager.validate(token) is not None for token in keep)
    stats = manager.stats()
    assert (stats["cleanup_passes"], stats["cleanup_removed"], stats["expired"]) == (3, 5, 5)
    assert (stats["held"], stats["active"]) == (7, 7)


def test_expired_tokens_are_invalid_before_clean_up_removes_them(build: Build) -> None:
    clock = FakeClock()
    manager = build({"cleanup-batch-size": 1}, clock)
    tokens = [manager.issue("alice", 10) for _ in range(5)]
    clock.advance(10)  # expiry is inclusive: valid while clock < expires_at
    stats = manager.stats()
    assert (stats["held"], stats["active"]) == (5, 0)
    assert manager.validate(tokens[4]) is None  # dropped on the spot
    assert manager.stats()["held"] == 4


def test_clean_up_skips_revoked_and_evicted_tokens(build: Build) -> None:
    clock = FakeClock()
    manager = build({"cleanup-batch-size": 2, "max-tokens": 4}, clock)
    tokens = [manager.issue(f"u{i}", 10 + i) for i in range(4)]
    assert manager.revoke(tokens[0]) is True
    manager.issue("late", 100)  # under the cap again after the revoke: nothing evicted
    manager.issue("later", 100)  # evicts tokens[1], the least recently used
    assert not held(manager, tokens[1])
    clock.advance(20)
    assert manager.cleanup_once() == 2  # tokens[2] and [3]: the revoked and evicted entries cost no batch slot
    assert manager.stats()["held"] == 2


def test_heap_garbage_is_bounded(build: Build) -> None:
    manager = build({"max-tokens": 1_000_000})
    keep = [manager.issue("keep", 3600) for _ in range(10)]
    for _ in range(3 * COMPACT_SLACK):
        assert manager.revoke(manager.issue("churn", 3600)) is True
        stats = manager.stats()
        assert stats["heap_garbage"] <= stats["held"] + COMPACT_SLACK
    stats = manager.stats()
    assert stats["compactions"] >= 2
    assert stats["heap_size"] == stats["held"] + stats["heap_garbage"]
    assert all(manager.validate(token) == "keep" for token in keep)


def test_revoking_an_expired_token_counts_it_as_expired(build: Build) -> None:
    clock = FakeClock()
    manager = build(clock=clock)
    token = manager.issue("alice", 10)
    clock.advance(10)
    assert manager.revoke(token) is False
    stats = manager.stats()
    assert (stats["revoked"], stats["expired"], stats["held"]) == (0, 1, 0)


def test_stats_count_every_way_out(build: Build) -> None:
    clock = FakeClock()
    manager = build({"max-tokens": 5, "cleanup-batch-size": 10}, clock)
    tokens = [manager.issue("u", 10) for _ in range(5)]
    manager.revoke(tokens[0])
    manager.issue("v", 1000)
    manager.issue("w", 1000)  # evicts one
    clock.advance(10)
    manager.validate(tokens[4])  # expired on validate
    manager.cleanup_once()  # the other expired ones
    stats = manager.stats()
    assert stats["issued"] == 7
    assert stats["issued"] == stats["active"] + stats["revoked"] + stats["evicted"] + stats["expired"]
    assert (stats["active"], stats["revoked"], stats["evicted"], stats["expired"]) == (2, 1, 1, 3)


# -- the worker ----------------------------------------------------------------------------


def test_building_starts_no_thread(build: Build) -> None:
    before = len(workers())
    manager = build()
    assert manager.stats()["worker"] == "not started"
    assert manager.stats()["worker_alive"] is False
    assert len(workers()) == before


def test_one_worker_whatever_the_count(build: Build) -> None:
    before = len(workers())
    manager = build()
    for index in range(2000):
        manager.issue(f"user{index}", 3600)
    assert len(workers()) == before + 1
    assert manager.stats()["worker"] == "running"
    assert manager.worker_alive


def test_close_stops_the_worker(build: Build) -> None:
    manager = build()  # the default interval: 5 minutes
    manager.issue("alice", 60)
    (thread,) = [t for t in workers() if t is manager._worker]
    assert thread.is_alive()
    manager.close()
    assert not thread.is_alive(), "close() returned with the worker still running"
    assert thread not in threading.enumerate()
    stats = manager.stats()
    assert (stats["worker"], stats["worker_alive"]) == ("stopped", False)
    manager.close()


def test_issue_after_close_works_without_a_worker(build: Build) -> None:
    manager = build()
    manager.close()
    before = len(workers())
    token = manager.issue("alice", 60)
    assert manager.validate(token) == "alice"
    assert len(workers()) == before
    assert manager.stats()["worker"] == "stopped"


def test_the_worker_cleans_up_on_its_own(build: Build) -> None:
    clock = FakeClock()
    manager = build({"cleanup-interval": "50ms", "cleanup-batch-size": 2}, clock)
    for _ in range(5):
        manager.issue("alice", 10)
    keep = manager.issue("bob", 3600)
    clock.advance(11)
    assert wait_for(lambda: manager.stats()["held"] == 1), manager.stats()
    stats = manager.stats()
    assert stats["cleanup_passes"] >= 3  # two a pass at most
    assert (stats["cleanup_removed"], stats["expired"]) == (5, 5)
    assert manager.validate(keep) == "bob"


def test_a_failing_pass_is_logged_and_the_worker_carries_on(build: Build) -> None:
    base = FakeClock()
    failures = [0]

    def clock() -> float:
        if threading.current_thread().name == WORKER_NAME and failures[0] < 2:
            failures[0] += 1
            raise RuntimeError("clock broke")
        return base()

    lines: list[str] = []
    sink = logger.add(lines.append, level="ERROR", format="{message}")
    try:
        manager = build({"cleanup-interval": "20ms"}, clock)
        manager.issue("alice", 10)
        base.advance(11)
        assert wait_for(lambda: manager.stats()["held"] == 0), manager.stats()
    finally:
        logger.remove(sink)
    assert manager.stats()["worker_errors"] == 2
    assert manager.worker_alive
    assert any("clean-up pass failed" in line for line in lines)


def test_a_manager_dropped_without_close_lets_its_worker_go(build: Build) -> None:
    manager = build_manager({"cleanup-interval": "20ms"}, FakeClock(), env={})
    manager.issue("alice", 60)
    thread = manager._worker
    assert thread is not None and thread.is_alive()
    del manager
    gc.collect()
    assert wait_for(lambda: not thread.is_alive())


def test_the_worker_is_safe_beside_many_callers(build: Build) -> None:
    clock = FakeClock()
    manager = build({"cleanup-interval": "1ms", "cleanup-batch-size": 3, "max-tokens": 200}, clock)
    errors: list[BaseException] = []

    def work(worker: int) -> None:
        try:
            for index in range(400):
                subject = f"w{worker}-{index}"
                token = manager.issue(subject, 5 + index % 20)
                assert manager.validate(token) in (subject, None)
                if index % 3 == 0:
                    manager.revoke(token)
                if index % 50 == 0:
                    clock.advance(3)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    assert not errors, errors[0]
    stats = manager.stats()
    assert stats["held"] <= 200
    assert stats["issued"] == 2400
    assert stats["issued"] == stats["held"] + stats["revoked"] + stats["evicted"] + stats["expired"]


# -- stats and logs never show tokens --------------------------------------------------------


def test_tokens_never_reach_stats_or_logs(build: Build) -> None:
    clock = FakeClock()
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message) + json.dumps(message.record, default=str)),
                      level="DEBUG")
    try:
        manager = build({"max-tokens": 3, "cleanup-batch-size": 10, "cleanup-interval": "10ms"}, clock)
        tokens = [manager.issue(f"user{i}", 10 + i) for i in range(6)]
        manager.validate(tokens[-1])
        manager.revoke(tokens[-2])
        clock.advance(100)
        manager.cleanup_once()
        stats = json.dumps(manager.stats())
        manager.close()
    finally:
        logger.remove(sink)
    assert lines, "expected the worker and the clean-up to log something at DEBUG"
    text = "\n".join(lines) + stats
    for token in tokens:
        assert token not in text
        assert token[:16] not in text


def test_tokens_are_256_bit_random(build: Build) -> None:
    manager = build()
    tokens = {manager.issue("alice", 60) for _ in range(200)}
    assert len(tokens) == 200
    assert all(len(token) == 43 for token in tokens)  # token_urlsafe(32)


@pytest.mark.parametrize("lifetime", [0, -5, float("nan"), "60", None])
def test_bad_lifetimes(build: Build, lifetime: Any) -> None:
    with pytest.raises(ValueError, match="expires_in"):
        build().issue("alice", lifetime)


def test_validate_and_revoke_take_only_strings(build: Build) -> None:
    manager = build()
    manager.issue("alice", 60)
    assert manager.validate(None) is None  # type: ignore[arg-type]
    assert manager.validate(b"x") is None  # type: ignore[arg-type]
    assert manager.revoke(42) is False  # type: ignore[arg-type]
