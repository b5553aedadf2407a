"""Real SMTP servers for the notification tests: aiosmtpd on 127.0.0.1, recording what it
receives, with AUTH, STARTTLS or implicit TLS (a self-signed certificate made by the
``openssl`` CLI), one that refuses, and a socket that accepts and never answers."""

from __future__ import annotations

import email
import email.policy
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from polling import wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    #: The login the session authenticated with (None without AUTH).
    login: str | None
    #: Whether the session was encrypted (STARTTLS or implicit TLS).
    tls: bool

    def attachments(self) -> dict[str, bytes]:
        found: dict[str, bytes] = {}
        for part in self.message.iter_attachments():
            name = part.get_filename()
            assert name is not None
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            found[name] = payload
        return found

    def body(self, subtype: str = "plain") -> str:
        part = self.message.get_body(preferencelist=(subtype,))
        assert part is not None
        content: str = part.get_content()  # type: ignore[attr-defined]
        return content


@dataclass
class Recorder:
    """The aiosmtpd handler: keeps every message; refuses recipients when told to."""

    refuse_rcpt: bool = False
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    #: EHLOs seen: one per connection (two with STARTTLS).
    ehlos: int = 0

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        with self.lock:
            self.ehlos += 1
        return responses

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if self.refuse_rcpt:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        auth = session.auth_data
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        # session.ssl is set by STARTTLS only; implicit TLS shows on the transport.
        transport = server.transport
        tls = session.ssl is not None or (transport is not None and transport.get_extra_info("ssl_object") is not None)
        with self.lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message, login, tls))
        return "250 Message accepted"


class Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()
        self.attempts = 0

    def __call__(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                 auth_data: Any) -> AuthResult:
        self.attempts += 1
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user, self.password)
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)


class SmtpServer:
    """``tls``: None, ``"starttls"`` (offered; required when ``require_tls``) or ``"implicit"``."""

    def __init__(self, folder: Path, *, tls: str | None = None, auth: tuple[str, str] | None = None,
                 refuse_rcpt: bool = False, require_tls: bool = False, port: int | None = None) -> None:
        self.recorder = Recorder(refuse_rcpt=refuse_rcpt)
        self.port = port or free_port()
        self.authenticator = Authenticator(*auth) if auth else None
        kwargs: dict[str, Any] = {}
        server_ssl: ssl.SSLContext | None = None
        if tls is not None:
            cert, key = make_certificate(folder)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            if tls == "starttls":
                kwargs.update(tls_context=context, require_starttls=require_tls)
            else:
                server_ssl = context
        if self.authenticator is not None:
            kwargs.update(authenticator=self.authenticator, auth_required=True,
                          auth_require_tls=tls is not None)
        self.controller = Controller(self.recorder, hostname="127.0.0.1", port=self.port,
                                     ssl_context=server_ssl, **kwargs)
        self.controller.start()

    @property
    def messages(self) -> list[Received]:
        with self.recorder.lock:
            return list(self.recorder.received)

    def wait_messages(self, count: int, timeout: float = 20.0) -> list[Received]:
        assert wait_for(lambda: len(self.messages) >= count, timeout), f"{len(self.messages)} of {count} messages"
        return self.messages

    def stop(self) -> None:
        self.controller.stop()


class SilentServer:
    """Accepts connections (the kernel's backlog) and never says a word: a hung SMTP server."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]

    def stop(self) -> None:
        self.sock.close()
