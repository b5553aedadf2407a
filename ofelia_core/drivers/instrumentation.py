"""The one thin instrumentation layer the core puts around every chosen driver.

Whichever driver runs (the baseline, the optimized one, a third party's),
the core measures it the same way, so a rollback keeps the numbers that
compare them. :func:`instrument` returns a proxy that satisfies the same
Protocol as the driver. Each *operation* of the Protocol (every public
method except ``stats`` and ``close``) is timed, its errors are counted by
exception type, and each call is reported to
``MetricsRecorder.observe_operation(concern, operation, seconds, error)``.

* Operations whose Protocol return type is an iterator (the Docker client's
  ``exec_start``, ``container_logs``, ``service_logs`` and ``events``) are
  timed up to the call that opens the stream. The stream itself passes
  through chunk by chunk, never buffered; when it ends (exhausted, failed or
  closed) one more observation is reported as operation ``"<op>.stream"``
  with the seconds since it opened and the error type, if iterating raised.
  A driver written as a generator function does its work on the first
  ``next``, so its failures show under ``"<op>.stream"``.
* For the buffer pool, the size of each buffer handed back to ``put`` is
  read just before the driver sees it, added to ``stats()["returned_bytes"]``
  and reported as the gauge :data:`RETURNED_BYTES_GAUGE`.
* Buffers returned by ``get`` are the driver's own objects: writes are the
  hot path and are not wrapped.
* The metrics recorder is not instrumented (it is the observer). A recorder
  that raises never changes an operation's outcome: the failure is counted
  (``stats()["observer_errors"]``) and logged once.

Thread safety: each operation's figures are guarded by their own lock, held
only for a few additions, so concurrent calls of different operations never
contend and the counts stay exact even without a GIL.
"""

from __future__ import annotations

import collections.abc
import functools
import threading
import time
import typing
from collections.abc import Callable
from typing import Any, TypeVar, cast

from loguru import logger
from ofelia_hookspecs.protocols import BufferPool, MetricsRecorder

from .loading import PROTOCOLS

T = TypeVar("T")

#: Protocol methods that manage the driver rather than being operations of it.
NOT_OPERATIONS = frozenset({"stats", "close"})
#: Gauge set to the size in bytes of each buffer returned to the pool.
RETURNED_BYTES_GAUGE = "buffer_pool_returned_bytes"
STREAM_SUFFIX = ".stream"

_STREAM_ORIGINS = (collections.abc.Iterator, collections.abc.Generator, collections.abc.Iterable)


@functools.cache
def protocol_operations(protocol: type) -> tuple[tuple[str, bool], ...]:
    """``(name, returns_stream)`` for each operation of ``protocol``, in definition order.

    An operation is a public method other than ``stats`` and ``close``; it
    returns a stream when its annotated return type is an iterator.
    """
    operations: dict[str, bool] = {}
    for klass in reversed(protocol.__mro__):
        if klass is object or klass is typing.Protocol or klass is typing.Generic:
            continue
        for name, member in vars(klass).items():
            if name.startswith("_") or name in NOT_OPERATIONS or not callable(member):
                continue
            operations[name] = _returns_stream(member)
    return tuple(operations.items())


def _returns_stream(function: Callable[..., Any]) -> bool:
    try:
        hint = typing.get_type_hints(function).get("return")
    except Exception:
        # Unresolvable annotations: fall back to reading the annotation's text.
        text = str(getattr(function, "__annotations__", {}).get("return", ""))
        return text.startswith(("Iterator", "Generator", "Iterable", "collections.abc.Iterator"))
    return typing.get_origin(hint) in _STREAM_ORIGINS or hint in _STREAM_ORIGINS


class _OperationFigures:
    """Calls, errors and latency of one operation, under its own lock."""

    __slots__ = ("calls", "errors", "lock", "max_seconds", "total_seconds")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0
        self.errors = 0
        self.total_seconds = 0.0
        self.max_seconds = 0.0

    def add(self, seconds: float, failed: bool) -> None:
        with self.lock:
            self.calls += 1
            if failed:
                self.errors += 1
            self.total_seconds += seconds
            if seconds > self.max_seconds:
                self.max_seconds = seconds

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "calls": self.calls,
                "errors": self.errors,
                "total_seconds": self.total_seconds,
                "max_seconds": self.max_seconds,
            }


