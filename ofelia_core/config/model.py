"""The configuration model every source (INI, YAML, labels) is read into.

Values keep where they came from, so every error can name the file and line
(INI), the path (YAML) or the label, the job and the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Location:
    """Where a section or a value was read."""

    source: str
    line: int | None = None
    path: str | None = None

    def __str__(self) -> str:
        if self.line is not None:
            return f"{self.source}:{self.line}"
        if self.path:
            return f"{self.source} ({self.path})"
        return self.source


@dataclass
class Section:
    """One INI section or YAML mapping.

    ``kind`` is ``global``, ``drivers``, a concern (``docker-client``,
    ``token-manager``, ``buffer-pool``, ``metrics``), a job type
    (``job-exec``, ...) or ``webhook``; ``name`` is the job or webhook name.
    Keys are lower-cased. A key given several times holds a list of values.
    """

    kind: str
    name: str | None
    location: Location
    values: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)

    def where(self, key: str) -> Location:
        return self.locations.get(key, self.location)

    def set(self, key: str, value: Any, location: Location, *, repeatable: bool = True) -> None:
        """Store ``value``; a repeated key becomes a list, as Ofelia's INI reader does."""
        key = key.lower()
        if key in self.values and repeatable:
            current = self.values[key]
            if not isinstance(current, list):
                current = [current]
            current.append(value)
            self.values[key] = current
        else:
            self.values[key] = value
            self.locations[key] = location


@dataclass(frozen=True)
class Diagnostic:
    """A validation finding. ``level`` is ``error`` or ``warning``."""

    level: Literal["error", "warning"]
    location: Location
    message: str
    job: str | None = None
    key: str | None = None
    suggestion: str | None = None

    def __str__(self) -> str:
        parts = [f"{self.location}:"]
        if self.job:
            parts.append(f'job "{self.job}":')
        if self.key:
            parts.append(f"key '{self.key}':")
        parts.append(self.message)
        text = " ".join(parts)
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return f"{self.level}: {text}"


@dataclass
class Config:
    """Everything read from the configuration sources, merged."""

    sources: list[str] = field(default_factory=list)
    global_: Section = field(default_factory=lambda: Section("global", None, Location("<defaults>")))
    drivers: Section = field(default_factory=lambda: Section("drivers", None, Location("<defaults>")))
    #: One section per concern, keyed by concern (``docker-client`` ...).
    concerns: dict[str, Section] = field(default_factory=dict)
    #: Jobs by name; ``Section.kind`` is the job type.
    jobs: dict[str, Section] = field(default_factory=dict)
    webhooks: dict[str, Section] = field(default_factory=dict)

    def concern_settings(self, concern: str) -> dict[str, Any]:
        section = self.concerns.get(concern)
        return dict(section.values) if section else {}
