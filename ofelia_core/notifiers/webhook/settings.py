"""A ``[webhook "NAME"]`` section read and checked: pure functions, used by config
validation (so ``ofelia validate`` names the file, section and key) and by the notifier.

No message here contains a value of ``url``, ``id`` or ``secret``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ofelia_hookspecs.settings import parse_duration

from .http import parse_target
from .presets import DEFAULT_PRESET, PRESETS, Preset, Settings
from .render import Template

TRIGGERS = ("always", "error", "success", "skipped")
#: As the fork: a webhook reports failures unless told otherwise.
DEFAULT_TRIGGER = "error"
DEFAULT_TIMEOUT = 10.0
DEFAULT_RETRY_COUNT = 3
DEFAULT_RETRY_DELAY = 5.0


class WebhookConfigError(ValueError):
    """A bad setting; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"key '{key}': {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    preset: Preset
    settings: Settings
    trigger: str = DEFAULT_TRIGGER
    timeout: float = DEFAULT_TIMEOUT
    retry_count: int = DEFAULT_RETRY_COUNT
    retry_delay: float = DEFAULT_RETRY_DELAY
    template: Template | None = None

    @property
    def signing_key(self) -> str:
        """``secret`` signs the body when the preset does not use it as the service's token."""
        if self.settings.secret and not self.preset.uses_secret(self.settings):
            return self.settings.secret
        return ""

    @property
    def secrets(self) -> tuple[str, ...]:
        """Values never to show: the URL (built or given), its token parts and the secret."""
        values = [self.settings.url, self.settings.id, self.settings.secret]
        with contextlib.suppress(KeyError, ValueError):
            values.append(self.preset.build_url(self.settings))
        return tuple(v for v in values if v)


def problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Every problem of a webhook section as ``(key, message)``; empty when it is usable."""
    try:
        parse_webhook("-", values)
    except WebhookConfigError as exc:
        return [(exc.key, exc.message)]
    return []


def parse_webhook(name: str, values: Mapping[str, Any]) -> WebhookConfig:
    """The section's values (keys lower-cased, raw strings or YAML scalars) as a config.

    Raises :class:`WebhookConfigError` naming the first bad key.
    """
    preset_name = _text(values, "preset").lower() or DEFAULT_PRESET
    preset = PRESETS.get(preset_name)
    if preset is None:
        raise WebhookConfigError("preset", f"unknown preset {preset_name!r}; known: {', '.join(PRESETS)}")
    settings = Settings(
        url=_text(values, "url"),
        id=_text(values, "id"),
        secret=_text(values, "secret"),
        link=_text(values, "link"),
        link_text=_text(values, "link-text"),
    )
    for key, message in preset.check(settings):
        raise WebhookConfigError(key, f"{message} (preset {preset.name})")
    try:
        parse_target(preset.build_url(settings))
    except ValueError as exc:
        # Name the key the user wrote: the URL, or the id it was built from.
        raise WebhookConfigError("url" if settings.url else "id", f"the webhook URL {exc}") from None
    if settings.link:
        try:
            parse_target(settings.link)
        except ValueError as exc:
            raise WebhookConfigError("link", f"{exc}") from None
    trigger = _text(values, "trigger").lower() or DEFAULT_TRIGGER
    if trigger not in TRIGGERS:
        raise WebhookConfigError("trigger", f"must be one of {', '.join(TRIGGERS)}, got {trigger!r}")
    template = None
    if _text(values, "template").strip():
        try:
            template = Template(_text(values, "template"))
        except ValueError as exc:
            raise WebhookConfigError("template", str(exc)) from None
    timeout = _number(values, "timeout", DEFAULT_TIMEOUT, to_seconds)
    if timeout <= 0:
        raise WebhookConfigError("timeout", "must be more than 0s")
    return WebhookConfig(
        name=name,
        preset=preset,
        settings=settings,
        trigger=trigger,
        timeout=timeout,
        retry_count=int(_number(values, "retry-count", DEFAULT_RETRY_COUNT, to_count)),
        retry_delay=_number(values, "retry-delay", DEFAULT_RETRY_DELAY, to_seconds),
        template=template,
    )


def _text(values: Mapping[str, Any], key: str) -> str:
    value = values.get(key)
    if value is None:
        return ""
    if isinstance(value, list):
        raise WebhookConfigError(key, f"given {len(value)} times, but takes one value")
    return str(value).strip()


def _number(values: Mapping[str, Any], key: str, default: float, convert: Any) -> float:
    raw = values.get(key)
    if raw is None or str(raw).strip() == "":
        return default
    if isinstance(raw, list):
        raise WebhookConfigError(key, f"given {len(raw)} times, but takes one value")
    try:
        return float(convert(raw))
    except ValueError as exc:
        raise WebhookConfigError(key, str(exc)) from None


# Plugins import only ofelia_hookspecs; these read values as the core's validation does.

TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"expected a boolean (true/false), got {value!r}")


def to_count(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError(f"expected a whole number, got {value!r}")
    if isinstance(value, int | float) and float(value).is_integer() and value >= 0:
        return int(value)
    text = str(value).strip()
    if not text.isdigit():
        raise ValueError(f"expected a whole number >= 0, got {value!r}")
    return int(text)


def to_seconds(value: Any) -> float:
    """A Go duration (``30s``), or seconds already (the core types duration settings as floats)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        seconds = parse_duration(str(value))
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative, got {value!r}")
    return seconds


def to_names(value: Any) -> list[str]:
    """A list setting (repeated, or comma-separated) as names, empty items dropped."""
    if value is None:
        return []
    items = value if isinstance(value, list | tuple) else [value]
    return [part.strip() for item in items for part in str(item).split(",") if part.strip()]
