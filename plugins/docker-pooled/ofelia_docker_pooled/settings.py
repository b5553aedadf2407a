"""Settings of the pooled driver: the ``[docker-client]`` section, then the environment.

Every key can also be set by an environment variable named
``OFELIA_DOCKER_CLIENT_`` + the key in upper case with underscores
(``max-concurrent-requests`` -> ``OFELIA_DOCKER_CLIENT_MAX_CONCURRENT_REQUESTS``);
the variable wins over the file, as everywhere in ofelia. The engine's
address, API version and TLS come from ``DOCKER_HOST``, ``DOCKER_API_VERSION``,
``DOCKER_TLS_VERIFY`` and ``DOCKER_CERT_PATH`` as with the ``docker`` CLI, and
``base-url``/``api-version`` in the section win over those.

Keys this driver does not know are ignored: they may belong to the baseline,
and a rollback must never make a valid config invalid.
"""

from __future__ import annotations

import math
import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ofelia_hookspecs.settings import DurationError, parse_duration

SECTION = "docker-client"
ENV_PREFIX = "OFELIA_DOCKER_CLIENT_"
DEFAULT_SOCKET = "/var/run/docker.sock"
#: The oldest API the request bodies here are written for.
MINIMUM_API_VERSION = (1, 24)


@dataclass(frozen=True)
class Endpoint:
    """Where the engine listens: a unix socket path, or a TCP host and port."""

    scheme: str  # "unix", "http" or "https"
    path: str = ""
    host: str = ""
    port: int = 0

    def describe(self) -> str:
        return f"unix://{self.path}" if self.scheme == "unix" else f"{self.scheme}://{self.host}:{self.port}"


@dataclass(frozen=True)
class PooledSettings:
    """Validated settings with the seed's defaults."""

    endpoint: Endpoint
    api_version: str = "auto"
    tls: ssl.SSLContext | None = None
    #: Read timeout of a control call (seconds). Streams have none.
    timeout: float = 60.0
    #: Time to open a connection (seconds); a refused or silent engine fails fast.
    connect_timeout: float = 10.0
    #: Go's MaxIdleConns: idle connections kept across both pools.
    max_idle_conns: int = 100
    #: Go's MaxIdleConnsPerHost: idle connections kept by each pool.
    max_idle_conns_per_host: int = 50
    #: Go's MaxConnsPerHost: control connections open at once (streams have their own).
    max_conns_per_host: int = 100
    #: Go's IdleConnTimeout: an idle connection older than this is closed, not reused.
    idle_conn_timeout: float = 90.0
    #: Requests in flight at once (control calls and stream openings, not stream bodies).
    max_concurrent_requests: int = 200
    #: How long a call waits for a request slot or a connection before failing.
    request_queue_timeout: float = 60.0
    #: How long a new stream keeps its request slot while waiting for its first bytes.
    stream_slot_hold: float = 10.0
    #: Consecutive engine failures that open the circuit.
    breaker_failure_threshold: int = 10
    #: How long the circuit stays open before it lets trial calls through.
    breaker_open_timeout: float = 30.0
    #: Trial calls let through at once while half-open.
    breaker_half_open_max_calls: int = 1


#: key -> (field, kind); kinds: int (>= 1), duration (> 0).
KEYS: dict[str, tuple[str, str]] = {
    "timeout": ("timeout", "duration"),
    "connect-timeout": ("connect_timeout", "duration"),
    "max-idle-conns": ("max_idle_conns", "count"),
    "max-idle-conns-per-host": ("max_idle_conns_per_host", "count"),
    "max-conns-per-host": ("max_conns_per_host", "count"),
    "idle-conn-timeout": ("idle_conn_timeout", "duration"),
    "max-concurrent-requests": ("max_concurrent_requests", "count"),
    "request-queue-timeout": ("request_queue_timeout", "duration"),
    "stream-slot-hold": ("stream_slot_hold", "duration"),
    "breaker-failure-threshold": ("breaker_failure_threshold", "count"),
    "breaker-open-timeout": ("breaker_open_timeout", "duration"),
    "breaker-half-open-max-calls": ("breaker_half_open_max_calls", "count"),
}


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


def _lookup(settings: Mapping[str, Any], env: Mapping[str, str], key: str) -> tuple[Any, str] | None:
    """The value for ``key`` and where it came from; the environment wins over the file."""
    variable = env_name(key)
    if env.get(variable, "").strip():
        return env[variable], variable
    for name, value in settings.items():
        # Keys arrive lower-cased with dashes; accept underscores too (YAML authors type them).
        if str(name).strip().lower().replace("_", "-") == key:
            return value, f"[{SECTION}] {key}"
    return None


def _count(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"{where}: expected a whole number, got {value!r}")
    if number < 1:
        raise ValueError(f"{where}: must be at least 1, got {value!r}")
    return number


