"""Ofelia's Slack middleware, sent to a real local HTTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from ofelia_hookspecs.types import NotifierContext
from recording_server import RecordingServer, make_notice, running_server

from ofelia_core.notifiers import slack
from ofelia_core.notifiers.webhook.http import DeliveryError, HostRefused

TOKEN_PATH = "/services/T000/B000/XXXXSECRETXXXX"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from running_server()


def build(url: str, only_on_error: bool | None = None, **global_settings: object) -> slack.SlackNotifier:
    settings: dict[str, object] = {"slack-webhook": url, "slack-only-on-error": only_on_error}
    notifiers = slack.build(settings, NotifierContext(global_settings=global_settings))
    assert len(notifiers) == 1
    notifier = notifiers[0]
    assert isinstance(notifier, slack.SlackNotifier)
    return notifier


def test_posts_a_form_with_one_payload_field_holding_ofelias_message(server: RecordingServer) -> None:
    build(server.url(TOKEN_PATH)).send(make_notice("failed"))
    (request,) = server.wait_for(1)
    assert request.method == "POST"
    assert request.path == TOKEN_PATH
    assert request.header("Content-Type") == "application/x-www-form-urlencoded"
    form = request.form()
    assert list(form) == ["payload"]
    payload = json.loads(form["payload"][0])
    assert list(payload) == ["text", "username", "attachments", "icon_url"]  # Go's field order
    assert payload["username"] == "Ofelia"
    assert payload["icon_url"] == "https://raw.githubusercontent.com/mcuadros/ofelia/master/static/avatar.png"
    # Ofelia: "Job *%s* finished in *%s*, command _%q_" with Go's duration and quoting.
    assert payload["text"] == 'Job *backup* finished in *2.5s*, command _"pg_dump -U \\"app\\""_'
    assert payload["attachments"] == [{"color": "#F35A00", "title": "Execution failed", "text": "exit code 2"}]


@pytest.mark.parametrize(
    ("state", "colour", "title", "text"),
    [
        ("failed", "#F35A00", "Execution failed", "exit code 2"),
        ("timed_out", "#F35A00", "Execution failed", "stopped after max-runtime 1s"),
        ("cancelled", "#F35A00", "Execution failed", "stopped at shutdown"),
        ("skipped", "#FFA500", "Execution skipped", ""),
        ("missed", "#FFA500", "Execution skipped", ""),
        ("success", "#7CD197", "Execution successful", ""),
    ],
)
def test_attachment_colour_and_title_follow_the_outcome(state: str, colour: str, title: str, text: str) -> None:
    assert slack.message(make_notice(state))["attachments"] == [{"color": colour, "title": title, "text": text}]


@pytest.mark.parametrize(
    ("only_on_error", "sent"),
    [
        (None, {"success", "failed", "timed_out", "cancelled", "skipped", "missed"}),
        (False, {"success", "failed", "timed_out", "cancelled", "skipped", "missed"}),
        (True, {"failed", "timed_out", "cancelled"}),  # skipped is not Execution.Failed in Ofelia
    ],
)
def test_only_on_error_sends_failures_only(only_on_error: bool | None, sent: set[str]) -> None:
    notifier = build("http://127.0.0.1:9/x", only_on_error)
    states = ["success", "failed", "timed_out", "cancelled", "skipped", "missed"]
    assert {state for state in states if notifier.wants(make_notice(state))} == sent


def test_only_on_error_accepts_the_ini_string_form() -> None:
    assert not build("http://127.0.0.1:9/x", "true").wants(make_notice("success"))  # type: ignore[arg-type]


def test_json_is_encoded_as_gos_json_marshal() -> None:
    notice = make_notice("failed", job_name="a<b>&c", error="é <boom>")
    text = slack.go_json(slack.message(notice))
    assert "Job *a\\u003cb\\u003e\\u0026c*" in text
    assert '"text":"é \\u003cboom\\u003e"' in text  # UTF-8 kept, HTML characters escaped
    assert json.loads(text)["attachments"][0]["text"] == "é <boom>"


def test_go_quote_matches_strconv_quote() -> None:
    assert slack.go_quote('say "hi"\n\tnow\\') == '"say \\"hi\\"\\n\\tnow\\\\"'
    assert slack.go_quote("\x01é") == '"\\x01é"'


def test_no_webhook_means_no_notifier() -> None:
    assert slack.build({"slack-webhook": None}, NotifierContext()) == []
    assert slack.build({"slack-webhook": "  "}, NotifierContext()) == []


def test_a_failed_request_raises_without_the_url_token(server: RecordingServer) -> None:
    server.default = 500
    server.reply_body = f"no such hook {TOKEN_PATH}".encode()  # a server echoing the request
    with pytest.raises(DeliveryError) as caught:
        build(server.url(TOKEN_PATH)).send(make_notice("failed"))
    message = str(caught.value)
    assert "HTTP 500" in message
    assert f"http://127.0.0.1:{server.port}/…" in message
    assert "XXXXSECRETXXXX" not in message and "T000" not in message


def test_allowed_hosts_applies_to_slack_too(server: RecordingServer) -> None:
    notifier = build(server.url(TOKEN_PATH), None, **{"webhook-allowed-hosts": ["hooks.slack.com"]})
    with pytest.raises(HostRefused, match="not in webhook-allowed-hosts"):
        notifier.send(make_notice("failed"))
    assert server.requests == []


def test_registered_under_its_name() -> None:
    (spec,) = slack.ofelia_register_notifiers()
    assert spec.name == "slack"
    keys = {key.name: key for key in spec.keys}
    assert keys["slack-webhook"].secret
    assert keys["slack-only-on-error"].kind == "bool"


def test_only_on_error_without_a_webhook_is_a_warning() -> None:
    (spec,) = slack.ofelia_register_notifiers()
    assert spec.check is not None
    assert spec.check({"slack-webhook": None, "slack-only-on-error": True}) == [
        "slack-only-on-error is set but slack-webhook is not: nothing is posted to Slack"
    ]
    assert spec.check({"slack-webhook": "https://hooks.slack.com/x", "slack-only-on-error": True}) == []
