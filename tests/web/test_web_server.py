"""The real server: the daemon's own web thread on a free loopback port, spoken to over HTTP;
start-up errors for bad addresses; ``metrics-address``; SIGTERM to a daemon process."""

from __future__ import annotations

import io
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from loguru import logger
from polling import wait_for
from web_support import JOBS, PASSWORD, USERNAME, Running, auth_config, daemon_env

from ofelia_core.daemon import Daemon
from ofelia_core.errors import OfeliaError
from ofelia_core.web.settings import WebSettings, parse_address

OFELIA = [sys.executable, "-m", "ofelia_core"]


@pytest.fixture
def log_text() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    handler = logger.add(sink, level="TRACE", format="{level} {message}")
    yield sink
    logger.remove(handler)


def test_the_daemon_serves_the_api_from_its_own_thread(tmp_path: Path, password_hash: str,
                                                       log_text: io.StringIO) -> None:
    running = Running(tmp_path, auth_config(password_hash))
    try:
        base = running.url()
        assert base.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.get("/health").json() == {"status": "ok"}
            assert client.get("/ready").json()["status"] == "ready"
            assert client.get("/api/jobs").status_code == 401
            assert "ofelia" in client.get("/").text
            login = client.post("/api/login", json={"username": USERNAME, "password": PASSWORD})
            assert login.status_code == 200
            session = login.json()
            assert client.cookies.get("auth_token") == session["token"]
            csrf = {"X-CSRF-Token": session["csrf_token"]}
            run = client.post("/api/jobs/run", json={"name": "hello"}, headers=csrf).json()

            def done() -> bool:
                runs = client.get("/api/jobs/hello/history").json()["runs"]
                return any(r["id"] == run["id"] and r["state"] == "success" for r in runs)

            assert wait_for(done)
            runs = client.get("/api/jobs/hello/history").json()["runs"]
            assert runs[0]["stdout"] == "hello-from-web\n"
            bearer = {"Authorization": f"Bearer {session['token']}"}
            assert httpx.get(f"{base}/api/config", headers=bearer, timeout=10).status_code == 200
    finally:
        assert running.stop() == 0
    web_threads = [t for t in threading.enumerate() if t.name.startswith("ofelia-web")]
    assert not web_threads
    text = log_text.getvalue()
    assert "GET /api/jobs/hello/history" in text  # uvicorn's access log reaches loguru (at DEBUG)
    for secret in (PASSWORD, session["token"], session["csrf_token"], password_hash):
        assert secret not in text


def test_a_port_in_use_fails_start_up_naming_the_key(tmp_path: Path) -> None:
    schedulers_before = {t for t in threading.enumerate() if t.name == "ofelia-scheduler"}
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        path = tmp_path / "c.ini"
        path.write_text(f"[global]\nenable-web = true\nweb-address = 127.0.0.1:{port}\n{JOBS}")
        daemon = Daemon(str(path), env=daemon_env(tmp_path / "state"))
        with pytest.raises(OfeliaError, match=rf"^web-address = 127\.0\.0\.1:{port}: cannot listen there: "):
            daemon.start()
    assert daemon.web is None
    # Nothing was left running: the address is checked before the scheduler starts.
    assert {t for t in threading.enumerate() if t.name == "ofelia-scheduler"} <= schedulers_before


def test_an_address_not_on_this_host_fails_start_up(tmp_path: Path) -> None:
    # 192.0.2.1 (TEST-NET-1) is on no interface here: binding fails without any network traffic.
    path = tmp_path / "c.ini"
    path.write_text(f"[global]\nenable-web = true\nweb-address = 192.0.2.1:8081\n{JOBS}")
    daemon = Daemon(str(path), env=daemon_env(tmp_path / "state"))
    with pytest.raises(OfeliaError, match=r"^web-address = 192\.0\.2\.1:8081: cannot listen there"):
        daemon.start()


