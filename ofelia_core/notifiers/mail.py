"""Ofelia's mail notifier: one message per finished run, with its stdout, stderr and JSON.

As Ofelia: subject ``[Execution {status}] Job {name} finished in {duration}`` (status
``successful``, ``failed`` or ``skipped``; the duration as Go prints it, ``1.5s``), an
HTML body naming the job, status, duration and command, the recipients from the
comma-separated ``email-to``, a ``%`` (or ``%s``) in ``email-from`` replaced by the host
name, ``smtp-tls-skip-verify``, and ``mail-only-on-error``. The mail is sent only when
``smtp-host`` and ``email-to`` are both set.

Where it differs (see docs/notifications.md): the JSON attachment is ``NAME_ID.json``
(Ofelia names it ``.stderr.json``); an empty stdout or stderr is not attached (some servers
reject empty attachments, as Ofelia's fork found); TLS follows ``smtp-tls``; a password is
never sent over an unencrypted connection to another host unless ``smtp-tls = none``; a
failed send is retried (``mail-retry-count``, ``mail-retry-delay``).

Registered on the ``ofelia`` entry-point group (``mail``); imports only ``ofelia_hookspecs``.
"""

from __future__ import annotations

import contextlib
import functools
import html
import ipaddress
import json
import re
import smtplib
import ssl
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email import encoders
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate, make_msgid
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.settings import format_duration, parse_duration
from ofelia_hookspecs.types import FAILED_STATES, RUN_STATES, KeySpec, Notice, NotifierContext, NotifierSpec

NAME = "mail"
TLS_MODES = ("auto", "none", "starttls", "implicit")
#: The port where ``smtp-tls = auto`` speaks TLS from the first byte (SMTPS).
IMPLICIT_TLS_PORT = 465

MAIL_KEYS: tuple[KeySpec, ...] = (
    KeySpec("smtp-host", description="SMTP server; mail is sent only when this and `email-to` are set."),
    KeySpec("smtp-port", "int", 25, description="SMTP port."),
    KeySpec("smtp-user", description="User name to log in with; no login when empty."),
    KeySpec("smtp-password", description="Password of `smtp-user`.", secret=True),
    KeySpec("smtp-tls-skip-verify", "bool", False, description="Do not verify the SMTP server's certificate."),
    KeySpec(
        "smtp-tls", default="auto", choices=TLS_MODES,
        description="`auto`: TLS from the start on port 465, else STARTTLS when the server offers it; "
        "`starttls`: STARTTLS or fail; `implicit`: TLS from the start; `none`: never TLS.",
    ),
    KeySpec("smtp-timeout", "duration", "30s", description="Time limit for each step of talking to the server."),
    KeySpec("email-to", "list", description="Recipients, comma-separated (or repeated)."),
    KeySpec("email-from", description="Sender; a `%` (or `%s`) becomes the host name; `ofelia@HOST` when empty."),
    KeySpec("mail-only-on-error", "bool", False, description="Mail only failed, timed-out or cancelled runs."),
    KeySpec("mail-retry-count", "int", 2, description="Retries of a mail that could not be sent."),
    KeySpec("mail-retry-delay", "duration", "30s", description="Pause before each retry."),
)

_UNSAFE_FILE_CHARS = re.compile(r"[^\w.@+=-]")


class MailError(Exception):
    """The mail was not sent; the message never holds the password."""


@dataclass(frozen=True)
class MailSettings:
    host: str
    port: int
    to: tuple[str, ...]
    sender: str
    user: str = ""
    password: str = ""
    tls: str = "auto"
    skip_verify: bool = False
    timeout: float = 30.0
    only_on_error: bool = False
    retry_count: int = 2
    retry_delay: float = 30.0


class MailNotifier:
    """One job's mail destination."""

    def __init__(self, settings: MailSettings) -> None:
        self.settings = settings
        self.name = NAME
        self.retry_count = settings.retry_count
        self.retry_delay = settings.retry_delay
        self.states = FAILED_STATES if settings.only_on_error else RUN_STATES

    def wants(self, notice: Notice) -> bool:
        return notice.state in self.states

    def send(self, notice: Notice) -> None:
        deliver(self.settings, compose(notice, self.settings))


