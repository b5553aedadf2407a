"""Contract tests for a :class:`~ofelia_hookspecs.protocols.TokenManager` driver.

Subclass :class:`TokenManagerContract` in a test module and provide the
fixture ``make_token_manager``: a callable ``(settings: dict, clock) ->
TokenManager`` that builds the driver the way its factory hook does, with
``clock`` as ``DriverContext.clock``. The kit passes a :class:`FakeClock` and
moves it to expire tokens, so no test sleeps.

The cap is set with the ``max-tokens`` key of ``[token-manager]``; a driver
that names it otherwise sets :attr:`TokenManagerContract.cap_setting`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the ofelia contract test kit needs pytest: pip install 'ofelia-hookspecs[contract]'"
    ) from exc

from ..protocols import TokenManager
from .clock import FakeClock

MakeTokenManager = Callable[[dict[str, Any], Callable[[], float]], TokenManager]
Build = Callable[..., TokenManager]

#: 128 bits in URL-safe base64; anything shorter is guessable in principle.
MIN_TOKEN_CHARS = 22


class TokenManagerContract:
    """What the core relies on from every token manager."""

    #: The settings key of the cap on tokens held.
    cap_setting: str = "max-tokens"

    def driver_stats(self, driver: TokenManager) -> dict[str, Any]:
        """The driver's own ``stats()``. A suite that runs the kit through a
        wrapper with its own stats layout overrides this to unwrap them."""
        return driver.stats()

    @pytest.fixture
    def build_token_manager(self, make_token_manager: MakeTokenManager) -> Iterator[Build]:
        """``build(settings=None, clock=None)``: a driver, closed after the test."""
        built: list[TokenManager] = []

        def build(
            settings: dict[str, Any] | None = None, clock: Callable[[], float] | None = None
        ) -> TokenManager:
            manager = make_token_manager(dict(settings or {}), clock or FakeClock())
            built.append(manager)
            return manager

        yield build
        for manager in built:
            manager.close()

    def test_satisfies_protocol(self, build_token_manager: Build) -> None:
        assert isinstance(build_token_manager(), TokenManager)

    def test_tokens_are_unique_opaque_strings(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        subject = "a-rather-distinctive-subject"
        tokens = [manager.issue(subject, 3600) for _ in range(500)]
        assert len(set(tokens)) == len(tokens)
        for token in tokens:
            assert isinstance(token, str)
            assert len(token) >= MIN_TOKEN_CHARS
            assert subject not in token

    def test_validate_returns_the_subject(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        alice = manager.issue("alice", 3600)
        bob = manager.issue("bob", 3600)
        assert manager.validate(alice) == "alice"
        assert manager.validate(bob) == "bob"
        assert manager.validate(alice) == "alice"  # validating does not consume

    def test_unknown_tokens_are_invalid(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        token = manager.issue("alice", 3600)
        assert manager.validate("") is None
        assert manager.validate("not-a-token") is None
        assert manager.validate(token[:-1]) is None
        assert manager.validate(token + "x") is None

    def test_expired_token_is_invalid(self, build_token_manager: Build) -> None:
        clock = FakeClock()
        manager = build_token_manager(clock=clock)
        token = manager.issue("alice", 60)
        clock.advance(30)
        assert manager.validate(token) == "alice"
        # Validating does not extend a token's life: it expires 60 s after issue.
        clock.advance(31)
        assert manager.validate(token) is None
        assert manager.validate(token) is None

    def test_expiry_is_per_token(self, build_token_manager: Build) -> None:
        clock = FakeClock()
        manager = build_token_manager(clock=clock)
        short = manager.issue("alice", 10)
        long = manager.issue("bob", 1000)
        clock.advance(11)
        assert manager.validate(short) is None
        assert manager.validate(long) == "bob"
        fresh = manager.issue("carol", 10)  # issued after the clock moved
        assert manager.validate(fresh) == "carol"

    def test_revoke(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        token = manager.issue("alice", 3600)
        other = manager.issue("alice", 3600)
        assert manager.revoke(token) is True
        assert manager.validate(token) is None
        assert manager.revoke(token) is False
        assert manager.revoke("never-issued") is False
        assert manager.validate(other) == "alice"

    @pytest.mark.parametrize("as_text", [False, True], ids=["int", "ini-string"])
    def test_cap_is_respected(self, build_token_manager: Build, as_text: bool) -> None:
        cap = 5
        manager = build_token_manager({self.cap_setting: str(cap) if as_text else cap})
        tokens = []
        for index in range(3 * cap):
            token = manager.issue(f"user{index}", 3600)
            tokens.append(token)
            assert manager.validate(token) == f"user{index}", "the newest token must stay valid"
            assert self.driver_stats(manager)["active"] <= cap
        valid = [token for token in tokens if manager.validate(token) is not None]
        assert 0 < len(valid) <= cap
        assert tokens[-1] in valid

    def test_at_the_cap_expired_tokens_go_before_live_ones(self, build_token_manager: Build) -> None:
        # Which live token a driver evicts is its own choice; an expired one always goes first.
        clock = FakeClock()
        manager = build_token_manager({self.cap_setting: 3}, clock=clock)
        manager.issue("short", 10)
        live = [manager.issue("alice", 1000), manager.issue("bob", 1000)]
        clock.advance(11)
        newest = manager.issue("carol", 1000)
        assert [manager.validate(token) for token in (*live, newest)] == ["alice", "bob", "carol"]
        assert self.driver_stats(manager)["active"] == 3

    def test_expired_tokens_are_not_active(self, build_token_manager: Build) -> None:
        # Before any clean-up ran, and without validating them first.
        clock = FakeClock()
        manager = build_token_manager(clock=clock)
        manager.issue("alice", 10)
        manager.issue("bob", 20)
        manager.issue("carol", 1000)
        clock.advance(15)
        assert self.driver_stats(manager)["active"] == 2
        clock.advance(10)
        assert self.driver_stats(manager)["active"] == 1

    @pytest.mark.parametrize("lifetime", [0, -1, float("nan")], ids=["zero", "negative", "nan"])
    def test_bad_lifetimes_are_rejected(self, build_token_manager: Build, lifetime: float) -> None:
        manager = build_token_manager()
        with pytest.raises(ValueError):
            manager.issue("alice", lifetime)
        assert self.driver_stats(manager)["active"] == 0

    def test_unknown_settings_are_ignored(self, build_token_manager: Build) -> None:
        # Another driver's keys stay in the section after a rollback.
        manager = build_token_manager({"some-other-drivers-key": "value", "cleanup-interval": "5m"})
        assert manager.validate(manager.issue("alice", 60)) == "alice"

    def test_stats(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        stats = self.driver_stats(manager)
        assert isinstance(stats, dict)
        assert stats["active"] == 0
        first = manager.issue("alice", 3600)
        manager.issue("bob", 3600)
        manager.issue("carol", 3600)
        manager.revoke(first)
        assert self.driver_stats(manager)["active"] == 2

    def test_concurrent_use(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        threads, per_thread = 8, 150
        errors: list[BaseException] = []
        kept: dict[str, str] = {}
        revoked: list[str] = []
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def work(worker: int) -> None:
            try:
                start.wait()
                for index in range(per_thread):
                    subject = f"w{worker}-{index}"
                    token = manager.issue(subject, 3600)
                    assert manager.validate(token) == subject
                    if index % 3 == 0:
                        assert manager.revoke(token) is True
                        with lock:
                            revoked.append(token)
                    else:
                        with lock:
                            kept[token] = subject
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(worker,)) for worker in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert not errors, errors[0]
        assert len(kept) + len(revoked) == threads * per_thread
        for token, subject in kept.items():
            assert manager.validate(token) == subject
        for token in revoked:
            assert manager.validate(token) is None
        assert self.driver_stats(manager)["active"] == len(kept)

    def test_concurrent_use_at_the_cap_while_tokens_expire(self, build_token_manager: Build) -> None:
        # Issue, validate and revoke from many threads while the clock moves and the cap
        # evicts: a token never answers with another subject, and the figures add up.
        clock = FakeClock()
        cap = 25
        manager = build_token_manager({self.cap_setting: cap}, clock=clock)
        threads, per_thread = 8, 200
        errors: list[BaseException] = []
        issued: dict[str, str] = {}
        lock = threading.Lock()
        start = threading.Barrier(threads)

        def work(worker: int) -> None:
            try:
                start.wait()
                for index in range(per_thread):
                    subject = f"w{worker}-{index}"
                    token = manager.issue(subject, 30 + 10 * (index % 5))
                    with lock:
                        issued[token] = subject
                    assert manager.validate(token) in (subject, None)
                    if index % 4 == 0:
                        manager.revoke(token)
                        assert manager.validate(token) is None
                    if index % 25 == 0:
                        clock.advance(7)
                    assert self.driver_stats(manager)["active"] <= cap
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        pool = [threading.Thread(target=work, args=(worker,)) for worker in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        assert not errors, errors[0]
        assert len(issued) == threads * per_thread
        valid = {token: subject for token, subject in issued.items() if manager.validate(token) is not None}
        assert 0 < len(valid) <= cap
        for token, subject in valid.items():
            assert manager.validate(token) == subject
        assert self.driver_stats(manager)["active"] == len(valid)

    def test_close_twice(self, build_token_manager: Build) -> None:
        manager = build_token_manager()
        manager.issue("alice", 60)
        manager.close()
        manager.close()


__all__ = ["FakeClock", "TokenManagerContract"]
