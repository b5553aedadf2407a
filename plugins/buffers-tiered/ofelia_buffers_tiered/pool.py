"""Tiered output buffers reused across runs.

Storage and handles are separate objects:

* A :class:`Slab` is fixed-size storage of one tier's capacity, allocated
  once and reused by many runs: an anonymous private memory map, which the
  kernel backs page by page as bytes are written, so a 10 MiB slab that
  holds 3 MiB of output costs 3 MiB of memory, not 10. Each slab carries its
  own lock, allocated once with it.
* A :class:`TieredBuffer` is the handle one stream of one run writes to. It
  points at the slab it currently uses; when output outgrows the slab, the
  bytes move to a slab of the smallest tier that holds them (never past
  ``max-size``) and the outgrown slab is unmapped, not kept (its tier is not
  what that job needs). At ``max-size`` the slab becomes a ring that keeps
  the newest bytes, as the baseline does.

When a buffer is returned, the handle lets go of its slab under the slab's
lock: from then on the old handle reads as empty and drops writes (a reader
thread that outlives its run cannot reach the slab's next user), and a new
handle only ever reads the bytes written through it. Slabs are not zeroed
when they are reused: bytes past a handle's own length are unreachable
through the public API.

A write that fits costs one lock round trip and one ``memcpy`` into the
slab; it allocates nothing (memory-map slice assignment takes any
contiguous buffer as it is, where a bytearray slice assignment would copy a
non-bytearray argument first).

Thread safety: pool state (idle slabs, counters, job histories) is guarded by
one lock held for a few list and dict operations, never while memory is
allocated, copied or unmapped. Each buffer's bytes are guarded by its slab's
lock, so ``getvalue`` from another thread sees a consistent value even while
the buffer moves to a larger slab.
"""

from __future__ import annotations

import bisect
import mmap
import os
import threading
from collections import deque
from typing import Any

from ofelia_hookspecs.protocols import OutputBuffer

from .settings import TieredSettings

PAGE_SIZE = mmap.PAGESIZE
#: Acquisitions per demand epoch: a tier's recent demand is its peak of slabs
#: in use during the current epoch and the two before.
EPOCH_ACQUISITIONS = 256


def size_label(size: int) -> str:
    """``1KiB``, ``2.5MiB``, ``1000B``: how stats name a tier."""
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor and (size * 10) % factor == 0:
            return f"{size / factor:g}{unit}"
    return f"{size}B"


def _anonymous_map(capacity: int, populate: bool) -> mmap.mmap:
    if os.name != "posix":
        return mmap.mmap(-1, capacity)
    flags = mmap.MAP_PRIVATE  # with fileno -1, Python adds MAP_ANONYMOUS
    if populate:
        flags |= getattr(mmap, "MAP_POPULATE", 0)
    return mmap.mmap(-1, capacity, flags=flags)


