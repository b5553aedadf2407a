"""Bundled payload formats, each following its service's documented API.

A preset turns a notice into one request: the URL (built from ``url``, or from
``id``/``secret`` as the fork's presets do), the body and the headers. Each
preset names the page its format comes from; the tests check the fields that
page documents. ``secret`` is the service's token where the preset uses one
(Slack and Discord URLs built from ``id``/``secret``, ntfy, Gotify); otherwise it
signs the body (see ``webhook.signature_headers``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from ofelia_hookspecs.types import Notice

from .render import status_word, to_json

COLOURS = {"failed": "#F35A00", "skipped": "#FFA500", "successful": "#7CD197"}  # Ofelia's Slack colours
AVATAR = "https://raw.githubusercontent.com/mcuadros/ofelia/master/static/avatar.png"


@dataclass(frozen=True)
class Settings:
    """The parts of a webhook's settings a preset reads."""

    url: str = ""
    id: str = ""
    secret: str = ""
    link: str = ""
    link_text: str = ""


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


Problem = tuple[str, str]  # (key, message)


@dataclass(frozen=True)
class Preset:
    name: str
    service: str
    #: Where the format is documented.
    doc_url: str
    #: The documented fields the payload sets, for the docs table.
    fields: str
    build_url: Callable[[Settings], str]
    build: Callable[[Notice, Mapping[str, str], Settings], tuple[bytes, dict[str, str]]]
    check: Callable[[Settings], list[Problem]]
    #: Whether ``secret`` is the service's token (else it signs the body).
    uses_secret: Callable[[Settings], bool] = lambda settings: False
    #: Adjusts the URL per notice (healthchecks' ``/fail`` suffix).
    url_for: Callable[[str, Notice], str] = lambda url, notice: url

    def request(self, notice: Notice, values: Mapping[str, str], settings: Settings) -> Request:
        body, headers = self.build(notice, values, settings)
        return Request(self.url_for(self.build_url(settings), notice), body, headers)

    def __reduce__(self) -> tuple[Any, ...]:
        # The table's presets hold lambdas: they pickle by name (for the notification process).
        return preset_named, (self.name,)


def preset_named(name: str) -> Preset:
    return PRESETS[name]


def _phrase(notice: Notice) -> str:
    return {
        "success": "succeeded",
        "failed": "failed",
        "timed_out": "timed out",
        "cancelled": "was cancelled",
        "skipped": "was skipped",
        "missed": "was missed",
    }.get(notice.state, notice.state)


def _summary(notice: Notice, values: Mapping[str, str]) -> str:
    if notice.skipped:
        return f"Job {notice.job_name} {_phrase(notice)}"
    return f"Job {notice.job_name} {_phrase(notice)} in {values['duration']}"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _need(settings: Settings, *keys: str) -> list[Problem]:
    return [(key, "is required by this preset") for key in keys if not getattr(settings, key)]


def _url_or(settings: Settings, *keys: str) -> list[Problem]:
    """``url``, or else every one of ``keys``."""
    if settings.url:
        return []
    missing = [key for key in keys if not getattr(settings, key)]
    if not missing:
        return []
    return [("url", f"is required by this preset unless {' and '.join(keys)} are set")]


# --- json-post --------------------------------------------------------------------------
# The fork's bundled default (docs/webhooks.md, "Payload shape"), plus the exact state.


