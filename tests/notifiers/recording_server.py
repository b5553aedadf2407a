"""A real HTTP server on 127.0.0.1 (a free port) that records every request and answers
as scripted: a status code, or ``"hang"`` (never answer until the server stops)."""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

HANG = "hang"


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def header(self, name: str) -> str | None:
        lowered = {k.lower(): v for k, v in self.headers.items()}
        return lowered.get(name.lower())

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode("ascii"), strict_parsing=True)


class RecordingServer:
    def __init__(self, tls: tuple[str, str] | None = None) -> None:
        self.requests: list[Recorded] = []
        #: Answers for the next requests, in order; when empty, ``default``.
        self.script: list[int | str] = []
        self.default: int | str = 200
        self.reply_body = b"ok"
        self._lock = threading.Condition()
        self._stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                answer = server._record(self.command, self.path, dict(self.headers.items()), body)
                if answer == HANG:
                    server._stop.wait(30)
                    return
                assert isinstance(answer, int)
                self.send_response(answer)
                self.send_header("Content-Length", str(len(server.reply_body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(server.reply_body)

            do_PUT = do_POST
            do_GET = do_POST

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:  # (certificate, key) files
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.httpd.socket = context.wrap_socket(self.httpd.socket, server_side=True)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="recording-server", daemon=True
        )

    def _record(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int | str:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body, time.monotonic()))
            answer = self.script.pop(0) if self.script else self.default
            self._lock.notify_all()
            return answer

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.requests) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"expected {count} request(s), got {len(self.requests)}")
                self._lock.wait(left)
            return list(self.requests)

    def start(self) -> RecordingServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def make_certificate(folder: str) -> tuple[str, str]:
    """A self-signed certificate for localhost and 127.0.0.1 (the ``openssl`` CLI)."""
    cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def running_server() -> Iterator[RecordingServer]:
    server = RecordingServer().start()
    try:
        yield server
    finally:
        server.stop()


def make_notice(state: str = "failed", **changes: Any) -> Any:
    """A finished run's notice, as the core builds it (times 2.5 s apart)."""
    from ofelia_hookspecs.types import Notice

    values: dict[str, Any] = {
        "job_name": "backup",
        "job_type": "job-local",
        "run_id": "0123456789ab",
        "state": state,
        "trigger": "schedule",
        "attempt": 1,
        "scheduled_at": 1_700_000_000.0,
        "started_at": 1_700_000_000.0 if state not in ("skipped", "missed") else None,
        "ended_at": 1_700_000_002.5,
        "exit_code": 2 if state == "failed" else (0 if state == "success" else None),
        "error": {"failed": "exit code 2", "timed_out": "stopped after max-runtime 1s",
                  "cancelled": "stopped at shutdown"}.get(state),
        "stdout": b"dumping...\n",
        "stderr": b"pg_dump: error: connection refused\n" if state == "failed" else b"",
        "document": {"job": {"name": "backup", "type": "job-local",
                             "config": {"command": 'pg_dump -U "app"', "schedule": "@daily"}}},
        "hostname": "host-1",
    }
    values.update(changes)
    return Notice(**values)
