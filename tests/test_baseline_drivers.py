"""What the baseline drivers do beyond the shared contract."""

from __future__ import annotations

import math
import time
from typing import Any

import pytest
from ofelia_hookspecs.contract.clock import FakeClock
from ofelia_hookspecs.settings import parse_size
from ofelia_hookspecs.types import DriverContext

from ofelia_core.baseline import buffers, metrics_noop, tokens
from ofelia_core.baseline.buffers import DEFAULT_MAX_SIZE, FreshBufferPool, GrowableBuffer
from ofelia_core.baseline.metrics_noop import NoopMetricsRecorder
from ofelia_core.baseline.tokens import DEFAULT_MAX_TOKENS, DictTokenManager


def context(clock: Any = time.monotonic) -> DriverContext:
    return DriverContext(clock=clock)


# --- tokens ---------------------------------------------------------------------


def test_past_the_cap_the_token_closest_to_expiry_is_evicted() -> None:
    manager = DictTokenManager(clock=FakeClock(), max_tokens=3)
    long = manager.issue("long", 100)
    soon = manager.issue("soon", 10)
    middle = manager.issue("middle", 50)
    # Use does not protect a token here (the heap driver evicts least recently used instead).
    for _ in range(5):
        assert manager.validate(soon) == "soon"
    newest = manager.issue("newest", 1)
    assert manager.validate(soon) is None
    assert [manager.validate(t) for t in (long, middle, newest)] == ["long", "middle", "newest"]
    assert manager.stats()["evicted"] == 1


def test_issue_sweeps_expired_tokens() -> None:
    clock = FakeClock()
    manager = DictTokenManager(clock=clock)
    for subject in ("a", "b", "c"):
        manager.issue(subject, 10)
    keep = manager.issue("d", 100)
    clock.advance(11)
    stats = manager.stats()
    assert (stats["active"], stats["held"], stats["expired"]) == (1, 4, 0)
    manager.issue("e", 100)
    stats = manager.stats()
    assert (stats["active"], stats["held"], stats["expired"]) == (2, 2, 3)
    assert manager.validate(keep) == "d"


def test_sweeping_makes_room_before_evicting() -> None:
    clock = FakeClock()
    manager = DictTokenManager(clock=clock, max_tokens=2)
    manager.issue("old", 5)
    live = manager.issue("live", 100)
    clock.advance(6)
    manager.issue("new", 100)
    assert manager.validate(live) == "live"
    assert manager.stats()["evicted"] == 0
    assert manager.stats()["expired"] == 1


def test_validate_and_revoke_drop_expired_tokens() -> None:
    clock = FakeClock()
    manager = DictTokenManager(clock=clock)
    checked = manager.issue("a", 10)
    revoked = manager.issue("b", 10)
    clock.advance(10)  # expiry is inclusive: valid for exactly expires_in seconds
    assert manager.validate(checked) is None
    assert manager.revoke(revoked) is False
    stats = manager.stats()
    assert (stats["held"], stats["expired"], stats["revoked"]) == (0, 2, 0)


def test_token_counters() -> None:
    manager = DictTokenManager(clock=FakeClock())
    first = manager.issue("a", 10)
    manager.issue("b", 10)
    manager.revoke(first)
    stats = manager.stats()
    assert stats == {
        "driver": "baseline",
        "active": 1,
        "held": 1,
        "max_tokens": DEFAULT_MAX_TOKENS,
        "issued": 2,
        "revoked": 1,
        "expired": 0,
        "evicted": 0,
    }


@pytest.mark.parametrize("expires_in", [0, -1, math.nan, "60"])
def test_issue_refuses_a_lifetime_that_is_not_a_positive_number(expires_in: Any) -> None:
    manager = DictTokenManager(clock=FakeClock())
    with pytest.raises(ValueError, match="expires_in"):
        manager.issue("alice", expires_in)


def test_token_manager_factory_uses_the_context_clock_and_settings() -> None:
    clock = FakeClock()
    manager = tokens.ofelia_make_token_manager(settings={"max-tokens": "20"}, context=context(clock))
    assert isinstance(manager, DictTokenManager)
    assert manager.max_tokens == 20
    token = manager.issue("alice", 5)
    clock.advance(5)
    assert manager.validate(token) is None


