"""Contract tests for a :class:`~ofelia_hookspecs.protocols.BufferPool` driver.

Subclass :class:`BufferPoolContract` in a test module and provide the
fixture ``make_buffer_pool``: a callable ``(settings: dict) -> BufferPool``
that builds the driver the way its factory hook does.

The cap is set with the ``max-size`` key of ``[buffer-pool]``, as an integer
or a size string such as ``512KiB``; a driver that names it otherwise sets
:attr:`BufferPoolContract.cap_setting`.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

try:
    import pytest
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "the ofelia contract test kit needs pytest: pip install 'ofelia-hookspecs[contract]'"
    ) from exc

from ..protocols import BufferPool, OutputBuffer

MakeBufferPool = Callable[[dict[str, Any]], BufferPool]
Build = Callable[..., BufferPool]

#: Chunk sizes that line up with no power of two.
ODD_CHUNKS = (1, 7, 333, 4097, 65_537, 13, 999, 100_003)


def _chunks(data: bytes, sizes: tuple[int, ...] = ODD_CHUNKS) -> Iterator[bytes]:
    offset, turn = 0, 0
    while offset < len(data):
        size = sizes[turn % len(sizes)]
        yield data[offset : offset + size]
        offset += size
        turn += 1


class BufferPoolContract:
    """What the core relies on from every buffer pool and the buffers it hands out."""

    #: The settings key of the most bytes a buffer keeps.
    cap_setting: str = "max-size"

    def driver_stats(self, driver: BufferPool) -> dict[str, Any]:
        """The driver's own ``stats()``. A suite that runs the kit through a
        wrapper with its own stats layout overrides this to unwrap them."""
        return driver.stats()

    @pytest.fixture
    def build_buffer_pool(self, make_buffer_pool: MakeBufferPool) -> Iterator[Build]:
        """``build(settings=None)``: a pool, closed after the test."""
        built: list[BufferPool] = []

        def build(settings: dict[str, Any] | None = None) -> BufferPool:
            pool = make_buffer_pool(dict(settings or {}))
            built.append(pool)
            return pool

        yield build
        for pool in built:
            pool.close()

    def test_satisfies_protocol(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        assert isinstance(pool, BufferPool)
        buffer = pool.get("job", "stdout")
        assert isinstance(buffer, OutputBuffer)
        pool.put(buffer)

    def test_new_buffer_is_empty(self, build_buffer_pool: Build) -> None:
        buffer = build_buffer_pool().get("job", "stderr")
        assert len(buffer) == 0
        assert buffer.getvalue() == b""
        assert buffer.truncated is False

    def test_round_trip(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        buffer = pool.get("job", "stdout")
        data = random.Random(1).randbytes(300_000)
        for chunk in _chunks(data):
            assert buffer.write(chunk) == len(chunk)
        value = buffer.getvalue()
        assert isinstance(value, bytes)
        assert value == data
        assert len(buffer) == len(data)
        assert buffer.truncated is False
        pool.put(buffer)

    @pytest.mark.parametrize("cap", [1000, 64 * 1024 + 7])
    def test_cap_keeps_the_newest_bytes(self, build_buffer_pool: Build, cap: int) -> None:
        pool = build_buffer_pool({self.cap_setting: cap})
        buffer = pool.get("job", "stdout")
        data = random.Random(cap).randbytes(3 * cap)
        for chunk in _chunks(data):
            buffer.write(chunk)
            assert len(buffer) <= cap
        assert buffer.getvalue() == data[-cap:]
        assert len(buffer) == cap
        assert buffer.truncated is True
        pool.put(buffer)

    def test_truncated_only_once_bytes_are_dropped(self, build_buffer_pool: Build) -> None:
        cap = 1000
        pool = build_buffer_pool({self.cap_setting: cap})
        buffer = pool.get("job", "stdout")
        buffer.write(b"a" * (cap - 1))
        buffer.write(b"b")
        assert buffer.truncated is False
        assert buffer.getvalue() == b"a" * (cap - 1) + b"b"
        buffer.write(b"c")
        assert buffer.truncated is True
        assert buffer.getvalue() == b"a" * (cap - 2) + b"bc"

    def test_one_write_larger_than_the_cap(self, build_buffer_pool: Build) -> None:
        cap = 1000
        pool = build_buffer_pool({self.cap_setting: cap})
        buffer = pool.get("job", "stdout")
        buffer.write(b"old")
        data = bytes(range(256)) * 10
        assert buffer.write(data) == len(data)
        assert buffer.getvalue() == data[-cap:]
        assert buffer.truncated is True

    @pytest.mark.parametrize(("text", "cap"), [("2KiB", 2048), ("1 MiB", 1024 * 1024)])
    def test_cap_as_size_string(self, build_buffer_pool: Build, text: str, cap: int) -> None:
        buffer = build_buffer_pool({self.cap_setting: text}).get("job", "stdout")
        data = random.Random(2).randbytes(cap + 10)
        buffer.write(data)
        assert buffer.getvalue() == data[-cap:]

    def test_cap_as_ini_integer_string(self, build_buffer_pool: Build) -> None:
        buffer = build_buffer_pool({self.cap_setting: "1000"}).get("job", "stdout")
        buffer.write(b"x" * 1500)
        assert len(buffer) == 1000

    def test_returned_buffer_never_shows_another_runs_bytes(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        rng = random.Random(3)
        # Sizes across the range a pool might sort into tiers and reuse.
        for size in (10, 1024, 1025, 256 * 1024 + 1, 2_600_000, 100, 5, 300_000, 7):
            buffer = pool.get("secret-job", "stdout")
            buffer.write(b"S3CR3T" + rng.randbytes(size))
            pool.put(buffer)
            other = pool.get("other-job", "stdout")
            assert len(other) == 0
            assert other.getvalue() == b""
            assert other.truncated is False
            other.write(b"mine")
            assert other.getvalue() == b"mine"
            pool.put(other)

    def test_truncation_is_not_carried_over(self, build_buffer_pool: Build) -> None:
        cap = 1000
        pool = build_buffer_pool({self.cap_setting: cap})
        for _ in range(5):
            buffer = pool.get("job", "stdout")
            assert buffer.truncated is False
            buffer.write(b"z" * (cap + 1))
            assert buffer.truncated is True
            pool.put(buffer)

    def test_outstanding_buffers_are_independent(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        out = pool.get("job", "stdout")
        err = pool.get("job", "stderr")
        other = pool.get("other", "stdout")
        out.write(b"out")
        err.write(b"err")
        other.write(b"other")
        assert (out.getvalue(), err.getvalue(), other.getvalue()) == (b"out", b"err", b"other")
        for buffer in (out, err, other):
            pool.put(buffer)

    def test_len(self, build_buffer_pool: Build) -> None:
        buffer = build_buffer_pool().get("job", "stdout")
        buffer.write(b"abc")
        buffer.write(b"")
        buffer.write(b"de")
        assert len(buffer) == 5

    def test_stats_count_gets_and_puts(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        stats = self.driver_stats(pool)
        assert isinstance(stats, dict)
        assert (stats["gets"], stats["puts"]) == (0, 0)
        buffers = [pool.get("job", stream) for stream in ("stdout", "stderr", "stdout")]
        pool.put(buffers[0])
        stats = self.driver_stats(pool)
        assert (stats["gets"], stats["puts"]) == (3, 1)

    def test_unknown_settings_are_ignored(self, build_buffer_pool: Build) -> None:
        # Another driver's keys stay in the section after a rollback.
        pool = build_buffer_pool({"some-other-drivers-key": "value", "prewarm": "true"})
        buffer = pool.get("job", "stdout")
        buffer.write(b"ok")
        assert buffer.getvalue() == b"ok"

    def test_concurrent_get_and_put(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        threads, per_thread = 8, 200
        errors: list[BaseException] = []
        start = threading.Barrier(threads)

        def work(worker: int) -> None:
            try:
                start.wait()
                for index in range(per_thread):
                    buffer = pool.get(f"job{worker % 3}", "stdout" if index % 2 else "stderr")
                    assert buffer.getvalue() == b""
                    mine = f"{worker}:{index};".encode() * (1 + index % 50)
                    for chunk in _chunks(mine, (5, 11)):
                        buffer.write(chunk)
                    assert buffer.getvalue() == mine
                    pool.put(buffer)
            except BaseException as exc:  # reported below, in the test's thread
                errors.append(exc)

        pool_threads = [threading.Thread(target=work, args=(worker,)) for worker in range(threads)]
        for thread in pool_threads:
            thread.start()
        for thread in pool_threads:
            thread.join()
        assert not errors, errors[0]
        stats = self.driver_stats(pool)
        assert (stats["gets"], stats["puts"]) == (threads * per_thread, threads * per_thread)

    def test_close_twice(self, build_buffer_pool: Build) -> None:
        pool = build_buffer_pool()
        pool.put(pool.get("job", "stdout"))
        pool.close()
        pool.close()


__all__ = ["BufferPoolContract"]
