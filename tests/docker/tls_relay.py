"""A TCP (optionally TLS) listener on loopback that relays every connection to the
real engine's unix socket, so a driver's TCP and TLS paths are tested against the
real engine without reconfiguring it. Certificates come from the openssl CLI."""

from __future__ import annotations

import contextlib
import socket
import ssl
import subprocess
import threading
from pathlib import Path


def make_certificates(directory: Path) -> None:
    """ca.pem; server-cert.pem/server-key.pem for 127.0.0.1; cert.pem/key.pem for a client."""

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=directory)

    (directory / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem", "-out", "ca.pem",
            "-days", "1", "-subj", "/CN=ofelia-test-ca")
    for name, subject, extra in (("server-", "/CN=127.0.0.1", ["-extfile", "san.cnf"]), ("", "/CN=client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}key.pem", "-out", f"{name}req.csr",
                "-subj", subject)
        openssl("x509", "-req", "-in", f"{name}req.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                "-CAcreateserial", "-out", f"{name}cert.pem", "-days", "1", *extra)


class Relay:
    """Accepts on 127.0.0.1:<port>; with ``certs``, TLS requiring a client certificate signed by ca.pem."""

    def __init__(self, engine_socket: str, certs: Path | None = None) -> None:
        self.engine_socket = engine_socket
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._tls: ssl.SSLContext | None = None
        if certs is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(str(certs / "server-cert.pem"), str(certs / "server-key.pem"))
            context.load_verify_locations(str(certs / "ca.pem"))
            context.verify_mode = ssl.CERT_REQUIRED
            self._tls = context
        self.accepted = 0
        self.refused_handshakes = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="tls-relay", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(client,), daemon=True).start()

    def _handle(self, client: socket.socket) -> None:
        if self._tls is not None:
            try:
                client = self._tls.wrap_socket(client, server_side=True)
            except (ssl.SSLError, OSError):
                self.refused_handshakes += 1
                client.close()
                return
        self.accepted += 1
        engine = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        engine.connect(self.engine_socket)
        with self._lock:
            self._open.update((client, engine))
        threading.Thread(target=self._pipe, args=(engine, client), daemon=True).start()
        self._pipe(client, engine)

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with self._lock:
                    self._open.discard(sock)

    def close(self) -> None:
        self._listener.close()
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
