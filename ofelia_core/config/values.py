"""Turning raw config values (INI strings, YAML scalars, label strings) into typed ones.

Validation and the code that runs jobs use these same functions, so a value
that validates is read the same way at run time. Each raises ``ValueError``
with a message fit for a :class:`~.model.Diagnostic`.
"""

from __future__ import annotations

from typing import Any

from ofelia_hookspecs.settings import parse_duration
from ofelia_hookspecs.types import KeySpec

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def to_bool(value: Any) -> bool:
    """true/false/1/0/yes/no/on/off, any case; YAML booleans and 0/1 as they are."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean (true/false, yes/no, on/off, 1/0), got {value!r}")


def to_int(value: Any) -> int:
    """A whole number >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        value = int(value)
    try:
        number = int(str(value).strip(), 10)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None
    if number < 0:
        raise ValueError(f"expected a whole number >= 0, got {number}")
    return number


def to_duration(value: Any) -> float:
    """A Go duration (``30s``, ``1h30m``) in seconds, >= 0."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as 30s or 1h30m, got {value!r}")
    seconds = parse_duration(str(value))
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def to_list(value: Any, *, split_commas: bool = False) -> list[str]:
    """A repeatable key's values as strings; a single value becomes a one-item list.

    With ``split_commas``, each value is also split on commas (``a, b``), for
    keys that take comma lists such as ``depends-on`` or ``webhooks``.
    """
    items = value if isinstance(value, list) else [value]
    texts = [_text(item) for item in items]
    if split_commas:
        texts = [part.strip() for text in texts for part in text.split(",") if part.strip()]
    return texts


def coerce(spec: KeySpec, value: Any) -> Any:
    """``value`` converted to ``spec.kind``: bool, int, seconds (float), list of str, or str.

    A ``schedule`` value is returned as a stripped string; parse it with
    :func:`~.schedule.parse_schedule`, which needs the job's timezone.
    """
    if spec.kind == "list":
        return to_list(value)
    if isinstance(value, list):
        raise ValueError(f"takes one value, got {len(value)}")
    if spec.kind == "bool":
        return to_bool(value)
    if spec.kind == "int":
        return to_int(value)
    if spec.kind == "duration":
        return to_duration(value)
    return _text(value).strip() if spec.kind == "schedule" else _text(value)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
