"""Describing driver choices for people (``ofelia plugins``) and files (the state directory)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .loading import driver_distribution
from .selection import Choice, installed_driver_names


def describe_choices(choices: Mapping[str, Choice]) -> list[dict[str, Any]]:
    """One record per concern: the chosen driver, its distribution and the source that chose it."""
    available = installed_driver_names()  # one scan of the installed distributions
    rows = []
    for key, choice in choices.items():
        concern = choice.concern
        distribution, version = driver_distribution(concern, choice.name)
        rows.append(
            {
                "concern": key,
                "driver": choice.name,
                "distribution": distribution,
                "version": version,
                "source": choice.source,
                "namespace": concern.namespace,
                "flag": concern.flag,
                "override": concern.override,
                "available": available[key],
            }
        )
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of ``describe_choices`` rows."""
    headers = ("concern", "driver", "distribution", "version", "chosen by")
    body = [(r["concern"], r["driver"], r["distribution"], r["version"], r["source"]) for r in rows]
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *body, strict=False)]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (headers, *body)]
    return "\n".join(lines)
