"""The web keys of ``[global]`` (and ``--enable-web``, ``--web-address``), read once at start.

Every bad value is an :class:`~ofelia_core.errors.OfeliaError` naming its key,
so the daemon refuses to start with a clear message instead of running
without the web server the operator asked for.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config.values import to_bool, to_int
from ..errors import OfeliaError
from .password import check_hash

DEFAULT_WEB_ADDRESS = "127.0.0.1:8081"


@dataclass(frozen=True)
class Address:
    """Where a server listens. ``host`` is empty for every address (``:8081``)."""

    host: str
    port: int
    text: str

    @property
    def is_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:  # a host name other than localhost, or "" (every address)
            return False


def parse_address(text: str, key: str) -> Address:
    """``host:port``, ``:port`` (every address) or ``[v6]:port``; port 0 picks a free one."""
    raw = str(text).strip()
    example = "for example 127.0.0.1:8081, :8081 (every address) or [::1]:8081"
    host, sep, port_text = raw.rpartition(":")
    if not sep or not port_text:
        raise OfeliaError(f"{key} = {raw!r}: expected host:port, {example}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise OfeliaError(f"{key} = {raw!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise OfeliaError(f"{key} = {raw!r}: write an IPv6 address in brackets, {example}")
    if not (port_text.isascii() and port_text.isdigit()) or int(port_text) > 65535:
        raise OfeliaError(f"{key} = {raw!r}: the port must be a number from 0 to 65535")
    return Address(host, int(port_text), raw)


@dataclass(frozen=True)
class WebSettings:
    """What the web server and its authentication need; built by :meth:`from_values`."""

    enabled: bool = False
    address: Address = Address("127.0.0.1", 8081, DEFAULT_WEB_ADDRESS)
    auth_enabled: bool = False
    username: str = ""
    password_hash: str = ""
    #: Signs CSRF tokens (``web-secret-key``, else random bytes for this process).
    secret_key: bytes = b""
    token_expiry_hours: int = 24
    #: Failed logins per minute and client address before 429; 0 for no limit.
    max_login_attempts: int = 5
    metrics_token: str = ""
    metrics_address: Address | None = None

    @property
    def token_expiry_seconds(self) -> float:
        return self.token_expiry_hours * 3600.0

    @classmethod
    def from_values(
        cls, values: Mapping[str, Any], *, cli_enable: bool = False, cli_address: str | None = None
    ) -> WebSettings:
        """From ``[global]`` values; the command line's ``--enable-web``/``--web-address`` win."""
        enabled = cli_enable or _read(values, "enable-web", False, to_bool)
        address_text = (cli_address or "").strip() or str(values.get("web-address") or DEFAULT_WEB_ADDRESS)
        address_key = "--web-address" if (cli_address or "").strip() else "web-address"
        auth = _read(values, "web-auth-enabled", False, to_bool)
        username = str(values.get("web-username") or "")
        password_hash = str(values.get("web-password-hash") or "").strip()
        expiry = _read(values, "web-token-expiry", 24, to_int)
        if expiry < 1:
            raise OfeliaError(f"web-token-expiry = {expiry}: must be at least 1 (hours)")
        attempts = _read(values, "web-max-login-attempts", 5, to_int)
        if attempts < 0:
            raise OfeliaError(f"web-max-login-attempts = {attempts}: must be 0 (no limit) or more")
        if enabled and auth:
            missing = [k for k, v in (("web-username", username), ("web-password-hash", password_hash)) if not v]
            if missing:
                raise OfeliaError(
                    f"web-auth-enabled = true needs {' and '.join(missing)}; "
                    "make the hash with: ofelia hash-password"
                )
            check_hash(password_hash, "web-password-hash")
        secret = str(values.get("web-secret-key") or "")
        metrics_address = str(values.get("metrics-address") or "").strip()
        return cls(
            enabled=enabled,
            address=parse_address(address_text, address_key),
            auth_enabled=auth,
            username=username,
            password_hash=password_hash,
            secret_key=secret.encode() if secret else secrets.token_bytes(32),
            token_expiry_hours=expiry,
            max_login_attempts=attempts,
            metrics_token=str(values.get("metrics-token") or ""),
            metrics_address=parse_address(metrics_address, "metrics-address") if metrics_address else None,
        )


def _read(values: Mapping[str, Any], key: str, default: Any, convert: Any) -> Any:
    raw = values.get(key)
    if raw is None or raw == "":
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise OfeliaError(f"{key}: {exc}") from None
