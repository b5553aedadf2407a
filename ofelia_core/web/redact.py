"""The effective configuration for ``/api/config``, with every secret replaced by ``<redacted>``.

Three layers, so a secret a plugin forgot to mark still stays out:

1. keys marked ``secret`` by a job type, a plugin or the webhook sections
   (``smtp-password``, ``slack-webhook``, ``web-password-hash``,
   ``web-secret-key``, ``metrics-token``, webhook ``url`` and ``secret``);
2. undeclared keys, and ``environment`` variables, whose name looks secret
   (``password``, ``token``, ``webhook``, ...);
3. finally, any other string that *contains* one of the redacted values (a
   command built with the same ``${VAR}``) has that part replaced.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ofelia_hookspecs.types import KeySpec

from ..config.validate import WEBHOOK_KEYS
from ..config.values import coerce

if TYPE_CHECKING:
    from ..jobs import Job
    from ..runtime import Runtime
    from .settings import WebSettings

REDACTED = "<redacted>"
SENSITIVE_WORDS = (
    "password", "passwd", "secret", "token", "webhook", "credential", "api_key", "apikey", "api-key", "private",
)
#: Shorter values are not scrubbed from other strings (too many false matches); they are still redacted as values.
MIN_SCRUB_LENGTH = 4


def looks_secret(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SENSITIVE_WORDS)


class Redactor:
    def __init__(self, secret_keys: Iterable[str], plain_keys: Iterable[str]) -> None:
        self.secret_keys = frozenset(secret_keys)
        self.plain_keys = frozenset(plain_keys) - self.secret_keys
        self.found: set[str] = set()  # the values redacted, scrubbed from other strings at the end

    def section(self, values: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in values.items():
            if key in self.secret_keys or (key not in self.plain_keys and looks_secret(key)):
                out[key] = self._hide(value)
            elif key == "environment":
                out[key] = [self._variable(item) for item in _as_list(value)]
            else:
                out[key] = _plain(value)
        return out

    def scrub(self, data: Any) -> Any:
        """Replace every redacted value found inside any other string."""
        needles = sorted((v for v in self.found if len(v) >= MIN_SCRUB_LENGTH), key=len, reverse=True)
        if not needles:
            return data
        return _map_strings(data, lambda text: _replace_all(text, needles))

    def _hide(self, value: Any) -> Any:
        if value is None or value == "" or value == []:
            return _plain(value)
        for item in _as_list(value):
            self.found.add(str(item))
        return REDACTED

    def _variable(self, item: Any) -> Any:
        name, sep, value = str(item).partition("=")
        if sep and looks_secret(name):
            self._hide(value)
            return f"{name}={REDACTED}"
        return _plain(item)


def effective_config(runtime: Runtime, jobs: Mapping[str, Job], settings: WebSettings) -> dict[str, Any]:
    config = runtime.loaded.config
    secret = set(runtime.secret_keys) | {spec.name for spec in WEBHOOK_KEYS if spec.secret}
    plain: set[str] = {spec.name for spec in WEBHOOK_KEYS if not spec.secret}
    global_specs: dict[str, KeySpec] = {}
    for batch in runtime.hooks.config_keys():
        plain.update(spec.name for spec in batch.keys if not spec.secret)
        if batch.section == "global":
            global_specs.update((spec.name, spec) for spec in batch.keys)
    for spec in runtime.hooks.job_types().values():
        plain.update(key.name for key in spec.keys if not key.secret)
    redactor = Redactor(secret, plain)
    global_values = {name: spec.default for name, spec in global_specs.items()}
    for key, value in config.global_.values.items():
        global_values[key] = _typed(global_specs.get(key), value)
    global_values.update({"enable-web": settings.enabled, "web-address": settings.address.text})
    data = {
        "sources": list(config.sources),
        "global": redactor.section(global_values),
        "drivers": redactor.section(config.drivers.values),
        "driver_settings": {name: redactor.section(section.values) for name, section in config.concerns.items()},
        "webhooks": {name: redactor.section(section.values) for name, section in config.webhooks.items()},
        "jobs": {
            name: {"type": job.type, "source": str(job.location) if job.location else None,
                   "options": redactor.section(job.options)}
            for name, job in sorted(jobs.items())
        },
    }
    # The [global] secrets as configured also count (a value set only through a label, say).
    for key, value in config.global_.values.items():
        if key in secret and value:
            redactor.found.update(str(item) for item in _as_list(value))
    scrubbed: dict[str, Any] = redactor.scrub(data)
    return scrubbed


def _typed(spec: KeySpec | None, value: Any) -> Any:
    """A configured bool or int as such (INI's ``"true"`` becomes ``true``); durations and the rest as written."""
    if spec is None or spec.secret or spec.kind not in ("bool", "int"):
        return value
    try:
        return coerce(spec, value)
    except ValueError:
        return value


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]


def _plain(value: Any) -> Any:
    """JSON-ready: mappings, lists and scalars as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return str(value)


def _map_strings(data: Any, change: Any) -> Any:
    if isinstance(data, str):
        return change(data)
    if isinstance(data, dict):
        return {change(k) if isinstance(k, str) else k: _map_strings(v, change) for k, v in data.items()}
    if isinstance(data, list):
        return [_map_strings(v, change) for v in data]
    return data


def _replace_all(text: str, needles: list[str]) -> str:
    for needle in needles:
        if needle in text:
            text = text.replace(needle, REDACTED)
    return text
