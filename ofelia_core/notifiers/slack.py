"""Ofelia's Slack middleware: ``slack-webhook`` and ``slack-only-on-error``.

The request is Ofelia's (middlewares/slack.go): a form POST whose ``payload``
field is the JSON message ``{"text", "username", "attachments", "icon_url"}``:
text ``Job *NAME* finished in *DURATION*, command _"COMMAND"_`` (Go's duration
and ``%q`` quoting), user name ``Ofelia``, Ofelia's avatar, and one attachment:
``Execution failed`` (#F35A00, the error as text), ``Execution skipped``
(#FFA500) or ``Execution successful`` (#7CD197). The JSON is encoded as Go's
``json.Marshal`` does (``<``, ``>``, ``&`` escaped).

Which runs: every run, or with ``slack-only-on-error`` only failed, timed-out and
cancelled ones (Ofelia sends when ``Failed || !OnlyOnError``, so skipped runs
are not errors). Unlike Ofelia, a failed request is retried and recorded, and
``webhook-allowed-hosts`` applies.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.settings import format_duration
from ofelia_hookspecs.types import FAILED_STATES, RUN_STATES, KeySpec, Notice, Notifier, NotifierContext, NotifierSpec

from .webhook import host_policy
from .webhook.http import HostPolicy, post
from .webhook.render import job_option
from .webhook.settings import to_bool

USERNAME = "Ofelia"
AVATAR_URL = "https://raw.githubusercontent.com/mcuadros/ofelia/master/static/avatar.png"
COLOUR_FAILED = "#F35A00"
COLOUR_SKIPPED = "#FFA500"
COLOUR_SUCCESS = "#7CD197"
TIMEOUT = 10.0
RETRY_COUNT = 3
RETRY_DELAY = 5.0

KEYS: tuple[KeySpec, ...] = (
    KeySpec("slack-webhook", secret=True, description="Slack incoming-webhook URL to post each run to."),
    KeySpec("slack-only-on-error", "bool", False, description="Post to Slack only when a run fails."),
)


def go_quote(text: str) -> str:
    """Go's ``%q`` (strconv.Quote): double quotes, backslash escapes, printable characters kept."""
    escapes = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}
    out = []
    for char in text:
        code = ord(char)
        if char in escapes:
            out.append(escapes[char])
        elif char.isprintable():
            out.append(char)
        elif code < 0x80:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return '"' + "".join(out) + '"'


def go_json(data: Any) -> str:
    """JSON as Go's ``json.Marshal`` writes it: compact, UTF-8, HTML characters escaped."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"),
                          ("\u2029", "\\u2029")):
        text = text.replace(char, escaped)
    return text


def message(notice: Notice) -> dict[str, Any]:
    """Ofelia's ``slackMessage`` for ``notice``, fields in Go's order."""
    text = (
        f"Job *{notice.job_name}* finished in *{format_duration(notice.duration)}*, "
        f"command _{go_quote(job_option(notice, 'command'))}_"
    )
    if notice.failed:
        attachment = {"color": COLOUR_FAILED, "title": "Execution failed", "text": notice.error or notice.state}
    elif notice.skipped:
        attachment = {"color": COLOUR_SKIPPED, "title": "Execution skipped", "text": ""}
    else:
        attachment = {"color": COLOUR_SUCCESS, "title": "Execution successful", "text": ""}
    return {"text": text, "username": USERNAME, "attachments": [attachment], "icon_url": AVATAR_URL}


class SlackNotifier:
    name = "slack"
    retry_count = RETRY_COUNT
    retry_delay = RETRY_DELAY

    def __init__(self, url: str, only_on_error: bool, policy: HostPolicy, timeout: float = TIMEOUT) -> None:
        self.url = url
        self.only_on_error = only_on_error
        self.policy = policy
        self.timeout = timeout
        self.states = FAILED_STATES if only_on_error else RUN_STATES

    def wants(self, notice: Notice) -> bool:
        return notice.state in self.states

    def send(self, notice: Notice) -> None:
        body = urlencode({"payload": go_json(message(notice))}).encode("ascii")
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        post(self.url, body, headers, timeout=self.timeout, policy=self.policy, secrets=(self.url,))


def build(settings: Mapping[str, Any], context: NotifierContext) -> Sequence[Notifier]:
    url = str(settings.get("slack-webhook") or "").strip()
    if not url:
        return []
    only = settings.get("slack-only-on-error")
    only_on_error = to_bool(only) if only not in (None, "") else False
    return [SlackNotifier(url, only_on_error, host_policy(context.global_settings))]


def check(settings: Mapping[str, Any]) -> Sequence[str]:
    """Settings that are valid but post nothing."""
    if settings.get("slack-only-on-error") and not str(settings.get("slack-webhook") or "").strip():
        return ["slack-only-on-error is set but slack-webhook is not: nothing is posted to Slack"]
    return []


@hookimpl
def ofelia_register_notifiers() -> list[NotifierSpec]:
    return [NotifierSpec("slack", KEYS, build, "Ofelia's Slack message to an incoming webhook.", check=check)]
