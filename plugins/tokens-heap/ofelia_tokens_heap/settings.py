"""The ``[token-manager]`` settings of the heap driver, parsed and validated.

Keys arrive lower-cased, from INI (strings) or YAML (ints, floats, strings);
``cleanup_interval`` is read as ``cleanup-interval``. Keys this driver does
not know are ignored: they may belong to another token manager driver, and a
rollback must never make a valid config invalid. Every error is a
``ValueError`` naming ``[token-manager] <key>`` (and the environment
variable, when one set it).

Environment overrides (``OFELIA_TOKEN_MANAGER_<KEY>``, an empty variable
counts as unset) win over the file for the keys only this driver knows.
``max-tokens`` has none, because the baseline reads it from the file only
and a rollback must keep the same cap.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ofelia_hookspecs.settings import DurationError, format_duration, parse_duration

SECTION = "token-manager"

DEFAULT_MAX_TOKENS = 10_000
DEFAULT_CLEANUP_BATCH_SIZE = 100
DEFAULT_CLEANUP_INTERVAL = 300.0  # 5m

#: The environment variable that overrides each key, for the keys that have one.
ENV_OVERRIDES: dict[str, str] = {
    "cleanup-batch-size": "OFELIA_TOKEN_MANAGER_CLEANUP_BATCH_SIZE",
    "cleanup-interval": "OFELIA_TOKEN_MANAGER_CLEANUP_INTERVAL",
}
#: Every key this driver reads.
KEYS: tuple[str, ...] = ("max-tokens", *ENV_OVERRIDES)

_PLAIN_SECONDS = re.compile(r"\d+(\.\d*)?|\.\d+")


@dataclass(frozen=True)
class HeapSettings:
    """What the heap token manager is built from; the defaults are the documented ones."""

    #: Most tokens held at once; issuing past it evicts the least recently used one.
    max_tokens: int = DEFAULT_MAX_TOKENS
    #: Most expired tokens one clean-up pass removes.
    cleanup_batch_size: int = DEFAULT_CLEANUP_BATCH_SIZE
    #: Seconds between clean-up passes of the background worker.
    cleanup_interval: float = DEFAULT_CLEANUP_INTERVAL

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ValueError(f"[{SECTION}] max-tokens: must be at least 1, got {self.max_tokens!r}")
        if self.cleanup_batch_size < 1:
            raise ValueError(f"[{SECTION}] cleanup-batch-size: must be at least 1, got {self.cleanup_batch_size!r}")
        if not math.isfinite(self.cleanup_interval) or self.cleanup_interval <= 0:
            raise ValueError(
                f"[{SECTION}] cleanup-interval: must be a positive duration, got {self.cleanup_interval!r}"
            )

    def describe(self) -> dict[str, Any]:
        """The settings as ``stats()`` shows them, with the keys' own names."""
        return {
            "max-tokens": self.max_tokens,
            "cleanup-batch-size": self.cleanup_batch_size,
            "cleanup-interval": format_duration(self.cleanup_interval),
        }


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


def _count(key: str, value: Any, env_name: str | None) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValueError(f"{_where(key, env_name)}: {value!r} is not a whole number")
    if number < 1:
        raise ValueError(f"{_where(key, env_name)}: must be at least 1, got {number}")
    return number


def _seconds(key: str, value: Any, env_name: str | None) -> float:
    """A Go duration (``5m``, ``30s``, ``500ms``) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"{_where(key, env_name)}: {value!r} is not a duration (write it like 5m or 30s)")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            seconds = float(text) if _PLAIN_SECONDS.fullmatch(text) else parse_duration(text)
        except DurationError as exc:
            raise ValueError(f"{_where(key, env_name)}: {exc}") from None
    else:
        raise ValueError(f"{_where(key, env_name)}: {value!r} is not a duration (write it like 5m or 30s)")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{_where(key, env_name)}: must be a positive duration, got {value!r}")
    return seconds


def parse_settings(settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> HeapSettings:
    """Validate the ``[token-manager]`` section (and the environment overrides) into :class:`HeapSettings`."""
    values = _normalized(settings)
    sources: dict[str, str | None] = dict.fromkeys(values)
    for key, variable in ENV_OVERRIDES.items():
        raw = (env or {}).get(variable, "")
        if raw.strip():
            values[key], sources[key] = raw.strip(), variable

    kwargs: dict[str, Any] = {}
    if "max-tokens" in values:
        kwargs["max_tokens"] = _count("max-tokens", values["max-tokens"], sources["max-tokens"])
    if "cleanup-batch-size" in values:
        kwargs["cleanup_batch_size"] = _count(
            "cleanup-batch-size", values["cleanup-batch-size"], sources["cleanup-batch-size"]
        )
    if "cleanup-interval" in values:
        kwargs["cleanup_interval"] = _seconds("cleanup-interval", values["cleanup-interval"],
                                              sources["cleanup-interval"])
    return HeapSettings(**kwargs)


__all__ = [
    "DEFAULT_CLEANUP_BATCH_SIZE",
    "DEFAULT_CLEANUP_INTERVAL",
    "DEFAULT_MAX_TOKENS",
    "ENV_OVERRIDES",
    "KEYS",
    "SECTION",
    "HeapSettings",
    "parse_settings",
]