def test_token_manager_defaults_and_ignores_other_drivers_keys() -> None:
    settings = {"cleanup-interval": "5m", "cleanup-batch": "100"}
    manager = tokens.ofelia_make_token_manager(settings=settings, context=context())
    assert manager.max_tokens == DEFAULT_MAX_TOKENS


# Config numbers are ASCII digits: str.isdigit() alone would let through "\u00b2",
# which int() refuses, and full-width digits.
@pytest.mark.parametrize(
    "value", ["abc", "0", 0, -5, "1.5", 2.0, True, "", ["10", "20"], "\uff11\uff12", "\u00b2"]
)
def test_max_tokens_errors_name_the_section_and_key(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^\[token-manager\] max-tokens"):
        tokens.ofelia_make_token_manager(settings={"max-tokens": value}, context=context())


# --- buffers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (10, 10),
        ("10", 10),
        (" 10 ", 10),
        ("7B", 7),
        ("512KiB", 512 * 1024),
        ("512kib", 512 * 1024),
        ("10MiB", 10 * 1024 * 1024),
        ("10 MiB", 10 * 1024 * 1024),
        ("1.5MiB", 1536 * 1024),
        ("2K", 2048),
        ("2M", 2 * 1024 * 1024),
        ("1GiB", 1024**3),
        ("1KB", 1000),
        ("3MB", 3_000_000),
        ("1GB", 1_000_000_000),
    ],
)
def test_parse_size(text: Any, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text", ["", "abc", "10XB", "-5", "0", 0, "0.1B", "1e3", True, 1.5, "1.5.2MiB", None]
)
def test_parse_size_refuses(text: Any) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


def test_buffer_pool_factory_reads_max_size() -> None:
    pool = buffers.ofelia_make_buffer_pool(settings={"max-size": "512KiB"}, context=context())
    assert isinstance(pool, FreshBufferPool)
    assert pool.max_size == 512 * 1024
    buffer = pool.get("job", "stdout")
    assert isinstance(buffer, GrowableBuffer) and buffer.max_size == 512 * 1024


def test_buffer_pool_defaults_to_ten_mebibytes_and_ignores_other_drivers_keys() -> None:
    settings = {"tiers": "1KiB,256KiB", "prewarm": "true"}
    pool = buffers.ofelia_make_buffer_pool(settings=settings, context=context())
    assert pool.max_size == DEFAULT_MAX_SIZE == 10 * 1024 * 1024


@pytest.mark.parametrize("value", ["ten", "0", -1, "5 parsecs"])
def test_max_size_errors_name_the_section_and_key(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^\[buffer-pool\] max-size"):
        buffers.ofelia_make_buffer_pool(settings={"max-size": value}, context=context())


def test_buffer_memory_stays_within_twice_the_cap() -> None:
    cap = 1000
    buffer = GrowableBuffer(cap)
    written = bytearray()
    for index in range(5000):
        chunk = bytes([index % 251]) * (1 + index % 17)
        buffer.write(chunk)
        written += chunk
        assert len(buffer._buf) <= 2 * cap
        assert len(buffer) == min(len(written), cap)
    assert buffer.getvalue() == bytes(written[-cap:])


def test_each_get_is_a_new_buffer_and_put_counts_bytes() -> None:
    pool = FreshBufferPool(max_size=100)
    first, second = pool.get("job", "stdout"), pool.get("job", "stdout")
    assert first is not second
    first.write(b"x" * 150)
    pool.put(first)
    assert pool.stats() == {
        "driver": "baseline",
        "max_size": 100,
        "gets": 2,
        "puts": 1,
        "outstanding": 1,
        "bytes_returned": 100,
    }


def test_buffer_repr_and_write_refuses_text() -> None:
    buffer = GrowableBuffer(10)
    buffer.write(b"abc")
    assert repr(buffer) == "GrowableBuffer(len=3, max_size=10, truncated=False)"
    with pytest.raises(TypeError):
        buffer.write("text")  # type: ignore[arg-type]


# --- metrics ---------------------------------------------------------------------


def test_noop_recorder() -> None:
    recorder = metrics_noop.ofelia_make_metrics_recorder(settings={"port": "9100"}, context=context())
    assert isinstance(recorder, NoopMetricsRecorder)
    recorder.observe_operation("docker-client", "ping", 0.1, None)
    for fmt in ("prometheus", "json", "anything"):
        assert recorder.export(fmt) == ""
    assert recorder.stats() == {"driver": "noop"}