# --- the message -----------------------------------------------------------------------


def status_word(notice: Notice) -> str:
    """Ofelia's words: ``skipped`` (skipped, missed), ``failed`` (failed, timed out, cancelled), else ``successful``."""
    if notice.skipped:
        return "skipped"
    return "failed" if notice.failed else "successful"


def subject(notice: Notice) -> str:
    return f"[Execution {status_word(notice)}] Job {notice.job_name} finished in {format_duration(notice.duration)}"


def sender(email_from: str, hostname: str) -> str:
    if not email_from:
        return f"ofelia@{hostname}"
    return email_from.replace("%s", hostname).replace("%", hostname)


def attachment_base(notice: Notice) -> str:
    """``NAME_ID`` as Ofelia names attachments, with characters unsafe in a file name replaced."""
    return f"{_UNSAFE_FILE_CHARS.sub('_', notice.job_name)}_{notice.run_id}"


def compose(notice: Notice, settings: MailSettings) -> Message:
    """The mail: multipart/mixed of the text and HTML bodies (multipart/alternative), then stdout,
    stderr (when not empty) and the run's JSON as attachments.

    Built with the ``email.mime`` classes (the compat32 policy): ``EmailMessage`` parses and
    refolds every header through its header registry, 5.9 ms of CPU per mail composed and
    flattened against 1.1 ms here, on the delivery worker that shares the GIL with the runs
    (bench/bench_notify.py). What is sent is the same MIME structure.
    """
    message = MIMEMultipart("mixed")
    message["Subject"] = _header(subject(notice))
    message["From"] = _header(sender(settings.sender, notice.hostname))
    message["To"] = _header(", ".join(settings.to))
    message["Date"] = formatdate(localtime=True)
    message["Message-ID"] = make_msgid(domain=notice.hostname or "localhost")  # no DNS lookup for the FQDN
    text, markup = _body(notice)
    bodies = MIMEMultipart("alternative")
    bodies.attach(MIMEText(text, "plain", "utf-8"))
    bodies.attach(MIMEText(markup, "html", "utf-8"))
    message.attach(bodies)
    base = attachment_base(notice)
    if notice.stdout:
        message.attach(_attachment(notice.stdout, "text", "plain", f"{base}.stdout.log"))
    if notice.stderr:
        message.attach(_attachment(notice.stderr, "text", "plain", f"{base}.stderr.log"))
    document = json.dumps(notice.document, indent=2, default=str) + "\n"
    message.attach(_attachment(document.encode(), "application", "json", f"{base}.json"))
    return message


def _header(value: str) -> Any:
    """A header value; non-ASCII text (a job name like ``café``) as a ``Header``, which the
    generator RFC 2047-encodes and folds correctly (a pre-encoded string gets folded before
    its first word, and readers then see a leading space)."""
    return value if value.isascii() else Header(value, "utf-8")


def _attachment(data: bytes, maintype: str, subtype: str, filename: str) -> MIMEBase:
    part = MIMEBase(maintype, subtype)
    part.set_payload(data)
    encoders.encode_base64(part)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    return part


def _body(notice: Notice) -> tuple[str, str]:
    command = _command(notice)
    status, duration = status_word(notice), format_duration(notice.duration)
    lines = [f"Job {notice.job_name}, Execution {status} in {duration}, command: {command}"]
    extra: list[str] = []
    if notice.error:
        extra.append(f"Error: {notice.error}")
    if notice.suppressed:
        extra.append(f"{notice.suppressed} earlier notification(s) of this job were suppressed by notify-cooldown.")
    text = "\n".join([*lines, *extra]) + "\n"
    markup = (
        f"<p>Job <b>{html.escape(notice.job_name)}</b>, Execution <b>{status}</b> in <b>{duration}</b>, "
        f"command: <pre>{html.escape(command)}</pre></p>\n"
        + "".join(f"<p>{html.escape(line)}</p>\n" for line in extra)
    )
    return text, markup


