"""What the core hands the metrics driver at each scrape, and the exposition it returns.

``render_metrics(runtime, fmt)`` is what ``/metrics`` and ``/api/metrics`` serve:
``fmt`` is ``"prometheus"`` or ``"json"``; it returns ``(content_type, body)``.
Before exporting, the core feeds the recorder what only the core knows at that
moment, through the Protocol's ``set_gauge``:

* each driver's own ``stats()`` (the instrumentation layer nests them under
  ``"driver"``; its per-operation figures are left out, as the recorder already
  got every call through ``observe_operation``), flattened into gauges named
  ``<concern>_<key>_<key>...`` with the concern key in snake case
  (``docker_client_breaker_consecutive_failures``, ``buffer_pool_hit_rate``,
  ``buffer_pool_tiers_1KiB_hits``, ``token_manager_active``):

  - numbers as they are, booleans as 1 or 0;
  - a short word (``"open"``, ``"half-open"``, ``"pooled"``) as the gauge
    ``<name>{<last key>="<word>"}`` set to 1, and set to 0 once the word
    changes, so a state reads like Prometheus' state sets
    (``docker_client_breaker_state{state="open"} 1``); at most
    :data:`MAX_WORDS` words are tracked per gauge;
  - anything else (lists, ``None``, timestamps, addresses) is left out;

* the plugins' samples from the ``ofelia_collect_metrics`` hook, each as
  ``set_gauge(sample.name, sample.value, sample.labels)``.

With the ``noop`` driver chosen nothing is fed: the body is the recorder's
export, which is empty. A driver whose ``stats()`` fails, or a plugin whose
hook fails, is logged once and skipped; the scrape still answers.
"""

from __future__ import annotations

import math
import re
import threading
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

from loguru import logger

CONTENT_TYPES = {
    "prometheus": "text/plain; version=0.0.4; charset=utf-8",
    "json": "application/json",
}
#: The baseline recorder: it exports nothing, so nothing is fed to it.
NOOP_DRIVER = "noop"
#: Distinct words tracked per gauge (past this, a new word is not shown).
MAX_WORDS = 16
#: How deep nested stats are followed.
MAX_DEPTH = 6
#: Keys of the instrumentation layer's stats that are not fed (the recorder saw every call).
NOT_FED = frozenset({"driver", "operations"})

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.-]{0,63}")
_NOT_NAME = re.compile(r"[^A-Za-z0-9_]")


def render_metrics(runtime: Any, fmt: str) -> tuple[str, str]:
    """The chosen metrics driver's exposition; empty when it is the no-op driver."""
    if fmt not in CONTENT_TYPES:
        raise ValueError(f"unknown metrics format {fmt!r}: use prometheus or json")
    drivers = runtime.drivers
    recorder = drivers.metrics
    if not is_noop(drivers):
        feed_drivers(recorder, drivers.by_concern())
        feed_samples(recorder, runtime.hooks)
    return CONTENT_TYPES[fmt], recorder.export(fmt)


def is_noop(drivers: Any) -> bool:
    """True when the chosen metrics driver is the baseline ``noop``."""
    choice = getattr(drivers, "choices", {}).get("metrics")
    return choice is not None and choice.name == NOOP_DRIVER


# --- drivers' stats --------------------------------------------------------------


def concern_prefix(concern: str) -> str:
    """``docker-client`` -> ``docker_client``."""
    return _segment(concern)


def flatten_stats(concern: str, stats: Mapping[str, Any]) -> Iterator[tuple[str, str, float | str]]:
    """``(gauge name, last key, value)`` for every number, boolean or word in a driver's stats.

    ``stats`` is what the active driver's ``stats()`` returns: the instrumented
    proxy's (``{"driver": {...}, "operations": ..., ...}``) or a bare driver's.
    """
    prefix = concern_prefix(concern)
    own = stats.get("driver")
    if isinstance(own, Mapping) and "operations" in stats:
        yield from _flatten(prefix, own, 1)
        yield from _flatten(prefix, {k: v for k, v in stats.items() if k not in NOT_FED}, 1)
    else:
        yield from _flatten(prefix, stats, 1)