class _SizeFigures:
    """Count, total and largest size of the buffers handed back to the pool."""

    __slots__ = ("count", "lock", "max", "total")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0
        self.total = 0
        self.max = 0

    def add(self, size: int) -> None:
        with self.lock:
            self.count += 1
            self.total += size
            if size > self.max:
                self.max = size

    def snapshot(self) -> dict[str, int]:
        with self.lock:
            return {"count": self.count, "total": self.total, "max": self.max}


class _ObservedStream:
    """Passes a driver's stream through and reports once when it ends.

    ``close`` goes straight to the driver's stream (not through a generator),
    so another thread can still close a stream that is blocked in ``next``,
    as the Docker client's ``events`` requires.
    """

    __slots__ = ("_done", "_iterator", "_lock", "_on_end", "_stream")

    def __init__(self, stream: Any, on_end: Callable[[str | None], None]) -> None:
        self._stream = stream
        self._iterator = iter(stream)
        self._on_end = on_end
        self._done = False
        self._lock = threading.Lock()

    def __iter__(self) -> _ObservedStream:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            self._end(None)
            raise
        except Exception as exc:
            self._end(type(exc).__name__)
            raise

    def close(self) -> None:
        # Closing is how a consumer stops early: not an error, even if the
        # driver's stream then raises in the thread that was reading it.
        self._end(None)
        close = getattr(self._stream, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> _ObservedStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_stream"), name)

    def _end(self, error: str | None) -> None:
        with self._lock:
            if self._done:
                return
            self._done = True
        self._on_end(error)


class InstrumentedDriver:
    """A proxy around one driver; build it with :func:`instrument`.

    The Protocol's operations are wrapped once, here, and stored as instance
    attributes, so a call never goes through ``__getattr__``; anything else
    is looked up on the driver. ``__wrapped__`` is the driver itself.
    """

    def __init__(
        self,
        concern: str,
        driver: Any,
        metrics: MetricsRecorder,
        clock: Callable[[], float],
        protocol: type,
    ) -> None:
        self.__wrapped__ = driver
        self._instr_concern = concern
        self._instr_metrics = metrics
        self._instr_clock = clock
        self._instr_figures: dict[str, _OperationFigures] = {}
        self._instr_observer_errors = 0
        self._instr_observer_lock = threading.Lock()
        self._instr_returned = _SizeFigures() if protocol is BufferPool else None
        for name, streams in protocol_operations(protocol):
            target = getattr(driver, name, None)
            if not callable(target):
                raise TypeError(
                    f"{type(driver).__qualname__} has no operation '{name}' of the "
                    f"{protocol.__name__} protocol, so it cannot be instrumented"
                )
            if streams:
                wrapped = self._wrap_stream(name, target)
            elif name == "put" and self._instr_returned is not None:
                wrapped = self._wrap_put(self._wrap_call(name, target), self._instr_returned)
            else:
                wrapped = self._wrap_call(name, target)
            functools.update_wrapper(wrapped, target)
            setattr(self, name, wrapped)

    # -- the Protocol's management methods ----------------------------------

    def stats(self) -> dict[str, Any]:
        figures: dict[str, Any] = {
            "driver": self.__wrapped__.stats(),
            "operations": {name: f.snapshot() for name, f in self._instr_figures.items()},
            "observer_errors": self._instr_observer_errors,
        }
        if self._instr_returned is not None:
            figures["returned_bytes"] = self._instr_returned.snapshot()
        return figures

    def close(self) -> None:
        self.__wrapped__.close()

    def __getattr__(self, name: str) -> Any:
        # Only reached for names the proxy lacks: the driver's own extras.
        if name == "__wrapped__":
            raise AttributeError(name)
        return getattr(self.__wrapped__, name)

    def __repr__(self) -> str:
        return f"<instrumented {self._instr_concern} driver {self.__wrapped__!r}>"

    # -- wrappers, built once per operation ---------------------------------

    def _figures(self, name: str) -> _OperationFigures:
        return self._instr_figures.setdefault(name, _OperationFigures())

    def _observer(self) -> Callable[[str, float, str | None], None]:
        """``report(operation, seconds, error)``, which never raises."""
        concern = self._instr_concern
        observe = self._instr_metrics.observe_operation

        def report(operation: str, seconds: float, error: str | None) -> None:
            try:
                observe(concern, operation, seconds, error)
            except Exception:
                self._observer_failed(operation)

        return report

    def _observer_failed(self, operation: str) -> None:
        with self._instr_observer_lock:
            self._instr_observer_errors += 1
            first = self._instr_observer_errors == 1
        if first:
            logger.opt(exception=True).warning(
                "metrics recorder failed to observe {}.{}; further failures are only counted",
                self._instr_concern,
                operation,
            )

    def _wrap_call(self, name: str, target: Callable[..., Any]) -> Callable[..., Any]:
        # The hot path: the figures' update and the recorder call are inlined
        # (no helper calls), as this runs on every token check and Docker call.
        clock = self._instr_clock
        figures = self._figures(name)
        lock = figures.lock
        concern = self._instr_concern
        observe = self._instr_metrics.observe_operation
        observer_failed = self._observer_failed

        def call(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                result = target(*args, **kwargs)
            except Exception as exc:
                seconds = clock() - start
                error: str | None = type(exc).__name__
                with lock:
                    figures.calls += 1
                    figures.errors += 1
                    figures.total_seconds += seconds
                    if seconds > figures.max_seconds:
                        figures.max_seconds = seconds
                try:
                    observe(concern, name, seconds, error)
                except Exception:
                    observer_failed(name)
                raise
            seconds = clock() - start
            with lock:
                figures.calls += 1
                figures.total_seconds += seconds
                if seconds > figures.max_seconds:
                    figures.max_seconds = seconds
            try:
                observe(concern, name, seconds, None)
            except Exception:
                observer_failed(name)
            return result

        return call

    def _wrap_stream(self, name: str, target: Callable[..., Any]) -> Callable[..., Any]:
        clock = self._instr_clock
        opened = self._wrap_call(name, target)
        stream_name = name + STREAM_SUFFIX
        stream_figures = self._figures(stream_name)
        report = self._observer()

        def call(*args: Any, **kwargs: Any) -> Any:
            stream = opened(*args, **kwargs)
            start = clock()

            def on_end(error: str | None) -> None:
                seconds = clock() - start
                stream_figures.add(seconds, error is not None)
                report(stream_name, seconds, error)

            return _ObservedStream(stream, on_end)

        return call

    def _wrap_put(self, put: Callable[..., Any], returned: _SizeFigures) -> Callable[..., Any]:
        set_gauge = self._instr_metrics.set_gauge

        def call(buffer: Any, *args: Any, **kwargs: Any) -> Any:
            # Read the size before the driver sees the buffer: it may clear it.
            size = len(buffer)
            returned.add(size)
            try:
                set_gauge(RETURNED_BYTES_GAUGE, size, None)
            except Exception:
                self._observer_failed("put")
            return put(buffer, *args, **kwargs)

        return call


def instrument(
    concern_key: str,
    driver: T,
    metrics: MetricsRecorder,
    clock: Callable[[], float] = time.perf_counter,
) -> T:
    """Wrap ``driver`` of the concern ``concern_key`` so its operations are measured.

    The result satisfies the same Protocol as ``driver`` (``isinstance``
    holds), and ``stats()`` returns ``{"driver": <the driver's stats>,
    "operations": {op: {"calls", "errors", "total_seconds", "max_seconds"}},
    "observer_errors": n}`` (plus ``"returned_bytes"`` for the buffer pool).
    """
    if concern_key == "metrics":
        raise ValueError("the metrics recorder is the observer and is not instrumented")
    protocol = PROTOCOLS.get(concern_key)
    if protocol is None:
        raise ValueError(f"unknown concern {concern_key!r}; concerns are {', '.join(PROTOCOLS)}")
    return cast(T, InstrumentedDriver(concern_key, driver, metrics, clock, protocol))


__all__ = [
    "NOT_OPERATIONS",
    "RETURNED_BYTES_GAUGE",
    "STREAM_SUFFIX",
    "InstrumentedDriver",
    "instrument",
    "protocol_operations",
]