def test_metrics_address_serves_metrics_alone(tmp_path: Path) -> None:
    running = Running(tmp_path, f"[global]\nmetrics-address = 127.0.0.1:0\nmetrics-token = tok-123\n{JOBS}")
    try:
        assert running.daemon.web is not None and running.daemon.web.get("web") is None
        base = running.url("metrics")
        assert httpx.get(f"{base}/metrics", timeout=10).status_code == 401
        response = httpx.get(f"{base}/metrics", headers={"Authorization": "Bearer tok-123"}, timeout=10)
        assert response.status_code == 503 and "metrics are disabled" in response.text
        assert httpx.get(f"{base}/api/jobs", timeout=10).status_code == 404
        assert httpx.get(f"{base}/health", timeout=10).status_code == 404
    finally:
        assert running.stop() == 0


# --- as a process ----------------------------------------------------------------------------


def start_process(tmp_path: Path, text: str, *args: str, env_extra: dict[str, str] | None = None,
                  ) -> tuple[subprocess.Popen[bytes], Path]:
    config = tmp_path / "c.ini"
    config.write_text(text)
    log = tmp_path / "daemon.log"
    env = {**daemon_env(tmp_path / "state"), **(env_extra or {})}
    with log.open("ab") as handle:
        proc = subprocess.Popen([*OFELIA, "daemon", "--config", str(config), *args],
                                stdout=handle, stderr=subprocess.STDOUT, env=env)
    return proc, log


@pytest.mark.slow
def test_sigterm_stops_a_daemon_serving_the_web_gracefully(tmp_path: Path) -> None:
    """The web thread does not take SIGTERM: the scheduler's graceful shutdown runs and exits 0.
    The web options come from OFELIA_* variables here, as the CLI allows."""
    proc, log = start_process(tmp_path, JOBS, env_extra={"OFELIA_ENABLE_WEB": "true",
                                                         "OFELIA_WEB_ADDRESS": "127.0.0.1:0"})
    try:
        pattern = re.compile(r"serving the UI and API on (http://127\.0\.0\.1:\d+) \(authentication off\)")
        assert wait_for(lambda: pattern.search(log.read_text(errors="replace")) is not None, 60), log.read_text()
        match = pattern.search(log.read_text())
        assert match is not None
        assert httpx.get(f"{match.group(1)}/health", timeout=10).status_code == 200
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert "shutting down" in text and "ofelia stopped" in text


@pytest.mark.slow
def test_the_command_line_reports_a_port_in_use_and_exits_1(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc, log = start_process(tmp_path, JOBS, "--enable-web", "--web-address", f"127.0.0.1:{port}")
        assert proc.wait(60) == 1
    assert f"--web-address = 127.0.0.1:{port}: cannot listen there" in log.read_text()


def test_a_warning_when_authentication_is_off_on_an_address_beyond_loopback(log_text: io.StringIO) -> None:
    """Checked on the start-up report itself: no test listens beyond loopback."""
    from ofelia_core.web import _log_started

    for address, auth, warned in ((":8081", False, True), ("192.0.2.1:8081", False, True),
                                  ("127.0.0.1:8081", False, False), (":8081", True, False)):
        settings = WebSettings(enabled=True, auth_enabled=auth, address=parse_address(address, "web-address"))
        server = SimpleNamespace(name="web", url="http://x", address=settings.address)
        log_text.truncate(0)
        log_text.seek(0)
        _log_started(server, settings)  # type: ignore[arg-type]
        assert ("authentication is off" in log_text.getvalue()) is warned, address


@pytest.mark.parametrize("text", ["127.0.0.1:0", ":0"])
def test_connections_accepted_on_the_bound_socket_have_nagle_off(text: str) -> None:
    # Nagle plus the client's delayed ACK held each keep-alive response about 40 ms (bench/bench_web.py);
    # asyncio (uvicorn's loop) turns it off only on sockets whose proto is TCP.
    import asyncio

    from ofelia_core.web.server import bind

    listener = bind(parse_address(text, "web-address"), "web-address")
    nodelay: list[int] = []

    async def main() -> None:
        def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nodelay.append(writer.get_extra_info("socket").getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
            writer.close()

        server = await asyncio.start_server(accepted, sock=listener)
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", listener.getsockname()[1])
            await reader.read()  # the server closed it after looking
            writer.close()

    asyncio.run(main())
    assert nodelay and nodelay[0] != 0
