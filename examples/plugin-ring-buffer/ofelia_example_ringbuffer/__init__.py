"""A buffer pool of reusable ring buffers: an example third-party ofelia driver."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.settings import parse_size
from ofelia_hookspecs.types import DriverContext

DEFAULT_MAX_SIZE = 10 * 1024 * 1024
class RingBuffer:
    """Grows up to ``capacity``, then overwrites its oldest bytes in place."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._data = bytearray()
        self._start = 0  # index of the oldest byte once the ring is full
        self._truncated = False

    def write(self, data: bytes) -> int:
        size = len(data)
        if len(self._data) + size <= self.capacity and not self._start:
            self._data += data
            return size
        view = memoryview(data)[-self.capacity:]
        if size > len(view) or len(self._data) + size > self.capacity:
            self._truncated = True
        if len(self._data) < self.capacity:  # fill the ring to capacity first
            room = self.capacity - len(self._data)
            head = view[:room]
            self._data += head
            view = view[len(head):]
        while len(view):
            chunk = view[: self.capacity - self._start]
            self._data[self._start:self._start + len(chunk)] = chunk
            self._start = (self._start + len(chunk)) % self.capacity
            view = view[len(chunk):]
        return size

    def getvalue(self) -> bytes:
        return bytes(self._data[self._start:] + self._data[: self._start])

    def __len__(self) -> int:
        return len(self._data)

    @property
    def truncated(self) -> bool:
        return self._truncated

    def clear(self) -> None:
        self._data = bytearray()
        self._start = 0
        self._truncated = False


class RingBufferPool:
    """Keeps up to ``idle_buffers`` cleared buffers for reuse."""

    def __init__(self, max_size: int = DEFAULT_MAX_SIZE, idle_buffers: int = 16) -> None:
        self.max_size = max_size
        self.idle_buffers = idle_buffers
        self._idle: list[RingBuffer] = []
        self._lock = threading.Lock()
        self._counts = {"gets": 0, "puts": 0, "hits": 0, "misses": 0}

    def get(self, job_name: str, stream: str) -> RingBuffer:
        with self._lock:
            self._counts["gets"] += 1
            if self._idle:
                self._counts["hits"] += 1
                return self._idle.pop()
            self._counts["misses"] += 1
        return RingBuffer(self.max_size)

    def put(self, buffer: Any) -> None:
        if not isinstance(buffer, RingBuffer):
            return
        buffer.clear()  # a run must never see another run's bytes
        with self._lock:
            self._counts["puts"] += 1
            if len(self._idle) < self.idle_buffers:
                self._idle.append(buffer)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"driver": "ring", "idle": len(self._idle), **self._counts}

    def close(self) -> None:
        with self._lock:
            self._idle.clear()


@hookimpl
def ofelia_make_buffer_pool(settings: Mapping[str, Any], context: DriverContext) -> RingBufferPool:
    idle = settings.get("idle-buffers", 16)
    if isinstance(idle, bool) or not str(idle).isdigit():
        raise ValueError(f"[buffer-pool] idle-buffers: {idle!r} is not a non-negative integer")
    try:
        max_size = parse_size(settings.get("max-size", DEFAULT_MAX_SIZE))
    except ValueError as exc:
        raise ValueError(f"[buffer-pool] max-size: {exc}") from exc
    return RingBufferPool(max_size, int(idle))
