"""The ``[metrics]`` settings of the performance driver, parsed and validated.

Keys arrive lower-cased, from INI (strings) or YAML (numbers, bools, lists);
underscores are read as dashes (``sample_interval`` is ``sample-interval``).
Keys this driver does not know are ignored: they may belong to another metrics
driver, and a rollback must never make a valid config invalid. Every error is
a ``ValueError`` naming ``[metrics] <key>`` (and the environment variable, when
one set it).

Every key has an environment override named ``OFELIA_METRICS_`` + the key in
upper case with underscores (``alert-docker-p95`` ->
``OFELIA_METRICS_ALERT_DOCKER_P95``); it wins over the file, and an empty
variable counts as unset. (``OFELIA_METRICS`` alone is the concern's driver
name override, not a setting.)

Durations are a number of seconds or a Go duration (``1s``, ``1500ms``,
``5m``, ``1h``); sizes an integer of bytes or ``10MB``, ``512KiB``; a rate a
fraction (``0.8``) or a percentage (``80%``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from ofelia_hookspecs.settings import DurationError, parse_duration, parse_size

SECTION = "metrics"
ENV_PREFIX = "OFELIA_METRICS_"

#: Prometheus buckets (seconds) of driver operation latency: 0.5 ms to 1 min.
DEFAULT_HISTOGRAM_BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)
#: Prometheus buckets (seconds) of job run durations: 10 ms to 1 h.
DEFAULT_RUN_BUCKETS: tuple[float, ...] = (
    0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
)
#: Docker operations that wait for something other than the engine's answer (a
#: container's exit, its stop timeout, a registry): left out of the API latency alert.
DEFAULT_DOCKER_EXCLUDE: tuple[str, ...] = ("container_wait", "container_stop", "image_pull")
#: Bytes one held token costs, measured with tracemalloc (baseline dict: ~265 B,
#: heap driver: ~335 B per token, subject strings included), rounded up.
DEFAULT_TOKEN_BYTES = 350


@dataclass(frozen=True)
class PerfSettings:
    """What the performance recorder is built from; the defaults are the documented ones."""

    #: Prometheus ``le`` bounds (seconds) of ``ofelia_operation_duration_seconds``.
    histogram_buckets: tuple[float, ...] = DEFAULT_HISTOGRAM_BUCKETS
    #: Prometheus ``le`` bounds (seconds) of ``ofelia_job_run_duration_seconds``.
    run_buckets: tuple[float, ...] = DEFAULT_RUN_BUCKETS
    #: Recent window of the JSON's ``window`` quantiles and of the Docker p95 alert.
    quantile_window: float = 300.0
    #: Window of the throughput figure (runs per second).
    throughput_window: float = 60.0
    #: Seconds between two samples of the background sampler; 0 runs no thread.
    sample_interval: float = 15.0
    #: Jobs with their own series; later jobs are counted under ``job="_other"``.
    max_jobs: int = 10_000
    #: Gauge series kept from ``set_gauge`` (drivers' stats, plugins' samples); later ones are dropped.
    max_gauges: int = 20_000
    #: Bytes one held token is estimated to cost (token manager memory estimate).
    token_bytes: int = DEFAULT_TOKEN_BYTES
    #: Log alerts (a warning when one is crossed, an info when back to normal).
    alerts: bool = True
    #: Docker API latency p95 (seconds) over ``quantile_window`` above which the alert fires.
    alert_docker_p95: float = 1.0
    #: Docker API calls the window needs before its p95 is judged.
    alert_docker_min_calls: int = 20
    #: Docker operations left out of the API latency figure (streams always are).
    alert_docker_exclude: tuple[str, ...] = DEFAULT_DOCKER_EXCLUDE
    #: Seconds the circuit breaker may stay open (or half-open) before the alert fires.
    alert_breaker_open: float = 300.0
    #: Bytes the token manager's estimated memory may grow by within ``alert_token_growth_window``.
    alert_token_growth: int = 10_000_000
    #: The window of the token memory growth alert.
    alert_token_growth_window: float = 3600.0
    #: Buffer pool hit rate (0..1) over ``alert_buffer_window`` below which the alert fires.
    alert_buffer_hit_rate: float = 0.8
    #: The window of the buffer pool hit rate alert.
    alert_buffer_window: float = 900.0
    #: Buffer acquisitions the window needs before its hit rate is judged.
    alert_buffer_min_acquisitions: int = 100

    def __post_init__(self) -> None:
        for name in ("quantile_window", "throughput_window", "alert_docker_p95", "alert_breaker_open",
                     "alert_token_growth_window", "alert_buffer_window"):
            if not getattr(self, name) > 0:
                raise ValueError(f"[{SECTION}] {key_of(name)}: must be positive, got {getattr(self, name)!r}")
        if self.sample_interval < 0:
            raise ValueError(f"[{SECTION}] sample-interval: must be 0 (off) or positive, got {self.sample_interval!r}")
        if not 0.0 <= self.alert_buffer_hit_rate <= 1.0:
            raise ValueError(f"[{SECTION}] alert-buffer-hit-rate: must be between 0 and 1, "
                             f"got {self.alert_buffer_hit_rate!r}")
        for name in ("histogram_buckets", "run_buckets"):
            bounds = getattr(self, name)
            if not bounds or any(not math.isfinite(b) or b <= 0 for b in bounds):
                raise ValueError(f"[{SECTION}] {key_of(name)}: need positive finite bounds, got {bounds!r}")


def key_of(field_name: str) -> str:
    return field_name.replace("_", "-")


def env_name(key: str) -> str:
    return ENV_PREFIX + key.upper().replace("-", "_")


#: Every key this driver reads, with its kind.
KINDS: dict[str, str] = {
    "histogram-buckets": "buckets",
    "run-buckets": "buckets",
    "quantile-window": "duration",
    "throughput-window": "duration",
    "sample-interval": "duration0",
    "max-jobs": "count",
    "max-gauges": "count",
    "token-bytes": "size",
    "alerts": "bool",
    "alert-docker-p95": "duration",
    "alert-docker-min-calls": "count",
    "alert-docker-exclude": "names",
    "alert-breaker-open": "duration",
    "alert-token-growth": "size",
    "alert-token-growth-window": "duration",
    "alert-buffer-hit-rate": "rate",
    "alert-buffer-window": "duration",
    "alert-buffer-min-acquisitions": "count",
}
KEYS: tuple[str, ...] = tuple(KINDS)
#: The environment variable that overrides each key.
ENV_OVERRIDES: dict[str, str] = {key: env_name(key) for key in KEYS}

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _where(key: str, source: str | None) -> str:
    return f"[{SECTION}] {key}" + (f" (from {source})" if source else "")


def _seconds(value: Any, where: str, *, allow_zero: bool) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a duration such as 30s, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text) if _NUMBER.fullmatch(text) else parse_duration(text)
        except DurationError as exc:
            raise ValueError(f"{where}: {exc}") from None
    if not math.isfinite(seconds) or seconds < 0 or (seconds == 0 and not allow_zero):
        raise ValueError(f"{where}: must be a positive duration, got {value!r}")
    return seconds


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


def _size(value: Any, where: str) -> int:
    try:
        return parse_size(value.strip() if isinstance(value, str) else value)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _boolean(value: Any, where: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{where}: {value!r} is not a boolean: use one of true/false, 1/0, yes/no, on/off")


def _rate(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected a fraction such as 0.8 or a percentage such as 80%, got {value!r}")
    if isinstance(value, int | float):
        rate = float(value)
    else:
        text = str(value).strip()
        percent = text.endswith("%")
        text = text.removesuffix("%").strip()
        if not _NUMBER.fullmatch(text):
            raise ValueError(f"{where}: expected a fraction such as 0.8 or a percentage such as 80%, got {value!r}")
        rate = float(text) / 100 if percent else float(text)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"{where}: must be between 0 and 1 (0% and 100%), got {value!r}")
    return rate


def _items(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        return [part for item in value for part in (_items(item) if isinstance(item, str) else [item])]
    return [value]


def _buckets(value: Any, where: str) -> tuple[float, ...]:
    bounds = []
    for item in _items(value):
        if isinstance(item, bool):
            raise ValueError(f"{where}: {item!r} is not a number of seconds")
        try:
            bound = _seconds(item, where, allow_zero=False)
        except ValueError:
            raise ValueError(f"{where}: {item!r} is not a positive number of seconds (or a duration such as 250ms)") \
                from None
        bounds.append(bound)
    if not bounds:
        raise ValueError(f"{where}: no bounds given (write them like 0.005,0.05,0.5,5)")
    return tuple(sorted(set(bounds)))


def _names(value: Any, where: str) -> tuple[str, ...]:
    names = [str(item).strip() for item in _items(value)]
    bad = [name for name in names if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", name)]
    if bad:
        raise ValueError(f"{where}: {bad[0]!r} is not an operation name (such as container_wait)")
    return tuple(names)


def _parse(kind: str, value: Any, where: str) -> Any:
    if kind == "buckets":
        return _buckets(value, where)
    if kind == "duration":
        return _seconds(value, where, allow_zero=False)
    if kind == "duration0":
        return _seconds(value, where, allow_zero=True)
    if kind == "count":
        return _count(value, where)
    if kind == "size":
        return _size(value, where)
    if kind == "bool":
        return _boolean(value, where)
    if kind == "rate":
        return _rate(value, where)
    if kind == "names":
        if isinstance(value, str) and value.strip().lower() in ("", "none"):
            return ()
        return _names(value, where)
    raise AssertionError(kind)  # pragma: no cover


def _normalized(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Keys lower-cased with underscores read as dashes; the dashed spelling wins a tie."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        name = str(key).strip().lower()
        dashed = name.replace("_", "-")
        if dashed in out and name != dashed:
            continue
        out[dashed] = value
    return out


def parse_settings(settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> PerfSettings:
    """Validate the ``[metrics]`` section (and the ``OFELIA_METRICS_*`` overrides) into :class:`PerfSettings`."""
    values = _normalized(settings)
    env = env or {}
    kwargs: dict[str, Any] = {}
    known = {f.name for f in fields(PerfSettings)}
    for key, kind in KINDS.items():
        variable = ENV_OVERRIDES[key]
        raw_env = env.get(variable, "")
        if raw_env.strip():
            value: Any = raw_env.strip()
            where = _where(key, variable)
        elif key in values:
            value = values[key]
            where = _where(key, None)
        else:
            continue
        field_name = key.replace("-", "_")
        assert field_name in known
        kwargs[field_name] = _parse(kind, value, where)
    return PerfSettings(**kwargs)


__all__ = [
    "DEFAULT_DOCKER_EXCLUDE",
    "DEFAULT_HISTOGRAM_BUCKETS",
    "DEFAULT_RUN_BUCKETS",
    "DEFAULT_TOKEN_BYTES",
    "ENV_OVERRIDES",
    "ENV_PREFIX",
    "KEYS",
    "SECTION",
    "PerfSettings",
    "env_name",
    "parse_settings",
]