def _json_post(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    data: dict[str, object] = {
        "job": {
            "name": notice.job_name,
            "command": values["command"],
            "schedule": values["schedule"],
            "type": notice.job_type,
        },
        "execution": {
            "id": notice.run_id,
            "status": status_word(notice),
            "state": notice.state,
            "failed": notice.failed,
            "skipped": notice.skipped,
            "trigger": notice.trigger,
            "attempt": notice.attempt,
            "exit_code": notice.exit_code,
            "duration": values["duration"],
            "duration_ns": round(notice.duration * 1e9),
            "start_time": values["started_at"] or None,
            "end_time": values["ended_at"] or None,
            "error": notice.error or "",
            "output": values["stdout"],
            "stderr": values["stderr"],
        },
        "host": {"hostname": notice.hostname, "timestamp": values["ended_at"] or None},
        "ofelia": {"version": _version()},
    }
    if settings.link:
        data["link"] = {"url": settings.link, "text": values["link_text"]}
    return to_json(data), {"Content-Type": "application/json; charset=utf-8"}


def _version() -> str:
    try:
        return metadata.version("ofelia")
    except metadata.PackageNotFoundError:
        return "dev"


# --- Slack ------------------------------------------------------------------------------
# https://api.slack.com/messaging/webhooks: POST JSON with `text` (the notification
# fallback) and `blocks`; https://api.slack.com/reference/surfaces/formatting#escaping:
# &, < and > are escaped in mrkdwn; section text up to 3000 characters.


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _slack(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    emojis = {"failed": ":red_circle:", "skipped": ":large_orange_circle:"}
    emoji = emojis.get(status_word(notice), ":large_green_circle:")
    headline = f"{emoji} *Job {_slack_escape(notice.job_name)}* {_phrase(notice)}"
    if not notice.skipped:
        headline += f" in *{values['duration']}*"
    facts = [("State", notice.state), ("Host", notice.hostname), ("Run", notice.run_id)]
    if values["exit_code"]:
        facts.append(("Exit code", values["exit_code"]))
    blocks: list[dict[str, object]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {
            "type": "section",
            "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{_slack_escape(v)}"} for k, v in facts],
        },
    ]
    if notice.error:
        error = _cut(_slack_escape(notice.error), 2900)
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"*Error*\n```{error}```"}})
    if settings.link:
        link = f"<{settings.link}|{_slack_escape(values['link_text'])}>"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": link}]})
    body = {"text": _summary(notice, values), "blocks": blocks}
    return to_json(body), {"Content-Type": "application/json; charset=utf-8"}


# --- Discord ----------------------------------------------------------------------------
# https://discord.com/developers/docs/resources/webhook#execute-webhook: JSON with
# `content` (up to 2000 characters), `username`, `avatar_url`, `embeds`,
# `allowed_mentions`; embed limits (title 256, description 4096, field value 1024):
# https://discord.com/developers/docs/resources/message#embed-object-embed-limits.


def _discord(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    status = status_word(notice)
    fields = [
        {"name": "State", "value": notice.state, "inline": True},
        {"name": "Duration", "value": values["duration"], "inline": True},
        {"name": "Host", "value": _cut(notice.hostname or "-", 1024), "inline": True},
    ]
    if values["exit_code"]:
        fields.append({"name": "Exit code", "value": values["exit_code"], "inline": True})
    embed: dict[str, object] = {
        "title": _cut(f"{notice.job_name}: {status}", 256),
        "description": _cut(notice.error or _summary(notice, values), 4096),
        "color": int(COLOURS[status][1:], 16),
        "fields": fields,
        "footer": {"text": f"run {notice.run_id}"},
    }
    if values["ended_at"]:
        embed["timestamp"] = values["ended_at"]
    if settings.link:
        embed["url"] = settings.link
    body = {
        "username": "Ofelia",
        "avatar_url": AVATAR,
        "content": _cut(_summary(notice, values), 2000),
        "embeds": [embed],
        # Job names and errors are not trusted to mention @everyone.
        "allowed_mentions": {"parse": []},
    }
    return to_json(body), {"Content-Type": "application/json"}


# --- Microsoft Teams --------------------------------------------------------------------
# https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/connectors-using
# ("Send Adaptive Cards using an Incoming Webhook"): a `message` whose `attachments` hold
# one `application/vnd.microsoft.card.adaptive` card; Workflows webhooks take the same body.


def _teams(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    status = status_word(notice)
    colour = {"failed": "Attention", "skipped": "Warning"}.get(status, "Good")
    facts = [
        {"title": "State", "value": notice.state},
        {"title": "Duration", "value": values["duration"]},
        {"title": "Host", "value": notice.hostname},
        {"title": "Run", "value": notice.run_id},
    ]
    if values["exit_code"]:
        facts.append({"title": "Exit code", "value": values["exit_code"]})
    card_body: list[dict[str, object]] = [
        {"type": "TextBlock", "text": _summary(notice, values), "weight": "Bolder", "size": "Medium",
         "color": colour, "wrap": True},
        {"type": "FactSet", "facts": facts},
    ]
    if notice.error:
        card_body.append({"type": "TextBlock", "text": _cut(notice.error, 2000), "wrap": True})
    card: dict[str, object] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.2",
        "body": card_body,
    }
    if settings.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": values["link_text"], "url": settings.link}]
    body = {
        "type": "message",
        "attachments": [{"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None,
                         "content": card}],
    }
    return to_json(body), {"Content-Type": "application/json"}


# --- ntfy -------------------------------------------------------------------------------
# https://docs.ntfy.sh/publish/: POST the message as the body to the topic URL, with
# `Title`, `Priority` (min, low, default, high, max), `Tags` and `Click` headers and
# `Authorization: Bearer <token>`; non-ASCII header values RFC 2047-encoded; a body
# over 4096 bytes would become an attachment, so it is cut.

NTFY_MAX_BODY = 4096


def _header_value(text: str) -> str:
    text = " ".join(text.split())  # no line breaks in a header
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode("utf-8")).decode("ascii") + "?="


