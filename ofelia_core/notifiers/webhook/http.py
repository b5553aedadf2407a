"""One HTTP POST to a notification destination, with the destination checked first.

- **Allowed hosts** (``[global] webhook-allowed-hosts``): the host name is resolved
  once, every address is checked, and the connection goes to a checked address
  (the name is still sent as ``Host`` and for TLS), so a DNS answer that changes
  between the check and the connection cannot reach a refused address.
  Unset: any host except link-local addresses (``169.254.0.0/16``, ``fe80::/10``)
  and the cloud metadata addresses, which no notification service uses and which
  hand out credentials to whoever asks. ``*``: any host at all. A list: only hosts
  it names (``hooks.slack.com``, ``*.example.com``, ``10.0.0.5``, ``10.0.0.0/8``);
  a link-local or metadata address must then be listed by address.
- **No redirects** are followed (a redirect could leave the allowed hosts) and
  ``HTTP(S)_PROXY`` is not used.
- **Secrets stay out of errors**: the URL's path and query carry tokens (Slack,
  Discord, healthchecks), so errors show ``scheme://host:port/…`` only, and any
  configured secret found in a message (a server echoing the request) is replaced.
"""

from __future__ import annotations

import functools
import http.client
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: Refused unless listed by address: link-local (where cloud metadata services live)
#: and the metadata addresses outside it (AWS IPv6, Alibaba).
DENIED_BY_DEFAULT: tuple[IPNetwork, ...] = (
    ipaddress.ip_network("169.254.0.0/16"),
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),
    ipaddress.ip_network("100.100.100.200/32"),
)
#: Response bytes read (for the error message); the rest is discarded.
MAX_RESPONSE = 64 * 1024
REDACTED = "<redacted>"
USER_AGENT = "ofelia-notifier"


class DeliveryError(Exception):
    """A request that did not deliver; the message holds no secret."""


class HostRefused(DeliveryError):
    """The destination is not allowed by ``webhook-allowed-hosts``."""


# --- allowed hosts -------------------------------------------------------------------


@dataclass(frozen=True)
class HostPolicy:
    """Which destinations notifications may reach (see the module docstring)."""

    any_host: bool = False
    #: True when a list was given; False for the default (anything but link-local).
    restricted: bool = False
    names: frozenset[str] = frozenset()
    #: ``*.example.com`` kept as ``.example.com``.
    suffixes: tuple[str, ...] = ()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, value: Any) -> HostPolicy:
        """From the setting's value: unset or empty, ``*``, or a comma/space list. Raises ValueError."""
        items = _items(value)
        if not items:
            return cls()
        if "*" in items:
            if len(items) > 1:
                raise ValueError("'*' allows every host; give it alone or list hosts without it")
            return cls(any_host=True)
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for item in items:
            text = item.lower().rstrip(".")
            if text.startswith("[") and text.endswith("]"):
                text = text[1:-1]
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
                continue
            except ValueError:
                pass
            if text.startswith("*."):
                rest = text[2:]
                _check_name(item, rest)
                suffixes.append("." + rest)
            else:
                _check_name(item, text)
                names.add(text)
        return cls(restricted=True, names=frozenset(names), suffixes=tuple(suffixes), networks=tuple(networks))

    def check(self, host: str, addresses: Sequence[IPAddress]) -> None:
        """Raise :class:`HostRefused` unless ``host``, resolved to ``addresses``, may be reached."""
        if self.any_host:
            return
        name = host.lower().rstrip(".")
        for address in addresses:
            if _in(address, DENIED_BY_DEFAULT) and not _in(address, self.networks):
                raise HostRefused(
                    f"host {host} resolves to {address}, a link-local or cloud metadata address; "
                    "list that address in webhook-allowed-hosts to allow it"
                )
        if not self.restricted:
            return
        if name in self.names or any(name.endswith(suffix) for suffix in self.suffixes):
            return
        if addresses and self.networks and all(_in(address, self.networks) for address in addresses):
            return
        raise HostRefused(f"host {host} is not in webhook-allowed-hosts")


def _items(value: Any) -> list[str]:
    if value is None:
        return []
    raw = value if isinstance(value, list | tuple) else [value]
    return [part for item in raw for part in str(item).replace(",", " ").split() if part]


def _check_name(item: str, name: str) -> None:
    if not name or any(c in name for c in "/:@?#*") or name.startswith("."):
        raise ValueError(
            f"{item!r} is not a host name, '*.domain', IP address or network "
            "(write hooks.slack.com, not https://hooks.slack.com/...)"
        )