def _command(notice: Notice) -> str:
    job = notice.document.get("job")
    config = job.get("config") if isinstance(job, Mapping) else None
    command = config.get("command") if isinstance(config, Mapping) else None
    return "" if command is None else str(command)


# --- the delivery ----------------------------------------------------------------------


def deliver(settings: MailSettings, message: Message) -> None:
    """Send ``message``; raises :class:`MailError` or the ``smtplib``/socket error.

    The connection is kept for the next mail to the same server with the same settings (up to
    :data:`SESSION_IDLE` seconds idle): a new connection, EHLO, STARTTLS and login for every
    mail were most of a mail's cost with mail on every run (bench/bench_notify.py). A kept
    connection the server has closed meanwhile fails at its first command, before anything
    is sent, and the mail then goes over a new one.
    """
    key = _session_key(settings)
    client = _sessions.take(key)
    if client is not None:
        try:
            client.send_message(message)
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            _quietly_close(client)  # closed while idle: send it over a new connection below
        except BaseException:
            _quietly_close(client)
            raise
        else:
            _sessions.give(key, client)
            return
    client = _connect(settings)
    try:
        client.send_message(message)
    except BaseException:
        _quietly_close(client)
        raise
    _sessions.give(key, client)


def _connect(settings: MailSettings) -> smtplib.SMTP:
    """A connection ready to send: EHLO, STARTTLS as ``smtp-tls`` says, login."""
    implicit = settings.tls == "implicit" or (settings.tls == "auto" and settings.port == IMPLICIT_TLS_PORT)
    client: smtplib.SMTP
    if implicit:
        client = smtplib.SMTP_SSL(settings.host, settings.port, timeout=settings.timeout,
                                  context=_ssl_context(settings.skip_verify))
    else:
        client = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
    try:
        client.ehlo()
        encrypted = implicit
        if not implicit and settings.tls != "none":
            if client.has_extn("starttls"):
                client.starttls(context=_ssl_context(settings.skip_verify))
                client.ehlo()
                encrypted = True
            elif settings.tls == "starttls":
                raise MailError(f"{settings.host}:{settings.port} does not offer STARTTLS (smtp-tls = starttls)")
        if settings.user:
            if not encrypted and settings.tls != "none" and not _peer_is_loopback(client):
                raise MailError(
                    f"{settings.host}:{settings.port} offers no TLS; not sending the password in clear text "
                    "(set smtp-tls = none to allow it)"
                )
            client.login(settings.user, settings.password)
    except BaseException:
        _quietly_close(client)
        raise
    return client


#: Seconds a connection is kept open, idle, for the next mail (servers drop idle clients after
#: a few minutes; RFC 5321 asks them to wait at least 5).
SESSION_IDLE = 30.0

_SessionKey = tuple[str, int, str, str, str, bool, float]


def _session_key(settings: MailSettings) -> _SessionKey:
    return (settings.host, settings.port, settings.tls, settings.user, settings.password, settings.skip_verify,
            settings.timeout)