def _seconds(value: Any, where: str) -> float:
    """A number of seconds, or a Go duration such as ``90s`` or ``1m30s``."""
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a duration such as 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text) if re.fullmatch(r"\d+(\.\d*)?|\.\d+", text) else parse_duration(text)
        except DurationError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{where}: must be a positive duration, got {value!r}")
    return seconds


def parse_endpoint(value: str, where: str, *, tls: bool) -> Endpoint:
    """``unix:///path``, ``tcp://host:port``, ``http://``/``https://host:port``."""
    text = value.strip()
    if text.startswith("/"):
        text = "unix://" + text
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "unix":
        path = parts.path or (parts.netloc and "/" + parts.netloc)
        if not path:
            raise ValueError(f"{where}: {value!r} names no socket path (write unix:///var/run/docker.sock)")
        return Endpoint("unix", path=path)
    if scheme in ("tcp", "http", "https"):
        if not parts.hostname:
            raise ValueError(f"{where}: {value!r} names no host (write tcp://host:2376)")
        secure = scheme == "https" or (scheme == "tcp" and tls)
        try:
            port = parts.port or (2376 if secure else 2375)
        except ValueError:
            raise ValueError(f"{where}: {value!r} has an invalid port") from None
        return Endpoint("https" if secure else "http", host=parts.hostname, port=port)
    raise ValueError(
        f"{where}: {value!r} is not a Docker engine address this driver speaks "
        "(unix://, tcp://, http:// or https://)"
    )


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    """As the docker CLI: DOCKER_TLS_VERIFY set (not 0) verifies the engine with
    DOCKER_CERT_PATH's ca.pem and presents cert.pem/key.pem."""
    verify = env.get("DOCKER_TLS_VERIFY", "").strip()
    if not verify or verify == "0":
        return None
    cert_path = Path(env.get("DOCKER_CERT_PATH", "").strip() or Path.home() / ".docker")
    files = {name: cert_path / name for name in ("ca.pem", "cert.pem", "key.pem")}
    missing = [str(path) for path in files.values() if not path.is_file()]
    if missing:
        raise ValueError(f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: missing {', '.join(missing)}")
    try:
        context = ssl.create_default_context(cafile=str(files["ca.pem"]))
        context.load_cert_chain(str(files["cert.pem"]), str(files["key.pem"]))
    except (ssl.SSLError, OSError) as exc:
        raise ValueError(f"DOCKER_TLS_VERIFY/DOCKER_CERT_PATH: cannot load {cert_path}: {exc}") from exc
    return context


def _api_version(value: Any, where: str) -> str:
    text = str(value).strip()
    if text.lower() == "auto":
        return "auto"
    match = re.fullmatch(r"v?(\d+)\.(\d+)", text)
    if not match:
        raise ValueError(f"{where}: {value!r} is not an API version: use 'auto' or a version such as 1.41")
    if (int(match[1]), int(match[2])) < MINIMUM_API_VERSION:
        raise ValueError(f"{where}: API version {text} is too old; this driver needs 1.24 or later")
    return f"{int(match[1])}.{int(match[2])}"


def parse_settings(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> PooledSettings:
    """Validate the section and the environment; a ``ValueError`` names the key and its source."""
    env = os.environ if environ is None else environ
    tls = _tls_context(env)

    endpoint = Endpoint("unix", path=DEFAULT_SOCKET)
    if env.get("DOCKER_HOST", "").strip():
        endpoint = parse_endpoint(env["DOCKER_HOST"], "DOCKER_HOST", tls=tls is not None)
    found = _lookup(settings, {}, "base-url")
    if found is not None:
        if not isinstance(found[0], str) or not found[0].strip():
            raise ValueError(f"{found[1]}: must be an address such as unix:///var/run/docker.sock")
        endpoint = parse_endpoint(found[0], found[1], tls=tls is not None)
    if endpoint.scheme == "https" and tls is None:
        tls = ssl.create_default_context()

    api_version = "auto"
    if env.get("DOCKER_API_VERSION", "").strip():
        api_version = _api_version(env["DOCKER_API_VERSION"], "DOCKER_API_VERSION")
    found = _lookup(settings, {}, "api-version")
    if found is not None:
        api_version = _api_version(*found)

    values: dict[str, Any] = {}
    for key, (field_name, kind) in KEYS.items():
        found = _lookup(settings, env, key)
        if found is not None:
            values[field_name] = _count(*found) if kind == "count" else _seconds(*found)
    return PooledSettings(endpoint=endpoint, api_version=api_version, tls=tls, **values)


__all__ = ["ENV_PREFIX", "KEYS", "SECTION", "Endpoint", "PooledSettings", "env_name", "parse_endpoint",
           "parse_settings"]
