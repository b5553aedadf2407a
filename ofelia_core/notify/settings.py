"""Ofelia's rule for a notifier's settings: a job that sets any of the notifier's keys in
its own section replaces the ``[global]`` values of that notifier entirely; otherwise the
global values apply. Never a mix of the two."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ofelia_hookspecs.types import KeySpec, NotifierSpec

from ..config.values import coerce


def typed(spec: KeySpec, value: Any) -> Any:
    """``value`` as ``spec.kind`` says; accepts raw text (INI, labels, YAML) and values the
    core has already typed (a job's options: a duration is then seconds)."""
    if value is None:
        return None
    if spec.kind == "duration" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return coerce(spec, value)


def own_values(spec: NotifierSpec, values: Mapping[str, Any], explicit: Iterable[str] | None = None) -> dict[str, Any]:
    """The notifier's keys that a section sets itself (``explicit``: the keys its section
    names, when ``values`` also holds defaults, as a job's options do)."""
    names = {key.name for key in spec.keys}
    chosen = names & set(values if explicit is None else explicit)
    return {name: values.get(name) for name in chosen}


def resolve(spec: NotifierSpec, job_own: Mapping[str, Any], global_values: Mapping[str, Any]) -> dict[str, Any]:
    """Every key of ``spec`` typed, defaults filled in, from the job's own values when it
    sets any of them, else from ``[global]``. Raises ``ValueError`` for a value of the wrong kind."""
    source = job_own if job_own else {key.name: global_values[key.name] for key in spec.keys
                                      if key.name in global_values}
    settings: dict[str, Any] = {}
    for key in spec.keys:
        raw = source.get(key.name)
        settings[key.name] = typed(key, key.default if raw is None else raw)
    return settings


def secret_values(spec: NotifierSpec, settings: Mapping[str, Any]) -> tuple[str, ...]:
    """The values of the notifier's secret keys, to scrub from error messages before they are logged or stored."""
    found: list[str] = []
    for key in spec.keys:
        value = settings.get(key.name)
        if not key.secret or value in (None, "", []):
            continue
        found.extend(str(item) for item in (value if isinstance(value, list) else [value]))
    return tuple(found)
