"""What the tiered pool does beyond the contract: tiers, adaptive start, reuse,
isolation between runs, the memory bound, trimming, pre-warming, stats, threads."""

from __future__ import annotations

import mmap
import random
import threading
import time
from collections.abc import Iterator
from typing import Any

import ofelia_buffers_tiered.pool as pool_module
import pytest
from ofelia_buffers_tiered import TieredBuffer, TieredBufferPool, TieredSettings, build_pool

KiB, MiB = 1024, 1024 * 1024
DEFAULT_TIERS = (1 * KiB, 256 * KiB, 2621440, 5 * MiB, 10 * MiB)


@pytest.fixture
def pools() -> Iterator[list[TieredBufferPool]]:
    made: list[TieredBufferPool] = []
    yield made
    for pool in made:
        pool.close()


@pytest.fixture
def new_pool(pools: list[TieredBufferPool]) -> Any:
    def build(**settings: Any) -> TieredBufferPool:
        pool = build_pool({key.replace("_", "-"): value for key, value in settings.items()}, env={})
        pools.append(pool)
        return pool

    return build


def tiered(buffer: object) -> TieredBuffer:
    assert isinstance(buffer, TieredBuffer)
    return buffer


def write_in_chunks(buffer: TieredBuffer, data: bytes, rng: random.Random, low: int = 1, high: int = 70_000) -> None:
    offset = 0
    while offset < len(data):
        size = rng.randint(low, high)
        buffer.write(data[offset : offset + size])
        offset += size


def run(pool: TieredBufferPool, job: str, size: int, stream: str = "stdout", seed: int = 0) -> bytes:
    """One run of ``job`` writing ``size`` bytes; returns what the buffer kept."""
    buffer = pool.get(job, stream)
    data = random.Random(seed).randbytes(size)
    write_in_chunks(buffer, data, random.Random(seed + 1))
    value = buffer.getvalue()
    assert value == data[-pool.max_size :]
    pool.put(buffer)
    return value


# --- tiers ----------------------------------------------------------------------------------


def test_default_tiers() -> None:
    assert TieredBufferPool().capacities == DEFAULT_TIERS


def test_buffer_grows_through_the_tiers_as_output_arrives(new_pool: Any) -> None:
    pool = new_pool()
    buffer = pool.get("job", "stdout")
    data = random.Random(1).randbytes(10 * MiB)
    seen = []
    for end in (1000, 1024, 1025, 256 * KiB, 256 * KiB + 1, 2621440, 2621441, 5 * MiB, 5 * MiB + 1, 10 * MiB):
        buffer.write(data[len(buffer) : end])
        seen.append(buffer.capacity)
        assert buffer.getvalue() == data[:end]
    assert seen == [1 * KiB, 1 * KiB, 256 * KiB, 256 * KiB, 2621440, 2621440, 5 * MiB, 5 * MiB, 10 * MiB, 10 * MiB]
    assert buffer.truncated is False
    assert pool.stats()["grows"] == 4


def test_a_large_write_goes_straight_to_the_tier_that_holds_it(new_pool: Any) -> None:
    pool = new_pool()
    buffer = pool.get("job", "stdout")
    buffer.write(b"x" * 3 * MiB)
    assert buffer.capacity == 5 * MiB
    assert pool.stats()["grows"] == 1


def test_never_grows_past_the_cap_and_keeps_the_newest_bytes(new_pool: Any) -> None:
    pool = new_pool(max_size="3MiB")
    assert pool.capacities == (1 * KiB, 256 * KiB, 2621440, 3 * MiB)
    buffer = pool.get("job", "stdout")
    data = random.Random(2).randbytes(7 * MiB + 333)
    write_in_chunks(buffer, data, random.Random(3))
    assert buffer.capacity == 3 * MiB
    assert len(buffer) == 3 * MiB
    assert buffer.truncated is True
    assert buffer.getvalue() == data[-3 * MiB :]


