"""Fixtures for the web tests: a real Daemon started from a temp config (job-local
``echo`` jobs, the real history database, scheduler and dispatcher), and the
FastAPI app built for it, driven through FastAPI's TestClient."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import bcrypt
import pytest
from ofelia_hookspecs.contract.clock import FakeClock
from web_support import JOBS, PASSWORD, USERNAME, Rig, daemon_env

from ofelia_core.baseline.tokens import DictTokenManager
from ofelia_core.daemon import Daemon
from ofelia_core.web.app import build_app
from ofelia_core.web.settings import WebSettings


@pytest.fixture(scope="session")
def password_hash() -> str:
    """A ``$2a$`` hash (Go's prefix) at the lowest cost, so logins are quick."""
    return bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=4, prefix=b"2a")).decode()


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., Daemon]]:
    """``start(text, env={})``: a Daemon (no signal handlers, no main loop) from config text; shut
    down afterwards. ``env`` adds variables (driver flags) to a clean environment."""
    started: list[Daemon] = []

    def start(text: str, env: dict[str, str] | None = None) -> Daemon:
        path = tmp_path / f"ofelia{len(started)}.ini"
        path.write_text(text)
        daemon = Daemon(str(path), env={**daemon_env(tmp_path / "state"), **(env or {})})
        daemon.start()
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        daemon.request_stop()
        daemon.shutdown()


@pytest.fixture
def make_rig(start_daemon: Callable[..., Daemon], password_hash: str) -> Callable[..., Rig]:
    """``make_rig(auth=True, global_extra="", jobs=JOBS, env=None)``: a daemon and its app."""

    def make(*, auth: bool = True, global_extra: str = "", jobs: str = JOBS, env: dict[str, str] | None = None,
             ) -> Rig:
        text = "[global]\nweb-max-login-attempts = 3\n" + global_extra + "\n"
        if auth:
            text += f"web-auth-enabled = true\nweb-username = {USERNAME}\nweb-password-hash = {password_hash}\n"
        daemon = start_daemon(text + jobs, env)
        assert daemon.runtime is not None
        settings = WebSettings.from_values(daemon.runtime.global_values, cli_enable=True)
        clock = FakeClock()
        tokens = DictTokenManager(clock=clock)
        return Rig(daemon, build_app(daemon, settings, tokens=tokens, clock=clock), settings, tokens, clock)

    return make