def _flatten(name: str, stats: Mapping[str, Any], depth: int) -> Iterator[tuple[str, str, float | str]]:
    for key, value in stats.items():
        leaf = _segment(str(key))
        path = f"{name}_{leaf}"
        if isinstance(value, bool):
            yield path, leaf, 1.0 if value else 0.0
        elif isinstance(value, int | float):
            yield path, leaf, float(value)
        elif isinstance(value, str):
            if _WORD.fullmatch(value):
                yield path, leaf, value
        elif isinstance(value, Mapping) and depth < MAX_DEPTH:
            yield from _flatten(path, value, depth + 1)


def _segment(key: str) -> str:
    return _NOT_NAME.sub("_", key.strip()) or "_"


class _Words:
    """The words last shown for each word-valued gauge of one recorder."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, dict[str, None]] = {}


_words_by_recorder: weakref.WeakKeyDictionary[Any, _Words] = weakref.WeakKeyDictionary()
_words_by_id: dict[int, _Words] = {}  # recorders that cannot be weakly referenced
_words_lock = threading.Lock()
_reported: set[str] = set()


def _words_of(recorder: Any) -> _Words:
    with _words_lock:
        try:
            words = _words_by_recorder.get(recorder)
            if words is None:
                words = _words_by_recorder[recorder] = _Words()
        except TypeError:
            words = _words_by_id.setdefault(id(recorder), _Words())
        return words


def feed_drivers(recorder: Any, drivers: Mapping[str, Any]) -> int:
    """Set a gauge for every figure of every driver's stats (not the recorder's own). Returns how many."""
    words = _words_of(recorder)
    fed = 0
    for concern, driver in drivers.items():
        if concern == "metrics":
            continue
        try:
            stats = driver.stats()
            figures = list(flatten_stats(concern, stats)) if isinstance(stats, Mapping) else []
        except Exception as exc:
            _report_once(f"stats of {concern}", exc)
            continue
        for name, leaf, value in figures:
            if isinstance(value, str):
                fed += _set_word(recorder, words, name, leaf, value)
            elif not math.isnan(value):
                recorder.set_gauge(name, value, None)
                fed += 1
    return fed


def _set_word(recorder: Any, words: _Words, name: str, leaf: str, word: str) -> int:
    with words.lock:
        seen = words.seen.setdefault(name, {})
        if word not in seen:
            if len(seen) >= MAX_WORDS:
                return 0
            seen[word] = None
        for other in seen:
            recorder.set_gauge(name, 1.0 if other == word else 0.0, {leaf: other})
        return len(seen)


# --- plugins' samples ------------------------------------------------------------


def feed_samples(recorder: Any, hooks: Any) -> int:
    """Set a gauge for each sample the plugins return from ``ofelia_collect_metrics``. Returns how many."""
    try:
        samples = hooks.collect_metrics()
    except Exception as exc:
        _report_once("ofelia_collect_metrics", exc)
        return 0
    fed = 0
    for sample in samples:
        try:
            labels = {str(k): str(v) for k, v in sample.labels.items()} if sample.labels else None
            recorder.set_gauge(str(sample.name), float(sample.value), labels)
            fed += 1
        except Exception as exc:
            _report_once(f"metric sample {getattr(sample, 'name', sample)!r}", exc)
    return fed


def _report_once(what: str, exc: Exception) -> None:
    key = f"{what}: {type(exc).__name__}"
    with _words_lock:
        if key in _reported:
            return
        _reported.add(key)
    logger.opt(exception=exc).warning(
        "metrics: {} failed ({}: {}); skipped at this scrape (logged once, later failures are not)",
        what, type(exc).__name__, exc,
    )


__all__ = [
    "CONTENT_TYPES",
    "MAX_WORDS",
    "NOOP_DRIVER",
    "concern_prefix",
    "feed_drivers",
    "feed_samples",
    "flatten_stats",
    "is_noop",
    "render_metrics",
]
