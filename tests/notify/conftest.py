"""Fixtures of the notification tests: real SMTP servers, and a real Daemon (job-local jobs,
the real history database, scheduler, dispatcher and delivery worker) started in this process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger
from notify_support import Started, start_daemon_from
from smtp_support import SilentServer, SmtpServer


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[Callable[..., SmtpServer]]:
    """``smtp(tls=None, auth=None, refuse_rcpt=False, require_tls=False)``: a started server."""
    servers: list[SmtpServer] = []

    def start(**kwargs: object) -> SmtpServer:
        server = SmtpServer(tmp_path, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.stop()


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Every log line (level and message) while the test runs."""
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), format="{level} {message}", level="DEBUG")
    yield lines
    logger.remove(sink)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str], Started]]:
    """``daemon(config_text)``: a started Daemon; shut down (notifications drained) afterwards."""
    started: list[Started] = []

    def start(text: str) -> Started:
        rig = start_daemon_from(tmp_path, text, len(started))
        started.append(rig)
        return rig

    yield start
    for rig in started:
        rig.close()