def _ntfy(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    status = status_word(notice)
    lines = [_summary(notice, values) + (f" on {notice.hostname}" if notice.hostname else "")]
    if notice.error:
        lines.append(f"Error: {notice.error}")
    output = values["stderr"] or values["stdout"]
    if output:
        lines += ["", output]
    body = "\n".join(lines).encode("utf-8")
    if len(body) > NTFY_MAX_BODY:
        body = body[: NTFY_MAX_BODY - 3].decode("utf-8", "ignore").encode("utf-8") + "…".encode()
    headers = {
        "Content-Type": "text/plain; charset=utf-8",
        "Title": _header_value(f"{notice.job_name}: {status}"),
        "Priority": {"failed": "high", "skipped": "low"}.get(status, "default"),
        "Tags": {"failed": "rotating_light", "skipped": "fast_forward"}.get(status, "white_check_mark"),
    }
    if settings.link:
        headers["Click"] = settings.link
    if settings.secret:
        headers["Authorization"] = f"Bearer {settings.secret}"
    return body, headers


# --- Gotify -----------------------------------------------------------------------------
# https://gotify.net/docs/pushmsg and https://gotify.net/api-docs: POST /message with
# JSON `title`, `message`, `priority` (integer) and the app token in `X-Gotify-Key`;
# `extras` per https://gotify.net/docs/msgextras.


def _gotify_url(settings: Settings) -> str:
    base = settings.url.rstrip("/")
    return base if base.endswith("/message") else base + "/message"


def _gotify(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    status = status_word(notice)
    message = _summary(notice, values) + (f" on {notice.hostname}" if notice.hostname else "")
    if notice.error:
        message += f"\nError: {notice.error}"
    extras: dict[str, object] = {"client::display": {"contentType": "text/plain"}}
    if settings.link:
        extras["client::notification"] = {"click": {"url": settings.link}}
    body = {
        "title": f"{notice.job_name}: {status}",
        "message": message,
        "priority": {"failed": 8, "skipped": 2}.get(status, 5),
        "extras": extras,
    }
    return to_json(body), {"Content-Type": "application/json", "X-Gotify-Key": settings.secret}


# --- healthchecks.io --------------------------------------------------------------------
# https://healthchecks.io/docs/http_api/: POST to https://hc-ping.com/<uuid> (or
# <ping-key>/<slug>) signals success, `/fail` failure, `/log` an event that keeps the
# state, `/<exit-status>` too; https://healthchecks.io/docs/attaching_logs/: the body is
# stored, up to 100 kB. A notice comes at the end of a run, so `/start` is not sent.

HEALTHCHECKS_MAX_BODY = 100_000
_SIGNAL = re.compile(r"/(fail|start|log|\d{1,3})/?$")


def _healthchecks_url(settings: Settings) -> str:
    return settings.url or f"https://hc-ping.com/{settings.id.strip('/')}"


def _healthchecks_signal(url: str, notice: Notice) -> str:
    path = url.split("?", 1)[0]
    if _SIGNAL.search(path):
        return url  # the fork's way: the suffix is part of the configured URL
    suffix = "/fail" if notice.failed else "/log" if notice.skipped else ""
    base, sep, query = url.partition("?")
    return base.rstrip("/") + suffix + sep + query


def _healthchecks(notice: Notice, values: Mapping[str, str], settings: Settings) -> tuple[bytes, dict[str, str]]:
    head = [
        f"Job:      {notice.job_name}",
        f"State:    {notice.state}",
        f"Duration: {values['duration']}",
        f"Run:      {notice.run_id}",
        f"Host:     {notice.hostname}",
    ]
    if values["exit_code"]:
        head.append(f"Exit:     {values['exit_code']}")
    if notice.error:
        head.append(f"Error:    {notice.error}")
    text = "\n".join(head).encode("utf-8")
    room = HEALTHCHECKS_MAX_BODY - len(text)
    output = b""
    for name, data in (("stdout", notice.stdout), ("stderr", notice.stderr)):
        if data:
            output += f"\n\n--- {name} ---\n".encode() + data
    if room > 0 and output:
        # Keep the newest output: the end of a log says what went wrong.
        output = output[-room:] if len(output) > room else output
        text += output.decode("utf-8", "ignore").encode("utf-8")
    return text[:HEALTHCHECKS_MAX_BODY], {"Content-Type": "text/plain; charset=utf-8"}


# --- the table --------------------------------------------------------------------------


def _built_from(template: str) -> Callable[[Settings], str]:
    def build(settings: Settings) -> str:
        return settings.url or template.format(id=settings.id.strip("/"), secret=settings.secret)

    return build


def _from_url(settings: Settings) -> str:
    return settings.url


PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            "json-post", "any JSON receiver (the default)", "docs/notifications.md#json-post",
            "`job`, `execution` (`status`, `state`, `exit_code`, `error`, `output`, ...), `host`, `ofelia`",
            _from_url, _json_post, lambda s: _need(s, "url"),
        ),
        Preset(
            "slack", "Slack incoming webhook", "https://api.slack.com/messaging/webhooks",
            "`text` (fallback), `blocks` (mrkdwn `section`s, `context` link)",
            _built_from("https://hooks.slack.com/services/{id}/{secret}"), _slack,
            lambda s: _url_or(s, "id", "secret"), uses_secret=lambda s: not s.url,
        ),
        Preset(
            "discord", "Discord webhook", "https://discord.com/developers/docs/resources/webhook#execute-webhook",
            "`content`, `username`, `avatar_url`, `embeds` (`title`, `description`, `color`, `fields`, "
            "`timestamp`), `allowed_mentions`",
            _built_from("https://discord.com/api/webhooks/{id}/{secret}"), _discord,
            lambda s: _url_or(s, "id", "secret"), uses_secret=lambda s: not s.url,
        ),
        Preset(
            "teams", "Microsoft Teams (Workflows or Incoming Webhook)",
            "https://learn.microsoft.com/en-us/microsoftteams/platform/webhooks-and-connectors/how-to/"
            "connectors-using#send-adaptive-cards-using-an-incoming-webhook",
            "`type: message`, `attachments[0].contentType: application/vnd.microsoft.card.adaptive`, "
            "`content` an `AdaptiveCard` (`TextBlock`, `FactSet`, `Action.OpenUrl`)",
            _from_url, _teams, lambda s: _need(s, "url"),
        ),
        Preset(
            "ntfy", "ntfy", "https://docs.ntfy.sh/publish/",
            "body = message (≤ 4096 bytes); headers `Title`, `Priority`, `Tags`, `Click`, "
            "`Authorization: Bearer <secret>`",
            _built_from("https://ntfy.sh/{id}"), _ntfy, lambda s: _url_or(s, "id"),
            uses_secret=lambda s: True,
        ),
        Preset(
            "ntfy-token", "ntfy with an access token (the fork's name)", "https://docs.ntfy.sh/publish/",
            "as `ntfy`; `secret` required",
            _built_from("https://ntfy.sh/{id}"), _ntfy, lambda s: _url_or(s, "id") + _need(s, "secret"),
            uses_secret=lambda s: True,
        ),
        Preset(
            "gotify", "Gotify", "https://gotify.net/docs/pushmsg",
            "`POST <url>/message`; `title`, `message`, `priority`, `extras`; header `X-Gotify-Key: <secret>`",
            _gotify_url, _gotify, lambda s: _need(s, "url", "secret"), uses_secret=lambda s: True,
        ),
        Preset(
            "healthchecks", "healthchecks.io (or self-hosted)", "https://healthchecks.io/docs/http_api/",
            "success: the ping URL; failure: `/fail`; skipped or missed: `/log`; body: summary and output "
            "(≤ 100 kB)",
            _healthchecks_url, _healthchecks, lambda s: _url_or(s, "id"), url_for=_healthchecks_signal,
        ),
        Preset(
            "healthchecks-selfhosted", "self-hosted Healthchecks (the fork's name)",
            "https://healthchecks.io/docs/http_api/", "as `healthchecks`; `url` required",
            _healthchecks_url, _healthchecks, lambda s: _need(s, "url"), url_for=_healthchecks_signal,
        ),
    )
}
DEFAULT_PRESET = "json-post"
