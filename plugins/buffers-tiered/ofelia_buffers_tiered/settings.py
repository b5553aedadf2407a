"""The ``[buffer-pool]`` settings of the tiered driver, parsed and validated.

Keys arrive lower-cased, from INI (strings) or YAML (ints, bools, lists);
``max_held`` is read as ``max-held``. Keys this driver does not know are
ignored: they may belong to another buffer pool driver, and a rollback must
never make a valid config invalid. Every error is a ``ValueError`` naming
``[buffer-pool] <key>`` (and the environment variable, when one set it).

Environment overrides (an empty variable counts as unset) win over the file
for the keys that only this driver knows; ``max-size`` has none, because the
baseline reads it from the file only and a rollback must keep the same cap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ofelia_hookspecs.settings import parse_size

SECTION = "buffer-pool"
KiB = 1024
MiB = 1024 * 1024

DEFAULT_MAX_SIZE = 10 * MiB
#: 1 KiB, 256 KiB, 2.5 MiB, 5 MiB, 10 MiB.
DEFAULT_TIERS: tuple[int, ...] = (1 * KiB, 256 * KiB, 5 * MiB // 2, 5 * MiB, 10 * MiB)
DEFAULT_MAX_HELD = 256 * MiB
DEFAULT_PREWARM_PER_TIER = 50
DEFAULT_ADAPTIVE_WINDOW = 5
DEFAULT_ADAPTIVE_MAX_JOBS = 10_000

#: The environment variable that overrides each key, for the keys that have one.
ENV_OVERRIDES: dict[str, str] = {
    "tiers": "OFELIA_BUFFER_POOL_TIERS",
    "max-held": "OFELIA_BUFFER_POOL_MAX_HELD",
    "prewarm": "OFELIA_BUFFER_POOL_PREWARM",
    "prewarm-per-tier": "OFELIA_BUFFER_POOL_PREWARM_PER_TIER",
    "adaptive": "OFELIA_BUFFER_POOL_ADAPTIVE",
    "adaptive-window": "OFELIA_BUFFER_POOL_ADAPTIVE_WINDOW",
    "adaptive-max-jobs": "OFELIA_BUFFER_POOL_ADAPTIVE_MAX_JOBS",
}
#: Every key this driver reads.
KEYS: tuple[str, ...] = ("max-size", *ENV_OVERRIDES)

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})
_TRUE_WORDS = frozenset({"true", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "no", "off"})


@dataclass(frozen=True)
class TieredSettings:
    """What the tiered pool is built from; the defaults are the documented ones."""

    #: Most bytes kept per stream of a run; past it the newest bytes are kept.
    max_size: int = DEFAULT_MAX_SIZE
    #: Buffer sizes, ascending; see :attr:`effective_tiers` for how ``max_size`` clips them.
    tiers: tuple[int, ...] = DEFAULT_TIERS
    #: Most bytes (buffer capacities) the pool keeps idle for reuse; 0 keeps nothing.
    max_held: int = DEFAULT_MAX_HELD
    #: Buffers allocated per tier in the background when the pool is built; 0 is off.
    prewarm: int = 0
    #: Start each run at the tier its job's recent runs needed.
    adaptive: bool = True
    #: How many recent runs of a job and stream decide its starting tier.
    adaptive_window: int = DEFAULT_ADAPTIVE_WINDOW
    #: How many (job, stream) histories are kept; the least recently used is forgotten past it.
    adaptive_max_jobs: int = DEFAULT_ADAPTIVE_MAX_JOBS

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"[{SECTION}] max-size: must be at least one byte, got {self.max_size!r}")
        if not self.tiers or min(self.tiers) < 1:
            raise ValueError(f"[{SECTION}] tiers: need at least one size of one byte or more, got {self.tiers!r}")
        if self.max_held < 0:
            raise ValueError(f"[{SECTION}] max-held: must be 0 or more, got {self.max_held!r}")
        if self.prewarm < 0:
            raise ValueError(f"[{SECTION}] prewarm: must be 0 or more, got {self.prewarm!r}")
        if self.adaptive_window < 1:
            raise ValueError(f"[{SECTION}] adaptive-window: must be at least 1, got {self.adaptive_window!r}")
        if self.adaptive_max_jobs < 1:
            raise ValueError(f"[{SECTION}] adaptive-max-jobs: must be at least 1, got {self.adaptive_max_jobs!r}")

    @property
    def effective_tiers(self) -> tuple[int, ...]:
        """The capacities buffers really get: the tiers below ``max_size``, then ``max_size`` itself.

        A buffer never holds more than ``max_size`` bytes, so the top tier is
        always exactly the cap (with the defaults, 10 MiB).
        """
        below = sorted({size for size in self.tiers if size < self.max_size})
        return (*below, self.max_size)

    def prewarm_bytes(self) -> int:
        """Bytes that pre-warming asks for (before ``max-held`` caps it)."""
        return self.prewarm * sum(self.effective_tiers)


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


def _where(key: str, env_name: str | None) -> str:
    return f"[{SECTION}] {key}" + (f" (from {env_name})" if env_name else "")


def _size(key: str, value: Any, env_name: str | None, *, allow_zero: bool = False) -> int:
    if allow_zero and not isinstance(value, bool) and (value == 0 or (isinstance(value, str) and value.strip() == "0")):
        return 0
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"{_where(key, env_name)}: {exc}") from None


def _count(key: str, value: Any, env_name: str | None, *, minimum: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"{_where(key, env_name)}: {value!r} is not a whole number")
    if number < minimum:
        raise ValueError(f"{_where(key, env_name)}: must be at least {minimum}, got {number}")
    return number


def _boolean(key: str, value: Any, env_name: str | None) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{_where(key, env_name)}: {value!r} is not a boolean: use one of true/false, 1/0, yes/no, on/off")


def _tiers(value: Any, env_name: str | None) -> tuple[int, ...]:
    items: Iterable[Any]
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list | tuple):
        items = [part for item in value for part in (item.split(",") if isinstance(item, str) else [item])]
    else:
        items = [value]
    sizes = [_size("tiers", item.strip() if isinstance(item, str) else item, env_name)
             for item in items if not (isinstance(item, str) and not item.strip())]
    if not sizes:
        raise ValueError(f"{_where('tiers', env_name)}: no sizes given (write them like 1KiB,256KiB,2.5MiB)")
    return tuple(sorted(set(sizes)))


def _prewarm(value: Any, per_tier: int, env_name: str | None) -> int:
    """``false``/``true`` (``prewarm-per-tier`` buffers per tier) or a count per tier."""
    if isinstance(value, bool):
        return per_tier if value else 0
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE_WORDS:
            return per_tier
        if text in _FALSE_WORDS or text == "":
            return 0
    try:
        return _count("prewarm", value, env_name, minimum=0)
    except ValueError:
        raise ValueError(
            f"{_where('prewarm', env_name)}: {value!r} is neither true/false nor a number of buffers per tier"
        ) from None


def parse_settings(settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> TieredSettings:
    """Validate the ``[buffer-pool]`` section (and the environment overrides) into :class:`TieredSettings`."""
    values = _normalized(settings)
    sources: dict[str, str | None] = dict.fromkeys(values)
    for key, variable in ENV_OVERRIDES.items():
        raw = (env or {}).get(variable, "")
        if raw.strip():
            values[key], sources[key] = raw.strip(), variable

    def pick(key: str) -> tuple[bool, Any, str | None]:
        return key in values, values.get(key), sources.get(key)

    kwargs: dict[str, Any] = {}
    present, value, source = pick("max-size")
    if present:
        kwargs["max_size"] = _size("max-size", value, source)
    present, value, source = pick("tiers")
    if present:
        kwargs["tiers"] = _tiers(value, source)
    present, value, source = pick("max-held")
    if present:
        kwargs["max_held"] = _size("max-held", value, source, allow_zero=True)
    per_tier = DEFAULT_PREWARM_PER_TIER
    present, value, source = pick("prewarm-per-tier")
    if present:
        per_tier = _count("prewarm-per-tier", value, source, minimum=0)
    present, value, source = pick("prewarm")
    if present:
        kwargs["prewarm"] = _prewarm(value, per_tier, source)
    present, value, source = pick("adaptive")
    if present:
        kwargs["adaptive"] = _boolean("adaptive", value, source)
    present, value, source = pick("adaptive-window")
    if present:
        kwargs["adaptive_window"] = _count("adaptive-window", value, source, minimum=1)
    present, value, source = pick("adaptive-max-jobs")
    if present:
        kwargs["adaptive_max_jobs"] = _count("adaptive-max-jobs", value, source, minimum=1)
    return TieredSettings(**kwargs)


__all__ = [
    "DEFAULT_MAX_HELD",
    "DEFAULT_MAX_SIZE",
    "DEFAULT_PREWARM_PER_TIER",
    "DEFAULT_TIERS",
    "ENV_OVERRIDES",
    "KEYS",
    "SECTION",
    "TieredSettings",
    "parse_settings",
]
