"""Parsing helpers for settings, shared by the core and by drivers.

A driver validates its own section's settings; these parse the two value
forms that recur across concerns, so every driver accepts the same spellings:

- Go durations (``time.ParseDuration``): an optional sign, then one or more
  ``<number><unit>`` parts, where the number may have a fraction (``1.5h``,
  ``.5s``) and the unit is ``ns``, ``us``, ``µs``/``μs``, ``ms``, ``s``, ``m`` or
  ``h``: ``1h30m``, ``500ms``, ``2h45m30.5s``. As in Go, ``0`` is the only
  number allowed without a unit; any other bare number is an error that
  suggests the ``s`` form.
- Sizes: an integer of bytes or ``512KiB``, ``10MiB``, ``1.5G``; ``K``/``M``/``G``
  and ``KiB``/``MiB``/``GiB`` are powers of 1024, ``KB``/``MB``/``GB`` of 1000.
"""

from __future__ import annotations

import re

_DURATION_UNITS: dict[str, float] = {
    "ns": 1e-9,
    "us": 1e-6,
    "\u00b5s": 1e-6,  # micro sign, what Go prints
    "\u03bcs": 1e-6,  # Greek mu, what people type
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d*\.?\d*)([a-zA-Z\u00b5\u03bc]*)")
_BARE_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)")


class DurationError(ValueError):
    """A string that is not a Go duration; the message says why."""


def parse_duration(text: str) -> float:
    """Parse a Go duration into seconds (may be negative, as in Go)."""
    original = text
    text = text.strip()
    if not text:
        raise DurationError("empty duration; write it like 30s, 5m or 1h30m")
    sign = 1.0
    if text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if not text:
        raise DurationError(f"invalid duration '{original.strip()}'")
    if text == "0":
        return 0.0
    if _BARE_NUMBER.fullmatch(text):
        raise DurationError(f"missing unit in duration '{original.strip()}' (did you mean '{text}s'?)")
    total = 0.0
    pos = 0
    while pos < len(text):
        match = _PART.match(text, pos)
        number, unit = (match.group(1), match.group(2)) if match else ("", "")
        if not number or number == ".":
            raise DurationError(f"invalid duration '{original.strip()}': expected a number at '{text[pos:]}'")
        if unit not in _DURATION_UNITS:
            if unit:
                hint = f"unknown unit '{unit}'"
            elif match and match.end() < len(text):
                hint = f"unexpected '{text[match.end()]}' after '{number}'"
            else:
                hint = f"missing unit after '{number}'"
            raise DurationError(f"invalid duration '{original.strip()}': {hint} (units: ns, us, ms, s, m, h)")
        assert match is not None
        total += float(number) * _DURATION_UNITS[unit]
        pos = match.end()
    return sign * total


def format_duration(seconds: float) -> str:
    """Seconds as Go prints a duration: ``1h30m0s``, ``1.5s``, ``500ms``, ``0s``."""
    nanos = round(seconds * 1e9)
    if nanos == 0:
        return "0s"
    sign = "-" if nanos < 0 else ""
    nanos = abs(nanos)
    if nanos < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("\u00b5s", 1_000), ("ns", 1)):
            if nanos >= size:
                return sign + _trim(nanos / size) + unit
    hours, rest = divmod(nanos, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    text = _trim(rest / 1e9) + "s"
    if hours or minutes:
        text = f"{minutes}m{text}"
    if hours:
        text = f"{hours}h{text}"
    return sign + text


def _trim(value: float) -> str:
    """A number without trailing zeros: 1.50 -> 1.5, 2.0 -> 2."""
    return f"{value:.9f}".rstrip("0").rstrip(".")


_SIZE_UNITS: dict[str, int] = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "kb": 1000,
    "m": 1024**2,
    "mib": 1024**2,
    "mb": 1000**2,
    "g": 1024**3,
    "gib": 1024**3,
    "gb": 1000**3,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)", re.IGNORECASE | re.ASCII)


def parse_size(value: object) -> int:
    """A byte count from an int or a size string (``"10MiB"``, ``"512 KiB"``, ``"1.5G"``).

    Raises ``ValueError`` for anything else, for unknown units and for sizes
    below one byte.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (match := _SIZE.fullmatch(value.strip())):
        number, unit = match.groups()
        multiplier = _SIZE_UNITS.get(unit.lower())
        if multiplier is None:
            raise ValueError(
                f"unknown size unit {unit!r} in {value!r}: use B, KiB, MiB, GiB (or K, M, G), KB, MB, GB"
            )
        size = int(float(number) * multiplier) if "." in number else int(number) * multiplier
    else:
        raise ValueError(f"not a size: {value!r} (an integer of bytes, or a size such as 10MiB)")
    if size < 1:
        raise ValueError(f"a size must be at least one byte, got {value!r}")
    return size