class Slab:
    """Fixed-capacity storage for one tier, reused across runs."""

    __slots__ = ("capacity", "data", "lock", "resident", "tier", "touched", "view")

    def __init__(self, tier: int, capacity: int, *, populate: bool = False) -> None:
        self.tier = tier
        self.capacity = capacity
        self.lock = threading.Lock()
        self.data = _anonymous_map(capacity, populate)
        self.view = memoryview(self.data)
        #: Most bytes ever written: what the kernel backs.
        self.touched = 0
        #: ``touched`` in whole pages: the memory this slab is estimated to hold.
        self.resident = 0
        if populate:
            self.note_written(capacity)

    def note_written(self, size: int) -> None:
        """Record that the first ``size`` bytes were written (the pages are now backed)."""
        if size > self.touched:
            self.touched = size
            self.resident = -(-size // PAGE_SIZE) * PAGE_SIZE

    def __repr__(self) -> str:
        return f"Slab(tier={self.tier}, capacity={self.capacity}, touched={self.touched})"


def _byte_view(data: Any) -> memoryview:
    """``data`` as a flat view of bytes, for slicing by byte offsets."""
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


class TieredBuffer:
    """Output of one stream of one run; satisfies :class:`~ofelia_hookspecs.protocols.OutputBuffer`.

    Keeps at most the pool's ``max_size`` bytes, the newest ones. Written by
    the one thread that reads the stream; ``getvalue`` may be called from any
    thread. After the buffer is returned to the pool it reads as empty and
    drops further writes (counted in the pool's ``late_writes``).
    """

    __slots__ = ("_job", "_length", "_pool", "_slab", "_start", "_stream", "_truncated")

    def __init__(self, pool: TieredBufferPool, slab: Slab, job_name: str, stream: str) -> None:
        self._pool = pool
        self._slab: Slab | None = slab
        self._job = job_name
        self._stream = stream
        #: Bytes kept, at most the slab's capacity.
        self._length = 0
        #: Index of the oldest byte once the slab is a full ring (only at ``max_size``).
        self._start = 0
        self._truncated = False

    # --- the OutputBuffer protocol ------------------------------------------------------

    def write(self, data: bytes) -> int:
        # Any contiguous bytes-like object is accepted, as the baseline's bytearray does;
        # ``size`` counts bytes, the result is len(data) as the protocol says.
        kind: type = type(data)
        if kind is bytes or kind is bytearray:
            size = result = len(data)
        elif isinstance(data, memoryview):
            size = data.nbytes
            result = size if data.itemsize == 1 else len(data)
        else:
            size, result = memoryview(data).nbytes, len(data)
        while True:
            slab = self._slab
            if slab is None:
                self._pool._late_write()
                return result
            # acquire/release rather than ``with``: no bound __exit__ to allocate per write.
            slab.lock.acquire()
            try:
                if self._slab is not slab:
                    continue  # returned or moved by another thread meanwhile: look again
                length = self._length
                end = length + size
                if end <= slab.capacity and not self._start:
                    slab.data[length:end] = data
                    self._length = end
                    return result
                retired = self._write_slow(slab, data, size)
            finally:
                slab.lock.release()
            if retired is not None:
                self._pool._outgrown(retired)
            return result

    def getvalue(self) -> bytes:
        while True:
            slab = self._slab
            if slab is None:
                return b""
            slab.lock.acquire()
            try:
                if self._slab is not slab:
                    continue
                start, length = self._start, self._length
                if not start:
                    return slab.data[:length]
                view = slab.view
                return b"".join((view[start : slab.capacity], view[:start]))
            finally:
                slab.lock.release()

    def __len__(self) -> int:
        return self._length

    @property
    def truncated(self) -> bool:
        return self._truncated

    # --- extras ---------------------------------------------------------------------------

    @property
    def max_size(self) -> int:
        return self._pool.max_size

    @property
    def capacity(self) -> int:
        """Capacity of the slab in use (its tier's size); 0 once returned."""
        slab = self._slab
        return 0 if slab is None else slab.capacity

    @property
    def released(self) -> bool:
        """True once the buffer was returned to the pool."""
        return self._slab is None

    def __repr__(self) -> str:
        return (f"TieredBuffer(job={self._job!r}, stream={self._stream!r}, len={self._length}, "
                f"capacity={self.capacity}, truncated={self._truncated})")

    # --- internals (called with the slab's lock held) --------------------------------------

    def _write_slow(self, slab: Slab, data: Any, size: int) -> Slab | None:
        """A write that does not fit the slab as it is; returns a slab to give back, if any."""
        if not size:
            return None
        max_size = self._pool.max_size
        end = self._length + size
        if slab.capacity >= max_size or end <= slab.capacity:
            self._ring_write(slab, data, size)
            return None
        # Outgrown: move to the smallest tier that holds the bytes (at most max_size).
        new = self._pool._acquire_for(min(end, max_size))
        with new.lock:
            length = self._length
            if length:
                new.data[:length] = slab.view[:length]
            slab.note_written(length)
            self._slab = new  # published under the old slab's lock and the new one's
            self._ring_write(new, data, size)
        return slab

    def _ring_write(self, slab: Slab, data: Any, size: int) -> None:
        capacity = slab.capacity
        length, start = self._length, self._start
        target = slab.data
        if not start and length + size <= capacity:
            target[length : length + size] = data
            self._length = length + size
            return
        # The slab is at max_size and bytes must be dropped: keep the newest.
        self._truncated = True
        source = _byte_view(data)
        if size >= capacity:
            target[:capacity] = source[size - capacity :]
            self._start, self._length = 0, capacity
            return
        position = (start + length) % capacity
        first = min(size, capacity - position)
        target[position : position + first] = source[:first]
        if first < size:
            target[: size - first] = source[first:]
        kept = length + size
        if kept > capacity:
            self._start = (start + kept - capacity) % capacity
            kept = capacity
        self._length = kept


class _Tier:
    """Idle slabs of one capacity and the figures the pool keeps about it."""

    __slots__ = ("capacity", "floor", "hits", "idle", "in_use", "label", "misses", "peak_current", "peak_older",
                 "peak_previous", "prewarmed", "resident", "trimmed")

    def __init__(self, capacity: int, floor: int = 0) -> None:
        self.capacity = capacity
        #: Slabs kept (idle plus in use) whatever the demand: the pre-warmed count.
        self.floor = floor
        self.label = size_label(capacity)
        #: Oldest on the left; handed out from the right (most recently used, most likely resident).
        self.idle: deque[Slab] = deque()
        self.resident = 0
        self.in_use = 0
        self.peak_current = 0
        self.peak_previous = 0
        self.peak_older = 0
        self.hits = 0
        self.misses = 0
        self.prewarmed = 0
        self.trimmed = 0

    @property
    def surplus(self) -> int:
        """Idle slabs beyond what the tier's recent peak of concurrent use (or its floor) asks for."""
        wanted = max(self.peak_current, self.peak_previous, self.peak_older, self.floor) - self.in_use
        return len(self.idle) - max(0, wanted)


class TieredBufferPool:
    """Hands out :class:`TieredBuffer` handles over slabs reused in size tiers.

    * **Tiers**: a buffer starts at one tier and moves up as output arrives,
      never past ``max_size``.
    * **Adaptive start**: each (job, stream) remembers the tiers its last
      ``adaptive_window`` runs needed and starts the next run at the largest.
    * **Bound**: idle slabs' capacities never add up to more than
      ``max_held``; a returned slab that would pass it is dropped.
    * **Trimming**: the pool counts slab acquisitions in epochs of
      :data:`EPOCH_ACQUISITIONS`. At the end of each, a tier keeps only as
      many slabs (idle plus in use) as it had in use at once during that
      epoch and the two before (or its pre-warmed count, if larger); the
      oldest idle ones beyond that are let go. A tier the workload stopped
      using thus empties within three epochs, and a burst does not pin memory.
    * **Pre-warming**: ``prewarm`` slabs per tier, allocated (and their pages
      populated) by a background thread, within ``max_held``.
    """

    def __init__(self, settings: TieredSettings | None = None) -> None:
        self.settings = settings = settings or TieredSettings()
        self._max_size = settings.max_size
        self._max_held = settings.max_held
        self._capacities: tuple[int, ...] = settings.effective_tiers
        self._tiers = [_Tier(capacity, settings.prewarm) for capacity in self._capacities]
        self._adaptive = settings.adaptive
        self._window = settings.adaptive_window
        self._max_jobs = settings.adaptive_max_jobs
        self._lock = threading.Lock()
        self._held = 0
        self._epoch_left = EPOCH_ACQUISITIONS
        #: Slabs trimmed at an epoch's end, let go of once the lock is released.
        self._trimmed: list[Slab] = []
        # stream -> job -> the tier its next run starts at; dict order is least recently used first.
        self._history: dict[str, dict[str, int]] = {}
        # stream -> job -> the tiers its recent runs needed.
        self._windows: dict[str, dict[str, deque[int]]] = {}
        self._histories = 0
        self._gets = self._puts = self._hits = self._misses = self._grows = 0
        self._dropped = self._outgrown_count = self._foreign_puts = self._repeated_puts = self._late_writes = 0
        self._closed = False
        self._prewarm_stop = threading.Event()
        self._prewarm_done = threading.Event()
        self._prewarm_thread: threading.Thread | None = None
        if settings.prewarm and self._max_held:
            self._prewarm_thread = threading.Thread(
                target=self._prewarm, args=(settings.prewarm,), name="ofelia-buffer-prewarm", daemon=True
            )
            self._prewarm_thread.start()
        else:
            self._prewarm_done.set()

    @property
    def max_size(self) -> int:
        return self._max_size

    @property
    def capacities(self) -> tuple[int, ...]:
        """The tiers' capacities, ascending; the last is ``max_size``."""
        return self._capacities

    # --- the BufferPool protocol ----------------------------------------------------------

    def get(self, job_name: str, stream: str) -> TieredBuffer:
        lock = self._lock
        lock.acquire()  # not ``with``: get and put run once per stream per run, keep them lean
        try:
            self._gets += 1
            tier = 0
            if self._adaptive:
                jobs = self._history.get(stream)
                if jobs is not None:
                    tier = jobs.get(job_name, 0)
            slab = self._take(tier)
            trimmed = self._trimmed
            if trimmed:
                self._trimmed = []
        finally:
            lock.release()
        del trimmed  # what an epoch's end trimmed is unmapped here, outside the lock
        if slab is None:
            slab = Slab(tier, self._capacities[tier])
        return TieredBuffer(self, slab, job_name, stream)

    def put(self, buffer: OutputBuffer) -> None:
        lock = self._lock
        if type(buffer) is not TieredBuffer or buffer._pool is not self:
            with lock:
                self._puts += 1
                self._foreign_puts += 1
            return
        # Let go of the slab under its lock: the handle reads as empty from here on.
        length = 0
        while True:
            slab = buffer._slab
            if slab is None:
                break
            slab.lock.acquire()
            try:
                if buffer._slab is not slab:
                    continue
                length = buffer._length
                slab.note_written(length)
                buffer._slab = None
                buffer._length = buffer._start = 0
                break
            finally:
                slab.lock.release()
        lock.acquire()
        try:
            self._puts += 1
            if slab is None:
                self._repeated_puts += 1
                return
            if self._adaptive:
                self._remember(buffer._job, buffer._stream, self._tier_for(length))
            self._tiers[slab.tier].in_use -= 1
            dropped = self._keep(slab)
        finally:
            lock.release()
        # A slab that was not kept is unmapped when its last reference goes: here, outside the lock.
        del dropped, slab

    def stats(self) -> dict[str, Any]:
        with self._lock:
            acquisitions = self._hits + self._misses
            tiers = {
                tier.label: {
                    "capacity": tier.capacity,
                    "idle": len(tier.idle),
                    "held_bytes": len(tier.idle) * tier.capacity,
                    "resident_bytes": tier.resident,
                    "in_use": tier.in_use,
                    "hits": tier.hits,
                    "misses": tier.misses,
                    "prewarmed": tier.prewarmed,
                    "trimmed": tier.trimmed,
                }
                for tier in self._tiers
            }
            return {
                "driver": "tiered",
                "max_size": self._max_size,
                "max_held": self._max_held,
                "gets": self._gets,
                "puts": self._puts,
                "outstanding": self._gets - self._puts,
                "hits": self._hits,
                "misses": self._misses,
                "hit_rate": self._hits / acquisitions if acquisitions else 0.0,
                "grows": self._grows,
                "held_bytes": self._held,
                "held_buffers": sum(len(tier.idle) for tier in self._tiers),
                "resident_bytes": sum(tier.resident for tier in self._tiers),
                "dropped": self._dropped,
                "outgrown": self._outgrown_count,
                "trimmed": sum(tier.trimmed for tier in self._tiers),
                "foreign_puts": self._foreign_puts,
                "repeated_puts": self._repeated_puts,
                "late_writes": self._late_writes,
                "tiers": tiers,
                "adaptive": {"enabled": self._adaptive, "window": self._window, "jobs": self._histories},
                "prewarm": {"per_tier": self.settings.prewarm, "done": self._prewarm_done.is_set()},
            }

    def close(self) -> None:
        """Stop pre-warming and drop every idle slab; buffers still out are dropped when returned."""
        self._prewarm_stop.set()
        thread = self._prewarm_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        with self._lock:
            self._closed = True
            idle = [tier.idle for tier in self._tiers]
            for tier in self._tiers:
                tier.idle = deque()
                tier.resident = 0
            self._held = 0
        del idle

    # --- extras ---------------------------------------------------------------------------

    def wait_prewarmed(self, timeout: float | None = None) -> bool:
        """Block until pre-warming has finished (at once when it is off); False on timeout."""
        return self._prewarm_done.wait(timeout)

    def starting_tier(self, job_name: str, stream: str) -> int:
        """The capacity the next ``get(job_name, stream)`` starts at."""
        with self._lock:
            jobs = self._history.get(stream) if self._adaptive else None
            return self._capacities[jobs.get(job_name, 0) if jobs is not None else 0]

    # --- internals ------------------------------------------------------------------------

    def _tier_for(self, size: int) -> int:
        """The smallest tier that holds ``size`` bytes (the top one past it)."""
        return min(bisect.bisect_left(self._capacities, size), len(self._capacities) - 1)

    def _take(self, index: int) -> Slab | None:
        """With the lock held: an idle slab of tier ``index``, or None when a new one is needed."""
        tier = self._tiers[index]
        slab: Slab | None = None
        if tier.idle:
            slab = tier.idle.pop()
            self._held -= slab.capacity
            tier.resident -= slab.resident
            tier.hits += 1
            self._hits += 1
        else:
            tier.misses += 1
            self._misses += 1
        tier.in_use += 1
        if tier.in_use > tier.peak_current:
            tier.peak_current = tier.in_use
        self._epoch_left -= 1
        if not self._epoch_left:
            self._end_epoch()
        return slab

    def _end_epoch(self) -> None:
        """With the lock held: start a demand epoch and trim idle slabs past each tier's recent demand."""
        self._epoch_left = EPOCH_ACQUISITIONS
        for tier in self._tiers:
            tier.peak_older, tier.peak_previous, tier.peak_current = tier.peak_previous, tier.peak_current, tier.in_use
            surplus = tier.surplus
            while surplus > 0:
                victim = tier.idle.popleft()  # oldest first
                self._held -= victim.capacity
                tier.resident -= victim.resident
                tier.trimmed += 1
                self._trimmed.append(victim)
                surplus -= 1

    def _acquire_for(self, size: int) -> Slab:
        """A slab for a buffer that outgrew its own and now needs ``size`` bytes."""
        index = self._tier_for(size)
        with self._lock:
            self._grows += 1
            slab = self._take(index)
            trimmed = self._trimmed
            if trimmed:
                self._trimmed = []
        del trimmed
        return slab if slab is not None else Slab(index, self._capacities[index])

    def _outgrown(self, slab: Slab) -> None:
        """A slab a buffer outgrew: let go of, not kept. Its tier is not what that job needs, and
        keeping it would hold its pages (or, given back, spend ``max-held`` on a slab that saves
        no more than one ``mmap`` call when reused)."""
        with self._lock:
            self._tiers[slab.tier].in_use -= 1
            self._outgrown_count += 1
        del slab  # unmapped here, outside the lock, unless a reader still holds it

    def _keep(self, slab: Slab) -> Slab | None:
        """With the lock held: keep ``slab`` idle if it fits within ``max_held``; else return it to let go of."""
        capacity = slab.capacity
        if self._closed or self._held + capacity > self._max_held:
            self._dropped += 1
            return slab
        tier = self._tiers[slab.tier]
        tier.idle.append(slab)
        tier.resident += slab.resident
        self._held += capacity
        return None

    def _remember(self, job: str, stream: str, tier: int) -> None:
        """With the lock held: note the tier a run of (job, stream) needed, and the tier
        its next run starts at (the largest of the recent ones)."""
        jobs = self._history.get(stream)
        if jobs is None:
            jobs = self._history[stream] = {}
            self._windows[stream] = {}
        windows = self._windows[stream]
        recent = windows.get(job)
        if recent is None:
            recent = windows[job] = deque(maxlen=self._window)
            self._histories += 1
        recent.append(tier)
        jobs.pop(job, None)
        jobs[job] = max(recent)  # most recently used last
        if self._histories > self._max_jobs:
            self._forget_one(jobs)

    def _forget_one(self, preferred: dict[str, int]) -> None:
        """Forget the least recently used history: of ``preferred``'s stream, unless it holds only
        the one just recorded."""
        for stream, jobs in sorted(self._history.items(), key=lambda item: item[1] is not preferred):
            if len(jobs) > (1 if jobs is preferred else 0):
                job = next(iter(jobs))
                del jobs[job]
                del self._windows[stream][job]
                self._histories -= 1
                return

    def _late_write(self) -> None:
        with self._lock:
            self._late_writes += 1

    def _prewarm(self, per_tier: int) -> None:
        """Allocate up to ``per_tier`` slabs of every tier, one of each in turn, within ``max_held``."""
        try:
            for _ in range(per_tier):
                added = False
                for index, capacity in enumerate(self._capacities):
                    if self._prewarm_stop.is_set():
                        return
                    with self._lock:
                        fits = not self._closed and self._held + capacity <= self._max_held
                    if not fits:
                        continue
                    slab = Slab(index, capacity, populate=True)
                    with self._lock:
                        if self._closed or self._held + capacity > self._max_held:
                            continue
                        tier = self._tiers[index]
                        tier.idle.appendleft(slab)  # oldest end: trimmed first, past the pre-warmed floor
                        tier.resident += slab.resident
                        tier.prewarmed += 1
                        self._held += capacity
                    added = True
                if not added:
                    return
        finally:
            self._prewarm_done.set()


__all__ = ["EPOCH_ACQUISITIONS", "PAGE_SIZE", "Slab", "TieredBuffer", "TieredBufferPool", "size_label"]