def _in(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
    return any(address in network or (mapped is not None and mapped in network) for network in networks)


# --- URLs ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str
    port: int
    #: Path and query, as sent in the request line.
    path: str

    @property
    def display(self) -> str:
        """The URL without its path and query (which may carry tokens)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        port = "" if self.port == default else f":{self.port}"
        return f"{self.scheme}://{host}{port}/…"


def parse_target(url: str) -> Target:
    """Raise ValueError (without the URL in the message) for anything but an http(s) URL with a host."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"must be an http:// or https:// URL (got scheme {scheme or 'none'!r})")
    if not parts.hostname:
        raise ValueError("has no host")
    if parts.username or parts.password:
        raise ValueError("must not carry a user name or password (use the preset's secret)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    if any(c in path for c in " \r\n"):
        raise ValueError("contains spaces or line breaks; percent-encode them")
    return Target(scheme, parts.hostname, port or (443 if scheme == "https" else 80), path)


def redact_url(url: str) -> str:
    """``scheme://host:port/…`` for messages; ``<redacted>`` when it does not parse."""
    try:
        return parse_target(url).display
    except ValueError:
        return REDACTED


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (3 characters or more) replaced."""
    for secret in sorted((s for s in secrets if s and len(s) >= 3), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


# --- the request ---------------------------------------------------------------------


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes


def post(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout: float,
    policy: HostPolicy,
    secrets: Sequence[str] = (),
    method: str = "POST",
) -> Response:
    """Send one request; return the 2xx response or raise :class:`DeliveryError`.

    ``timeout`` bounds the whole request (resolution, connection, sending and the
    response), not each step. ``secrets`` are scrubbed from every message.
    """
    try:
        target = parse_target(url)
    except ValueError as exc:
        raise DeliveryError(f"the URL {exc}") from None
    hidden = [url, *secrets, *_url_parts(target)]
    deadline = time.monotonic() + timeout
    try:
        addresses = _resolve(target)
        policy.check(target.host, [address for address, _ in addresses])
        return _exchange(target, addresses, method, body, headers, deadline)
    except DeliveryError as exc:
        raise type(exc)(scrub(f"{target.display}: {exc}", hidden)) from None
    except TimeoutError:
        raise DeliveryError(f"{target.display}: no answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
        detail = scrub(str(exc) or type(exc).__name__, hidden)
        raise DeliveryError(f"{target.display}: {detail}") from None


def _url_parts(target: Target) -> list[str]:
    """What a server echoing the request could show of the URL's secret parts: the path,
    the query and every long path segment or query value (tokens, uuids, topics)."""
    path, _, query = target.path.partition("?")
    parts = [target.path, path, query]
    parts += [piece for piece in re.split(r"[/?&=]", target.path) if len(piece) >= 10]
    return [part for part in parts if len(part) > 1]


def _resolve(target: Target) -> list[tuple[IPAddress, tuple[Any, ...]]]:
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise DeliveryError(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    found: list[tuple[IPAddress, tuple[Any, ...]]] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(str(sockaddr[0]).split("%")[0])
        if all(address != seen for seen, _ in found):
            found.append((address, tuple(sockaddr)))
    if not found:
        raise DeliveryError(f"{target.host} has no IP address")
    return found


@functools.lru_cache(maxsize=1)
def tls_context() -> ssl.SSLContext:
    """One context for the process, built at the first https request: building one loads the
    system's CA certificates, about 40 ms of CPU, which per request capped a notifier at
    25 posts a second. A context is safe to share between threads."""
    return ssl.create_default_context()


def _exchange(
    target: Target,
    addresses: list[tuple[IPAddress, tuple[Any, ...]]],
    method: str,
    body: bytes,
    headers: Mapping[str, str],
    deadline: float,
) -> Response:
    def remaining() -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def connect_checked(_address: Any, timeout: Any = None, source_address: Any = None) -> socket.socket:
        # Replaces http.client's own resolution: only the checked addresses are tried.
        last: OSError | None = None
        for address, sockaddr in addresses:
            family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                sock.settimeout(remaining())
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(sockaddr)
                return sock
            except OSError as exc:
                sock.close()
                last = exc
        assert last is not None
        raise last

    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(
            target.host, target.port, timeout=remaining(), context=tls_context()
        )
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=remaining())
    setattr(connection, "_create_connection", connect_checked)  # noqa: B010 (private hook, no public one)
    try:
        all_headers = {"User-Agent": USER_AGENT, **headers}
        connection.connect()
        assert connection.sock is not None
        connection.sock.settimeout(remaining())
        connection.request(method, target.path, body=body, headers=all_headers)
        connection.sock.settimeout(remaining())
        response = connection.getresponse()  # may hand the socket to the response; its timeout stays
        data = response.read(MAX_RESPONSE)
    finally:
        connection.close()
    if 200 <= response.status < 300:
        return Response(response.status, data)
    if 300 <= response.status < 400:
        raise DeliveryError(f"HTTP {response.status} {response.reason}: redirects are not followed")
    snippet = data[:200].decode("utf-8", "replace").strip()
    raise DeliveryError(f"HTTP {response.status} {response.reason}" + (f": {snippet}" if snippet else ""))
