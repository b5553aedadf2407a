"""What the web tests share (conftest.py holds the fixtures built from it).

Replacements, named as such: the token manager is the baseline driver built on a
FakeClock (so tokens can expire on demand), and the login rate limit reads the
same FakeClock.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient
from ofelia_hookspecs.contract.clock import FakeClock

from ofelia_core.baseline.tokens import DictTokenManager
from ofelia_core.daemon import Daemon
from ofelia_core.web.settings import WebSettings

USERNAME = "admin"
PASSWORD = "correct horse battery"

JOBS = """
[job-local "hello"]
schedule = @every 1h
command = echo hello-from-web

[job-local "later"]
schedule = @manual
command = sh -c "echo out-line; echo err-line >&2"
"""


def daemon_env(state: Path) -> dict[str, str]:
    """A clean environment: no OFELIA_* flag of the caller's shell changes the drivers."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
    env["OFELIA_STATE_DIR"] = str(state)
    return env


@dataclass
class Rig:
    """A started daemon and the app built for it."""

    daemon: Daemon
    app: FastAPI
    settings: WebSettings
    tokens: DictTokenManager
    clock: FakeClock

    def client(self, **kwargs: Any) -> TestClient:
        return TestClient(self.app, **kwargs)

    def login(self, client: TestClient) -> dict[str, Any]:
        response = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    def bearer(self) -> dict[str, str]:
        """Headers of a fresh login's token."""
        return {"Authorization": f"Bearer {self.login(self.client())['token']}"}


def auth_config(password_hash: str, extra: str = "") -> str:
    return (f"[global]\nenable-web = true\nweb-address = 127.0.0.1:0\nweb-auth-enabled = true\n"
            f"web-username = {USERNAME}\nweb-password-hash = {password_hash}\n{extra}\n{JOBS}")


class Running:
    """A Daemon running in a thread of this process, as `ofelia daemon` runs it (minus signals)."""

    def __init__(self, tmp_path: Path, text: str) -> None:
        path = tmp_path / "ofelia.ini"
        path.write_text(text)
        self.daemon = Daemon(str(path), env=daemon_env(tmp_path / "state"))
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, name="test-daemon")
        self.thread.start()
        assert self.daemon.started.wait(30)

    def _run(self) -> None:
        self.code = self.daemon.run(install_signals=False)

    def url(self, name: str = "web") -> str:
        assert self.daemon.web is not None
        server = self.daemon.web.get(name)
        assert server is not None
        return f"http://127.0.0.1:{server.port}"

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self.thread.join(60)
        return self.code
