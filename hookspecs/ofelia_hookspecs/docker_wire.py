"""Helpers every Docker client driver needs, whatever library moves its bytes.

The engine's answers mean the same thing to every driver: which HTTP status
and message is a missing object, a conflict, a registry failure or the
engine's own failure (:func:`error_for_status`); how its multiplexed output
stream is framed (:func:`demux_frames`); and how a long-lived stream is
closed from another thread (:class:`Stream`). Keeping them here means the
baseline and an optimized driver classify every failure identically, which
is what lets a circuit breaker count only the engine's failures.
"""

from __future__ import annotations

import contextlib
import re
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Generic, Protocol, TypeVar

from .errors import Conflict, DockerError, EngineUnavailable, NotFound, PullFailed
from .types import StreamChunk

T = TypeVar("T")

#: 5xx messages that say a registry could not be reached or refused the image.
REGISTRY_FAILURE = re.compile(
    r"registry|lookup \S+ on |no such host|server misbehaving|pull access denied|manifest unknown"
    r"|manifest for \S+ not found|repository does not exist|toomanyrequests|unauthorized: "
    r"|Get \"?https?://",
    re.IGNORECASE,
)
#: 5xx messages the engine gives for a bad request rather than its own failure.
REQUEST_FAILURE = re.compile(
    r"unable to find user|no matching entries in passwd|not a directory|is a directory|Cannot mkdir"
    r"|OCI runtime (create|exec|start) failed|executable file not found|not a swarm manager"
    r"|invalid (mount|volume|reference|argument|port|restart)|already (exists|in use)"
    r"|network \S+ not found",
    re.IGNORECASE,
)


def error_for_status(status: int, message: str, operation: str, *, pull: bool = False) -> DockerError:
    """The typed error for an engine answer with HTTP ``status`` and ``message``.

    404 is ``NotFound`` and 409 ``Conflict``; any failure of a pull, and a 5xx
    about a registry or DNS lookup, is ``PullFailed``; a 5xx the engine gives
    for a bad request (unknown user, bad working directory, missing
    executable, not a swarm manager) is a plain ``DockerError``; any other
    5xx is ``EngineUnavailable`` (an engine failure).
    """
    if pull:
        return PullFailed(f"image not found locally and pull failed: {message}", operation=operation,
                          status=status)
    if status == 404:
        return NotFound(message, operation=operation, status=status)
    if status == 409:
        return Conflict(message, operation=operation, status=status)
    if status >= 500:
        if REGISTRY_FAILURE.search(message):
            return PullFailed(f"image not found locally and pull failed: {message}", operation=operation,
                              status=status)
        if REQUEST_FAILURE.search(message):
            return DockerError(message, operation=operation, status=status)
        return EngineUnavailable(message, operation=operation, status=status)
    return DockerError(message, operation=operation, status=status)


class Readable(Protocol):
    def read(self, amt: int, /) -> bytes: ...


_STREAM_NAMES = {1: "stdout", 2: "stderr"}


def demux_frames(raw: Readable) -> Iterator[StreamChunk]:
    """Parse the engine's multiplexed stream: 8-byte headers (stream id, length) then data."""
    while True:
        header = raw.read(8)
        if len(header) < 8:
            return
        stream_id, length = struct.unpack(">BxxxL", header)
        if not length:
            continue
        data = raw.read(length)
        if not data:
            return
        yield _STREAM_NAMES.get(stream_id, "stdout"), data


class Stream(Generic[T]):
    """An iterator over a long-lived engine response that any thread may close.

    After ``close()`` iteration ends quietly; before it, a failure surfaces as
    the typed error ``translate(exc, operation)`` returns. ``closer`` must wake
    a thread blocked reading (shut the socket down, not just close it).
    """

    def __init__(
        self,
        operation: str,
        items: Iterator[T],
        closer: Callable[[], None],
        translate: Callable[[BaseException, str], DockerError],
    ) -> None:
        self._operation = operation
        self._items = items
        self._closer = closer
        self._translate = translate
        self._lock = threading.Lock()
        self._closed = False

    def __iter__(self) -> Stream[T]:
        return self

    def __next__(self) -> T:
        if self._closed:
            raise StopIteration
        try:
            return next(self._items)
        except StopIteration:
            self.close()
            raise
        except Exception as exc:
            if self._closed:
                raise StopIteration from None
            self.close()
            raise self._translate(exc, self._operation) from exc

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        # Best effort: the connection is dropped either way.
        with contextlib.suppress(Exception):
            self._closer()

    def __enter__(self) -> Stream[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


__all__ = ["REGISTRY_FAILURE", "REQUEST_FAILURE", "Stream", "demux_frames", "error_for_status"]