@pytest.mark.parametrize("cap", [1, 7, 1000, 4096, 64 * KiB + 7])
def test_ring_matches_a_plain_model_at_any_cap(new_pool: Any, cap: int) -> None:
    pool = new_pool(max_size=cap, tiers="5,64,1000,65536")
    rng = random.Random(cap)
    for _ in range(3):
        buffer = pool.get("job", "stdout")
        model = b""
        for _ in range(60):
            chunk = rng.randbytes(rng.choice([0, 1, 3, cap // 3 + 1, cap - 1 if cap > 1 else 1, cap, cap + 5]))
            assert buffer.write(chunk) == len(chunk)
            model += chunk
            assert buffer.getvalue() == model[-cap:]
            assert len(buffer) == min(len(model), cap)
            assert buffer.truncated is (len(model) > cap)
        pool.put(buffer)


def test_writes_accept_any_bytes_like_object(new_pool: Any) -> None:
    import array

    buffer = new_pool().get("job", "stdout")
    assert buffer.write(bytearray(b"ab")) == 2
    assert buffer.write(memoryview(b"xcdx")[1:3]) == 2
    ints = array.array("i", [1, 2])
    assert buffer.write(ints) == len(ints)
    assert buffer.getvalue() == b"abcd" + ints.tobytes()


def test_tiers_above_the_cap_are_not_used_and_the_cap_is_the_top_tier() -> None:
    settings = TieredSettings(max_size=1000)
    assert settings.effective_tiers == (1000,)
    assert TieredSettings(max_size=300 * KiB).effective_tiers == (1 * KiB, 256 * KiB, 300 * KiB)


# --- reuse and adaptive start -----------------------------------------------------------------


def test_a_returned_buffer_is_reused_by_the_next_run_of_its_tier(new_pool: Any) -> None:
    pool = new_pool()
    run(pool, "a", 100)
    run(pool, "b", 200)
    stats = pool.stats()
    assert (stats["gets"], stats["puts"], stats["hits"], stats["misses"]) == (2, 2, 1, 1)
    assert stats["hit_rate"] == 0.5
    assert stats["tiers"]["1KiB"]["idle"] == 1


def test_adaptive_start_at_the_tier_recent_runs_needed(new_pool: Any) -> None:
    pool = new_pool()
    run(pool, "big", 3 * MiB)
    assert pool.starting_tier("big", "stdout") == 5 * MiB
    grows = pool.stats()["grows"]
    buffer = pool.get("big", "stdout")
    assert buffer.capacity == 5 * MiB
    buffer.write(b"z" * 3 * MiB)
    assert pool.stats()["grows"] == grows  # no climbing through the small tiers
    pool.put(buffer)
    # Other jobs, and the same job's other stream, still start small.
    assert pool.get("small", "stdout").capacity == 1 * KiB
    assert pool.get("big", "stderr").capacity == 1 * KiB


def test_adaptive_start_follows_the_window_of_recent_runs(new_pool: Any) -> None:
    pool = new_pool(adaptive_window=3)
    run(pool, "job", 2 * MiB)
    for expected in (2621440, 2621440, 256 * KiB):
        run(pool, "job", 100 * KiB)
        assert pool.starting_tier("job", "stdout") == expected
    assert pool.get("job", "stdout").capacity == 256 * KiB


def test_adaptive_off_always_starts_at_the_smallest_tier(new_pool: Any) -> None:
    pool = new_pool(adaptive="off")
    run(pool, "big", 3 * MiB)
    assert pool.get("big", "stdout").capacity == 1 * KiB
    assert pool.stats()["adaptive"] == {"enabled": False, "window": 5, "jobs": 0}


def test_adaptive_history_is_bounded_least_recently_used_first(new_pool: Any) -> None:
    pool = new_pool(adaptive_max_jobs=2)
    run(pool, "a", 300 * KiB)
    run(pool, "b", 300 * KiB)
    run(pool, "a", 300 * KiB)  # a is now more recent than b
    run(pool, "c", 300 * KiB)  # forgets b
    assert pool.stats()["adaptive"]["jobs"] == 2
    assert pool.starting_tier("a", "stdout") == 2621440
    assert pool.starting_tier("c", "stdout") == 2621440
    assert pool.starting_tier("b", "stdout") == 1 * KiB


# --- isolation between runs -----------------------------------------------------------------


def test_a_returned_handle_reads_empty_and_drops_writes(new_pool: Any) -> None:
    pool = new_pool()
    old = pool.get("secret", "stdout")
    old.write(b"S3CR3T" * 100)
    pool.put(old)
    assert old.released is True
    assert (old.getvalue(), len(old), old.capacity) == (b"", 0, 0)
    new = pool.get("other", "stdout")  # the same slab, reused
    assert pool.stats()["hits"] == 1
    assert old.write(b"LATE") == 4  # a reader thread that outlived its run
    assert new.getvalue() == b""
    new.write(b"mine")
    assert new.getvalue() == b"mine"  # not "mine" followed by the old run's bytes
    assert len(new) == 4
    assert pool.stats()["late_writes"] == 1


def test_a_short_run_after_a_long_one_sees_only_its_own_bytes(new_pool: Any) -> None:
    pool = new_pool(adaptive="false")
    for size in (200 * KiB, 10, 0, 150 * KiB, 1):
        buffer = pool.get("job", "stdout")
        buffer.write(b"\x01" * 1000)  # fills the 1 KiB slab, so the next write moves to 256 KiB
        data = random.Random(size).randbytes(size)
        buffer.write(data)
        assert buffer.getvalue() == b"\x01" * 1000 + data
        pool.put(buffer)


def test_returning_twice_or_returning_a_stranger_changes_nothing(new_pool: Any) -> None:
    pool = new_pool()
    buffer = pool.get("job", "stdout")
    pool.put(buffer)
    pool.put(buffer)
    other_pool = new_pool()
    pool.put(other_pool.get("job", "stdout"))
    stats = pool.stats()
    assert (stats["puts"], stats["repeated_puts"], stats["foreign_puts"]) == (3, 1, 1)
    assert stats["held_buffers"] == 1
    first, second = pool.get("a", "stdout"), pool.get("b", "stdout")
    assert first.capacity and second.capacity
    first.write(b"1")
    second.write(b"2")
    assert (first.getvalue(), second.getvalue()) == (b"1", b"2")


def test_readers_in_other_threads_see_only_this_runs_bytes_while_it_grows(new_pool: Any) -> None:
    pool = new_pool(adaptive="false")
    data = random.Random(5).randbytes(3 * MiB)
    stop = threading.Event()
    churning = threading.Barrier(3)
    problems: list[str] = []
    current: list[TieredBuffer] = []

    def churn(worker: int) -> None:
        # Other runs take and return slabs of every tier, so outgrown slabs are reused at once.
        rng = random.Random(worker)
        churning.wait()
        while not stop.is_set():
            other = pool.get(f"other{worker}", "stdout")
            other.write(b"\xff" * rng.choice([10, 2000, 300 * KiB]))
            pool.put(other)

    def read() -> None:
        while not stop.is_set():
            if current:
                value = current[-1].getvalue()
                if value != data[: len(value)]:
                    problems.append(f"read {len(value)} bytes that are not this run's")
                    return

    threads = [threading.Thread(target=churn, args=(n,)) for n in range(2)] + [threading.Thread(target=read)]
    for thread in threads:
        thread.start()
    try:
        churning.wait()
        for attempt in range(10):
            buffer = pool.get("job", "stdout")
            current.append(buffer)
            write_in_chunks(buffer, data, random.Random(attempt), 500, 100 * KiB)
            assert buffer.getvalue() == data
            pool.put(buffer)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    assert not problems, problems[0]
    assert pool.stats()["grows"] >= 30


def test_a_writer_thread_that_outlives_its_run_never_reaches_the_next_run(new_pool: Any) -> None:
    pool = new_pool(adaptive="false")
    stale = pool.get("timed-out", "stdout")
    stale.write(b"old" * 100)
    stop = threading.Event()
    writing = threading.Event()

    def keep_writing() -> None:
        while not stop.is_set():
            stale.write(b"LATE" * 50)
            writing.set()

    thread = threading.Thread(target=keep_writing)
    thread.start()
    try:
        assert writing.wait(10)
        pool.put(stale)  # while the thread is still writing
        for index in range(50):
            buffer = pool.get(f"next{index % 3}", "stdout")
            mine = f"run {index};".encode() * (index * 37 % 400)
            for offset in range(0, len(mine), 50):
                buffer.write(mine[offset : offset + 50])
                if offset == 100:
                    time.sleep(0)  # let the stale writer in, mid-run
            assert buffer.getvalue() == mine
            pool.put(buffer)
    finally:
        stop.set()
        thread.join()
    assert pool.stats()["late_writes"] > 0
    assert stale.getvalue() == b""


# --- the bound, trimming, pre-warming -------------------------------------------------------


def test_buffers_returned_past_the_bound_are_dropped(new_pool: Any) -> None:
    pool = new_pool(max_held="600KiB", adaptive="false")
    buffers = [pool.get(f"job{n}", "stdout") for n in range(3)]
    for buffer in buffers:
        buffer.write(b"x" * 100 * KiB)  # each moves to a 256 KiB slab
    small = [pool.get(f"small{n}", "stdout") for n in range(3)]
    for buffer in buffers + small:
        pool.put(buffer)
    stats = pool.stats()
    assert stats["tiers"]["256KiB"]["idle"] == 2  # 512 KiB held; the third did not fit
    assert stats["tiers"]["1KiB"]["idle"] == 3  # these still fit
    assert stats["dropped"] == 1
    assert stats["held_bytes"] == 2 * 256 * KiB + 3 * KiB <= 600 * KiB


def test_max_held_zero_keeps_nothing_and_a_slab_larger_than_the_bound_is_never_kept(new_pool: Any) -> None:
    nothing = new_pool(max_held=0)
    run(nothing, "job", 10)
    run(nothing, "job", 10)
    assert (nothing.stats()["hits"], nothing.stats()["held_bytes"]) == (0, 0)
    small = new_pool(max_held="1MiB")
    run(small, "job", 2 * MiB)
    stats = small.stats()
    assert stats["tiers"]["2.5MiB"]["idle"] == 0
    assert (stats["dropped"], stats["held_bytes"]) == (1, 0)


def test_outgrown_buffers_are_let_go_of_and_resident_bytes_follow_what_was_written(new_pool: Any) -> None:
    pool = new_pool()
    buffer = pool.get("job", "stdout")
    buffer.write(b"x" * 200 * KiB)  # 1 KiB -> 256 KiB
    buffer.write(b"y" * 2 * MiB)  # 256 KiB -> 2.5 MiB
    stats = pool.stats()
    assert (stats["grows"], stats["outgrown"], stats["held_buffers"]) == (2, 2, 0)
    assert all(t["in_use"] == (1 if label == "2.5MiB" else 0) for label, t in stats["tiers"].items())
    pool.put(buffer)
    tier = pool.stats()["tiers"]["2.5MiB"]
    assert tier["idle"] == 1
    # Memory-mapped: only the pages written are backed, not the whole 2.5 MiB.
    assert 2 * MiB + 200 * KiB <= tier["resident_bytes"] < 2621440


def test_idle_slabs_of_a_tier_no_longer_used_are_trimmed(new_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "EPOCH_ACQUISITIONS", 4)
    pool = new_pool(adaptive="false")
    held = [pool.get(f"burst{n}", "stdout") for n in range(3)]  # 3 acquisitions
    for buffer in held:
        buffer.write(b"b" * 100 * KiB)  # 3 more: each moves to 256 KiB
    for buffer in held:
        pool.put(buffer)
    assert pool.stats()["tiers"]["256KiB"]["idle"] == 3
    # Three quiet epochs of small runs only: the 256 KiB tier had no demand.
    for n in range(12):
        run(pool, f"small{n % 2}", 10)
    stats = pool.stats()
    assert stats["tiers"]["256KiB"]["idle"] == 0
    assert stats["tiers"]["256KiB"]["trimmed"] == 3
    assert stats["tiers"]["1KiB"]["idle"] >= 1  # still in demand: kept
    assert stats["held_bytes"] == stats["tiers"]["1KiB"]["idle"] * KiB


def test_prewarm_fills_every_tier_and_runs_hit(new_pool: Any) -> None:
    pool = new_pool(max_size="512KiB", prewarm=3)
    assert pool.wait_prewarmed(30)
    stats = pool.stats()
    assert [t["prewarmed"] for t in stats["tiers"].values()] == [3, 3, 3]
    assert [t["idle"] for t in stats["tiers"].values()] == [3, 3, 3]
    assert stats["held_bytes"] == 3 * (1 * KiB + 256 * KiB + 512 * KiB)
    # Pages populated up front (a 1 KiB buffer takes a whole page).
    assert stats["resident_bytes"] == 3 * (max(1 * KiB, mmap.PAGESIZE) + 256 * KiB + 512 * KiB)
    assert stats["prewarm"] == {"per_tier": 3, "done": True}
    run(pool, "job", 300 * KiB)  # 1 KiB -> 256 KiB -> 512 KiB, all from the warm pool
    assert (pool.stats()["hits"], pool.stats()["misses"]) == (3, 0)


def test_prewarm_with_the_default_tiers(new_pool: Any) -> None:
    pool = new_pool(prewarm="1")
    assert pool.wait_prewarmed(30)
    stats = pool.stats()
    assert {label: t["idle"] for label, t in stats["tiers"].items()} == dict.fromkeys(
        ("1KiB", "256KiB", "2.5MiB", "5MiB", "10MiB"), 1
    )
    assert stats["held_bytes"] == sum(DEFAULT_TIERS)


def test_prewarm_true_means_50_per_tier_about_890_MiB_with_the_defaults() -> None:
    from ofelia_buffers_tiered.settings import parse_settings

    settings = parse_settings({"prewarm": "true"})
    assert settings.prewarm == 50
    # 50 x (1 KiB + 256 KiB + 2.5 MiB + 5 MiB + 10 MiB) = 930,662,400 bytes = 887.55 MiB
    assert settings.prewarm_bytes() == 930_662_400
    assert round(settings.prewarm_bytes() / MiB, 2) == 887.55


def test_prewarm_stays_within_the_bound(new_pool: Any) -> None:
    pool = new_pool(prewarm="true", max_held="8MiB")
    assert pool.wait_prewarmed(30)
    stats = pool.stats()
    assert 0 < stats["held_bytes"] <= 8 * MiB
    assert stats["tiers"]["10MiB"]["idle"] == 0
    assert stats["tiers"]["1KiB"]["prewarmed"] == 50
    assert all(t["prewarmed"] <= 50 for t in stats["tiers"].values())


def test_prewarmed_buffers_are_not_trimmed(new_pool: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pool_module, "EPOCH_ACQUISITIONS", 2)
    pool = new_pool(max_size="512KiB", prewarm=2)
    assert pool.wait_prewarmed(30)
    for n in range(10):
        run(pool, "job", 10 + n)
    stats = pool.stats()
    assert [t["idle"] for t in stats["tiers"].values()] == [2, 2, 2]
    assert stats["trimmed"] == 0


def test_close_drops_what_the_pool_holds(new_pool: Any) -> None:
    pool = new_pool(max_size="512KiB", prewarm=2)
    buffer = pool.get("job", "stdout")
    pool.close()
    assert pool.wait_prewarmed(30)
    assert pool.stats()["held_bytes"] == 0
    buffer.write(b"still works")
    assert buffer.getvalue() == b"still works"
    pool.put(buffer)
    assert pool.stats()["held_bytes"] == 0  # returned after close: dropped


# --- stats and threads ------------------------------------------------------------------------


def test_stats_figures(new_pool: Any) -> None:
    pool = new_pool()
    run(pool, "a", 100 * KiB)  # 1 KiB (miss) -> 256 KiB (miss); the 1 KiB one is let go of
    run(pool, "a", 100 * KiB)  # starts at 256 KiB (hit)
    run(pool, "b", 10, stream="stderr")  # 1 KiB (miss)
    stats = pool.stats()
    assert stats["driver"] == "tiered"
    assert (stats["gets"], stats["puts"], stats["outstanding"]) == (3, 3, 0)
    assert (stats["hits"], stats["misses"], stats["grows"], stats["outgrown"]) == (1, 3, 1, 1)
    assert stats["hit_rate"] == pytest.approx(1 / 4)
    assert stats["held_bytes"] == 1 * KiB + 256 * KiB
    assert stats["held_buffers"] == 2
    tiers = stats["tiers"]
    assert list(tiers) == ["1KiB", "256KiB", "2.5MiB", "5MiB", "10MiB"]
    assert tiers["256KiB"] == {
        "capacity": 256 * KiB, "idle": 1, "held_bytes": 256 * KiB, "resident_bytes": 100 * KiB, "in_use": 0,
        "hits": 1, "misses": 1, "prewarmed": 0, "trimmed": 0,
    }
    assert sum(t["held_bytes"] for t in tiers.values()) == stats["held_bytes"]
    assert (stats["max_size"], stats["max_held"]) == (10 * MiB, 256 * MiB)


def test_many_threads_keep_their_own_bytes_and_exact_counts(new_pool: Any) -> None:
    pool = new_pool(max_size="3MiB", max_held="8MiB")
    threads, runs = 8, 40
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def work(worker: int) -> None:
        rng = random.Random(worker)
        try:
            start.wait()
            for index in range(runs):
                size = rng.choice([0, 10, 1000, 1025, 100 * KiB, 300 * KiB, 2 * MiB, 4 * MiB])
                job = f"job{worker % 3}-{size}"
                stream = "stdout" if index % 2 else "stderr"
                buffer = pool.get(job, stream)
                mark = f"<{worker}:{index}>".encode()
                data = (mark * (size // len(mark) + 1))[:size]
                write_in_chunks(buffer, data, rng, 1, 64 * KiB)
                assert buffer.getvalue() == data[-3 * MiB :]
                assert buffer.truncated is (size > 3 * MiB)
                pool.put(buffer)
        except BaseException as exc:
            errors.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    assert not errors, errors[0]
    stats = pool.stats()
    assert (stats["gets"], stats["puts"], stats["outstanding"]) == (threads * runs, threads * runs, 0)
    assert stats["hits"] + stats["misses"] == stats["gets"] + stats["grows"]
    assert stats["hits"] > 0
    assert stats["held_bytes"] <= 8 * MiB
    assert all(t["in_use"] == 0 for t in stats["tiers"].values())
    assert stats["late_writes"] == 0
