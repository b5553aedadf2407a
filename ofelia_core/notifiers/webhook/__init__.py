"""Generic webhooks: ``[webhook "NAME"]`` sections that jobs select with ``webhooks = a, b``.

Registered as a plugin on the ``ofelia`` entry-point group. Selection follows
Ofelia's override rule: a job's ``webhooks`` replaces the global ``webhooks``
(or the fork's ``webhook-webhooks``) entirely; ``webhooks =`` (empty) turns them
off for that job. Each selected section becomes one notifier (``webhook:NAME``)
with its own trigger, timeout and retries; the core's delivery worker calls it
off the run's thread. See docs/notifications.md, "Webhooks".
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from typing import Any

from loguru import logger
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import (
    FAILED_STATES,
    RUN_STATES,
    SKIPPED_STATES,
    ConfigKeys,
    KeySpec,
    Notice,
    Notifier,
    NotifierContext,
    NotifierSpec,
)

from .http import HostPolicy, post
from .render import variables
from .settings import WebhookConfig, WebhookConfigError, parse_webhook, to_names

SIGNATURE_HEADER = "X-Ofelia-Signature"
TIMESTAMP_HEADER = "X-Ofelia-Timestamp"
ALLOWED_HOSTS_KEY = "webhook-allowed-hosts"

#: Read per job, with the override rule.
NOTIFIER_KEYS: tuple[KeySpec, ...] = (
    KeySpec("webhooks", "list", description="Names of `[webhook]` sections to notify; repeatable or comma-separated."),
)
#: ``[global]`` only: a job (whose labels may sit on any container) must not widen where requests go.
GLOBAL_KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "webhooks", "list",
        description="Webhooks for every job that sets no `webhooks` of its own; comma-separated.",
    ),
    KeySpec("webhook-webhooks", "list", description="The fork's name for the global `webhooks`."),
    KeySpec(
        ALLOWED_HOSTS_KEY, "list",
        description="Hosts notifications may reach: host names, `*.domain`, IP addresses or networks; `*` for "
        "any. Empty: any host except link-local and cloud metadata addresses.",
    ),
)


def signature_headers(key: str, body: bytes, now: float | None = None) -> dict[str, str]:
    """``X-Ofelia-Timestamp: <unix seconds>`` and ``X-Ofelia-Signature: sha256=<hex>``, the
    HMAC-SHA256 of ``<timestamp>.<body>``: the timestamp is signed too, so a receiver can
    refuse an old request replayed."""
    stamp = str(int(time.time() if now is None else now))
    digest = hmac.new(key.encode("utf-8"), stamp.encode("ascii") + b"." + body, hashlib.sha256).hexdigest()
    return {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: f"sha256={digest}"}


#: The run states each ``trigger`` (validated: one of these) sends.
TRIGGER_STATES: dict[str, frozenset[str]] = {
    "always": RUN_STATES, "error": FAILED_STATES, "skipped": SKIPPED_STATES, "success": frozenset({"success"}),
}


class WebhookNotifier:
    """One webhook for one job's notices."""

    def __init__(self, config: WebhookConfig, policy: HostPolicy) -> None:
        self.config = config
        self.policy = policy

    @property
    def name(self) -> str:
        return f"webhook:{self.config.name}"

    @property
    def states(self) -> frozenset[str]:
        return TRIGGER_STATES[self.config.trigger]

    @property
    def retry_count(self) -> int:
        return self.config.retry_count

    @property
    def retry_delay(self) -> float:
        return self.config.retry_delay

    def wants(self, notice: Notice) -> bool:
        return notice.state in self.states

    def send(self, notice: Notice) -> None:
        config = self.config
        settings = config.settings
        values = variables(notice, link=settings.link, link_text=settings.link_text)
        request = config.preset.request(notice, values, settings)
        body, headers = request.body, dict(request.headers)
        if config.template is not None:
            body = config.template.render(values)
            headers["Content-Type"] = config.template.content_type
        if config.signing_key:
            headers.update(signature_headers(config.signing_key, body))
        post(request.url, body, headers, timeout=config.timeout, policy=self.policy, secrets=config.secrets)


def host_policy(global_settings: Mapping[str, Any]) -> HostPolicy:
    try:
        return HostPolicy.parse(global_settings.get(ALLOWED_HOSTS_KEY))
    except ValueError as exc:
        raise ValueError(f"[global] {ALLOWED_HOSTS_KEY}: {exc}") from None


def selected(settings: Mapping[str, Any], global_settings: Mapping[str, Any]) -> list[str]:
    """The webhook names for a job: its own or the global ``webhooks``, else the fork's ``webhook-webhooks``."""
    raw = settings.get("webhooks")
    if raw is None:
        raw = global_settings.get("webhook-webhooks")
    return list(dict.fromkeys(to_names(raw)))


def build(settings: Mapping[str, Any], context: NotifierContext) -> Sequence[Notifier]:
    names = selected(settings, context.global_settings)
    if not names:
        return []
    policy = host_policy(context.global_settings)
    notifiers: list[Notifier] = []
    for name in names:
        section = context.webhooks.get(name)
        if section is None:
            continue  # validation already warned, naming the job and the file or label
        try:
            config = parse_webhook(name, section)
        except WebhookConfigError as exc:  # validation reports it with the file and line first
            logger.error(f'[webhook "{name}"] {exc}; it is skipped')
            continue
        notifiers.append(WebhookNotifier(config, policy))
    return notifiers


@hookimpl
def ofelia_register_notifiers() -> list[NotifierSpec]:
    return [NotifierSpec("webhook", NOTIFIER_KEYS, build, "POST to `[webhook]` sections, with presets.")]


@hookimpl
def ofelia_add_config_keys() -> list[ConfigKeys]:
    return [ConfigKeys("global", GLOBAL_KEYS)]