class _Sessions:
    """Open connections by server and settings, each with when it was last used; the delivery
    worker sends one mail at a time, and a connection is only ever used by whoever took it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[_SessionKey, tuple[smtplib.SMTP, float]] = {}

    def take(self, key: _SessionKey) -> smtplib.SMTP | None:
        with self._lock:
            entry = self._idle.pop(key, None)
        if entry is None:
            return None
        client, since = entry
        if time.monotonic() - since > SESSION_IDLE:
            _quietly_close(client)
            return None
        return client

    def give(self, key: _SessionKey, client: smtplib.SMTP) -> None:
        now = time.monotonic()
        with self._lock:
            stale = [k for k, (_, since) in self._idle.items() if now - since > SESSION_IDLE]
            closing = [self._idle.pop(k)[0] for k in stale]
            if key in self._idle:  # another one is kept already
                closing.append(client)
            else:
                self._idle[key] = (client, now)
        for old in closing:
            _quietly_close(old)

    def close_all(self) -> None:
        with self._lock:
            clients = [client for client, _ in self._idle.values()]
            self._idle.clear()
        for client in clients:
            _quietly_close(client)


_sessions = _Sessions()


def _quietly_close(client: smtplib.SMTP) -> None:
    try:
        client.quit()
    except Exception:  # the server went first, or never answered: only the socket is left to close
        with contextlib.suppress(Exception):
            client.close()


@functools.lru_cache(maxsize=2)
def _ssl_context(skip_verify: bool) -> ssl.SSLContext:
    """One context per verify mode for the process, built when TLS is first used: building one
    loads the system's CA certificates, milliseconds of CPU per mail (bench/bench_notify.py).
    A context is safe to share between threads; CA changes take effect at the next start."""
    context = ssl.create_default_context()
    if skip_verify:  # smtp-tls-skip-verify: the user's explicit choice, as in Ofelia
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _peer_is_loopback(client: smtplib.SMTP) -> bool:
    try:
        address = client.sock.getpeername()[0] if client.sock is not None else ""
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except (OSError, ValueError):
        return False


# --- settings -----------------------------------------------------------------------------


def recipients(value: Any) -> tuple[str, ...]:
    items: Iterable[Any] = value if isinstance(value, list | tuple) else [value]
    return tuple(part.strip() for item in items if item for part in str(item).split(",") if part.strip())


def settings_from(values: Mapping[str, Any]) -> MailSettings | None:
    """``None`` when mail is not configured (no ``smtp-host`` or no ``email-to``)."""
    host = str(values.get("smtp-host") or "").strip()
    to = recipients(values.get("email-to"))
    if not host or not to:
        return None
    raw_port = values.get("smtp-port")
    port = 25 if raw_port in (None, "") else int(raw_port)
    if not 0 < port < 65536:
        raise ValueError(f"smtp-port must be between 1 and 65535, got {port}")
    tls = str(values.get("smtp-tls") or "auto").strip().lower()
    if tls not in TLS_MODES:
        raise ValueError(f"smtp-tls must be one of {', '.join(TLS_MODES)}, got {tls!r}")
    return MailSettings(
        host=host,
        port=port,
        to=to,
        sender=str(values.get("email-from") or ""),
        user=str(values.get("smtp-user") or ""),
        password=str(values.get("smtp-password") or ""),
        tls=tls,
        skip_verify=bool(values.get("smtp-tls-skip-verify")),
        timeout=float(values.get("smtp-timeout") or 30.0),
        only_on_error=bool(values.get("mail-only-on-error")),
        retry_count=int(values.get("mail-retry-count") or 0),
        retry_delay=float(values.get("mail-retry-delay") or 0.0),
    )


def build(settings: Mapping[str, Any], context: NotifierContext) -> Sequence[MailNotifier]:
    mail = settings_from(settings)
    return [] if mail is None else [MailNotifier(mail)]


def check(settings: Mapping[str, Any]) -> list[str]:
    """Mail keys that are set but cannot send (an empty ``email-to`` alone turns mail off: no warning)."""
    host = str(settings.get("smtp-host") or "").strip()
    to = recipients(settings.get("email-to"))
    if host and to:
        return []
    defaults = {key.name: key.default for key in MAIL_KEYS}
    meaningful = [
        key.name for key in MAIL_KEYS
        if settings.get(key.name) not in (None, "", [], [""]) and not _is_default(key, settings.get(key.name), defaults)
    ]
    if not meaningful:
        return []
    missing = " and ".join(name for name, value in (("smtp-host", host), ("email-to", to)) if not value)
    return [f"{', '.join(meaningful)} set but {missing} not: no mail is sent"]


def _is_default(key: KeySpec, value: Any, defaults: Mapping[str, Any]) -> bool:
    default = defaults[key.name]
    if key.kind == "duration" and isinstance(value, float):
        return value == parse_duration(str(default))
    return bool(value == default)


@hookimpl
def ofelia_register_notifiers() -> list[NotifierSpec]:
    return [
        NotifierSpec(
            NAME, MAIL_KEYS, build,
            description="Mail each run's result with its output attached (Ofelia's mail middleware).",
            check=check,
        )
    ]
