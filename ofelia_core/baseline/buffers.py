"""The baseline buffer pool driver (entry point ``ofelia.buffer_pool: baseline``).

Every stream of every run gets a fresh growable buffer, capped at
``max-size`` bytes and keeping the newest bytes past the cap; a returned
buffer is simply dropped, so nothing is shared between runs. The optimized
``tiered`` driver (``ofelia-buffers-tiered``) reuses buffers in size tiers.

Settings, section ``[buffer-pool]``:

``max-size``
    Bytes kept per stream (default 10 MiB): an integer, or a size such as
    ``512KiB``, ``10MiB``, ``1.5GiB``. ``K``/``M``/``G`` and ``KiB``/``MiB``/``GiB``
    are powers of 1024, ``KB``/``MB``/``GB`` powers of 1000.

Other keys are ignored: they may belong to another driver of this concern,
and a rollback must never make a valid config invalid.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.protocols import OutputBuffer
from ofelia_hookspecs.settings import parse_size
from ofelia_hookspecs.types import DriverContext

SECTION = "buffer-pool"
DEFAULT_MAX_SIZE = 10 * 1024 * 1024

class GrowableBuffer:
    """Output of one stream of one run, keeping the newest ``max_size`` bytes.

    Past the cap the bytearray may grow to twice ``max_size`` before the
    oldest bytes are cut, so each write costs O(len(data)) amortised rather
    than O(max_size); ``getvalue`` and ``len`` still show exactly the newest
    ``max_size`` bytes. A buffer is written by the one thread that reads its
    stream; ``getvalue`` never takes a view of the bytearray, so reading it
    from another thread cannot block a write.
    """

    __slots__ = ("_buf", "_max_size", "_truncated")

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least one byte, got {max_size!r}")
        self._buf = bytearray()
        self._max_size = max_size
        self._truncated = False

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def truncated(self) -> bool:
        return self._truncated

    def write(self, data: bytes) -> int:
        size = len(data)
        cap = self._max_size
        if size >= cap:
            # Only the tail of this chunk survives: skip copying the rest.
            if size > cap or self._buf:
                self._truncated = True
            self._buf = bytearray(memoryview(data)[size - cap :])
            return size
        buf = self._buf
        buf += data
        held = len(buf)
        if held > cap:
            self._truncated = True
            if held > 2 * cap:
                del buf[: held - cap]
        return size

    def getvalue(self) -> bytes:
        buf = self._buf
        excess = len(buf) - self._max_size
        return bytes(buf[excess:]) if excess > 0 else bytes(buf)

    def __len__(self) -> int:
        return min(len(self._buf), self._max_size)

    def __repr__(self) -> str:
        return f"GrowableBuffer(len={len(self)}, max_size={self._max_size}, truncated={self._truncated})"


class FreshBufferPool:
    """Hands out a new :class:`GrowableBuffer` per stream per run and drops returned ones.

    Nothing is reused, so one run's output can never show in another's; the
    memory of a buffer goes back to the allocator once the caller lets go of it.
    """

    def __init__(self, *, max_size: int = DEFAULT_MAX_SIZE) -> None:
        if max_size < 1:
            raise ValueError(f"[{SECTION}] max-size must be at least one byte, got {max_size!r}")
        self._max_size = max_size
        # Counters are read-modify-write from many job threads; the lock keeps them exact.
        self._lock = threading.Lock()
        self._gets = 0
        self._puts = 0
        self._bytes_returned = 0

    @property
    def max_size(self) -> int:
        return self._max_size

    def get(self, job_name: str, stream: str) -> GrowableBuffer:
        buffer = GrowableBuffer(self._max_size)
        with self._lock:
            self._gets += 1
        return buffer

    def put(self, buffer: OutputBuffer) -> None:
        size = len(buffer)
        with self._lock:
            self._puts += 1
            self._bytes_returned += size

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "driver": "baseline",
                "max_size": self._max_size,
                "gets": self._gets,
                "puts": self._puts,
                "outstanding": self._gets - self._puts,
                "bytes_returned": self._bytes_returned,
            }

    def close(self) -> None:
        """The pool holds no buffers, so there is nothing to drop."""


def parse_max_size(settings: Mapping[str, Any]) -> int:
    """``max-size`` from the ``[buffer-pool]`` section, with the section and key in any error."""
    value = settings.get("max-size", DEFAULT_MAX_SIZE)
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"[{SECTION}] max-size: {exc}") from None


@hookimpl
def ofelia_make_buffer_pool(settings: Mapping[str, Any], context: DriverContext) -> FreshBufferPool:
    """Build the baseline buffer pool from the ``[buffer-pool]`` section."""
    return FreshBufferPool(max_size=parse_max_size(settings))
