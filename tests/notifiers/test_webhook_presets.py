"""Each preset's request, sent to a real local server, checked against the fields its
service documents (the page is named in ofelia_core/notifiers/webhook/presets.py)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from ofelia_hookspecs.types import Notice
from recording_server import Recorded, RecordingServer, make_notice, running_server

from ofelia_core.notifiers.webhook import WebhookNotifier
from ofelia_core.notifiers.webhook.http import HostPolicy
from ofelia_core.notifiers.webhook.render import variables
from ofelia_core.notifiers.webhook.settings import parse_webhook


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from running_server()


def send(server: RecordingServer, notice: Notice, path: str = "/hook", **values: Any) -> Recorded:
    config = parse_webhook("test", {"url": server.url(path), **values})
    WebhookNotifier(config, HostPolicy()).send(notice)
    return server.wait_for(1)[-1]


def url_for(notice: Notice, **values: Any) -> str:
    config = parse_webhook("test", values)
    return config.preset.request(notice, variables(notice), config.settings).url


# --- Slack: https://api.slack.com/messaging/webhooks -----------------------------------------


def test_slack_posts_json_text_and_mrkdwn_blocks(server: RecordingServer) -> None:
    request = send(server, make_notice("failed", job_name="db <prod> & co"), preset="slack",
                   link="https://logs.example.com/x", **{"link-text": "Logs"})
    assert request.header("Content-Type", ).startswith("application/json")  # type: ignore[union-attr]
    body = request.json()
    assert body["text"] == "Job db <prod> & co failed in 2.5s"  # the plain notification fallback
    blocks = body["blocks"]
    assert all(block["type"] in ("section", "context") for block in blocks)
    headline = blocks[0]["text"]
    assert headline["type"] == "mrkdwn"
    assert "*Job db &lt;prod&gt; &amp; co*" in headline["text"]  # Slack's three escapes
    fields = [field["text"] for field in blocks[1]["fields"]]
    assert "*State*\nfailed" in fields and "*Exit code*\n2" in fields
    assert blocks[2]["text"]["text"] == "*Error*\n```exit code 2```"
    assert blocks[-1] == {"type": "context", "elements": [{"type": "mrkdwn", "text": "<https://logs.example.com/x|Logs>"}]}
    assert all(len(block.get("text", {}).get("text", "")) <= 3000 for block in blocks)


def test_slack_url_is_built_from_id_and_secret_as_the_fork_does() -> None:
    url = url_for(make_notice(), preset="slack", id="T0001/B0001", secret="tok")
    assert url == "https://hooks.slack.com/services/T0001/B0001/tok"


def test_slack_long_error_stays_within_the_section_limit() -> None:
    config = parse_webhook("t", {"preset": "slack", "url": "http://x/y"})
    notice = make_notice("failed", error="e" * 10_000)
    body = json.loads(config.preset.request(notice, variables(notice), config.settings).body)
    assert all(len(block["text"]["text"]) <= 3000 for block in body["blocks"] if "text" in block)


# --- Discord: https://discord.com/developers/docs/resources/webhook#execute-webhook ----------


def test_discord_posts_content_and_one_embed(server: RecordingServer) -> None:
    body = send(server, make_notice("failed"), preset="discord").json()
    assert body["username"] == "Ofelia"
    assert body["content"] == "Job backup failed in 2.5s"
    assert body["allowed_mentions"] == {"parse": []}
    (embed,) = body["embeds"]
    assert embed["title"] == "backup: failed"
    assert embed["description"] == "exit code 2"
    assert embed["color"] == 0xF35A00 and isinstance(embed["color"], int)
    assert {"name": "State", "value": "failed", "inline": True} in embed["fields"]
    assert embed["timestamp"] == "2023-11-14T22:13:22.500Z"  # ISO 8601


@pytest.mark.parametrize(("state", "colour"), [("success", 0x7CD197), ("skipped", 0xFFA500)])
def test_discord_colour_follows_the_outcome(state: str, colour: int) -> None:
    config = parse_webhook("t", {"preset": "discord", "url": "http://x/y"})
    notice = make_notice(state)
    body = json.loads(config.preset.request(notice, variables(notice), config.settings).body)
    assert body["embeds"][0]["color"] == colour


def test_discord_respects_the_documented_limits() -> None:
    config = parse_webhook("t", {"preset": "discord", "url": "http://x/y"})
    notice = make_notice("failed", job_name="j" * 3000, error="e" * 10_000)
    body = json.loads(config.preset.request(notice, variables(notice), config.settings).body)
    assert len(body["content"]) <= 2000
    assert len(body["embeds"][0]["title"]) <= 256
    assert len(body["embeds"][0]["description"]) <= 4096


def test_discord_url_is_built_from_id_and_secret() -> None:
    url = url_for(make_notice(), preset="discord", id="123", secret="abc")
    assert url == "https://discord.com/api/webhooks/123/abc"


# --- Teams: Adaptive Card in a message's attachments (learn.microsoft.com, connectors-using) --


def test_teams_posts_an_adaptive_card_message(server: RecordingServer) -> None:
    body = send(server, make_notice("failed"), preset="teams", link="https://logs.example.com/").json()
    assert body["type"] == "message"
    (attachment,) = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    assert attachment["contentUrl"] is None
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["version"] == "1.2"
    kinds = [element["type"] for element in card["body"]]
    assert kinds == ["TextBlock", "FactSet", "TextBlock"]
    assert card["body"][0]["color"] == "Attention"
    assert {"title": "State", "value": "failed"} in card["body"][1]["facts"]
    assert card["actions"] == [{"type": "Action.OpenUrl", "title": "View details", "url": "https://logs.example.com/"}]


# --- ntfy: https://docs.ntfy.sh/publish/ -------------------------------------------------------


def test_ntfy_posts_the_message_as_body_with_title_priority_and_tags_headers(server: RecordingServer) -> None:
    request = send(server, make_notice("failed"), path="/ops-alerts", preset="ntfy", secret="tk_abc")
    assert request.path == "/ops-alerts"
    assert request.header("Title") == "backup: failed"
    assert request.header("Priority") == "high"
    assert request.header("Tags") == "rotating_light"
    assert request.header("Authorization") == "Bearer tk_abc"
    assert request.header("Content-Type") == "text/plain; charset=utf-8"
    text = request.body.decode()
    assert text.startswith("Job backup failed in 2.5s on host-1\nError: exit code 2")
    assert "connection refused" in text


@pytest.mark.parametrize(("state", "priority", "tag"), [("success", "default", "white_check_mark"),
                                                        ("skipped", "low", "fast_forward")])
def test_ntfy_priority_and_tag_follow_the_outcome(state: str, priority: str, tag: str) -> None:
    config = parse_webhook("t", {"preset": "ntfy", "id": "topic"})
    notice = make_notice(state)
    headers = config.preset.request(notice, variables(notice), config.settings).headers
    assert (headers["Priority"], headers["Tags"]) == (priority, tag)
    assert "Authorization" not in headers


def test_ntfy_non_ascii_title_is_rfc2047_encoded_and_body_stays_under_4096_bytes(server: RecordingServer) -> None:
    notice = make_notice("failed", job_name="sauvegarde-é", stderr=("é" * 10_000).encode())
    request = send(server, notice, preset="ntfy")
    title = request.header("Title")
    assert title is not None and title.startswith("=?UTF-8?B?") and title.endswith("?=")
    assert base64.b64decode(title[10:-2]).decode() == "sauvegarde-é: failed"
    assert len(request.body) <= 4096  # beyond it ntfy turns the message into an attachment
    request.body.decode("utf-8")  # never cut inside a character


def test_ntfy_url_defaults_to_ntfy_sh_with_the_topic() -> None:
    assert url_for(make_notice(), preset="ntfy", id="my-topic") == "https://ntfy.sh/my-topic"


# --- Gotify: https://gotify.net/docs/pushmsg ---------------------------------------------------


def test_gotify_posts_title_message_priority_to_message_with_the_app_token_header(server: RecordingServer) -> None:
    config = parse_webhook("g", {"preset": "gotify", "url": server.url("/gotify"), "secret": "AppTok3n"})
    WebhookNotifier(config, HostPolicy()).send(make_notice("failed"))
    (request,) = server.wait_for(1)
    assert request.path == "/gotify/message"
    assert request.header("X-Gotify-Key") == "AppTok3n"
    assert "AppTok3n" not in request.path  # the token stays out of the URL (and access logs)
    body = request.json()
    assert body["title"] == "backup: failed"
    assert body["message"].startswith("Job backup failed in 2.5s")
    assert body["priority"] == 8 and isinstance(body["priority"], int)
    assert body["extras"]["client::display"] == {"contentType": "text/plain"}


def test_gotify_needs_the_server_url_and_the_token() -> None:
    with pytest.raises(ValueError, match="key 'secret'"):
        parse_webhook("g", {"preset": "gotify", "url": "https://gotify.example.com"})


# --- healthchecks.io: https://healthchecks.io/docs/http_api/ -----------------------------------


@pytest.mark.parametrize(("state", "path"), [("success", "/ping/abc-uuid"), ("failed", "/ping/abc-uuid/fail"),
                                             ("timed_out", "/ping/abc-uuid/fail"), ("skipped", "/ping/abc-uuid/log"),
                                             ("missed", "/ping/abc-uuid/log")])
def test_healthchecks_signals_by_url_suffix(server: RecordingServer, state: str, path: str) -> None:
    request = send(server, make_notice(state), path="/ping/abc-uuid", preset="healthchecks", trigger="always")
    assert request.path == path
    assert request.header("Content-Type") == "text/plain; charset=utf-8"
    assert f"State:    {state}" in request.body.decode()


def test_healthchecks_keeps_a_configured_suffix_as_the_fork_does(server: RecordingServer) -> None:
    request = send(server, make_notice("failed"), path="/ping/abc-uuid/fail", preset="healthchecks")
    assert request.path == "/ping/abc-uuid/fail"


def test_healthchecks_body_is_capped_at_100kb_keeping_the_newest_output(server: RecordingServer) -> None:
    output = b"old\n" + b"x" * 300_000 + b"\nthe last line"
    request = send(server, make_notice("failed", stdout=output), path="/ping/u", preset="healthchecks")
    assert len(request.body) <= 100_000
    text = request.body.decode()
    assert text.startswith("Job:      backup")
    assert text.endswith("the last line") or "the last line" in text
    assert "old\n" not in text


def test_healthchecks_url_defaults_to_hc_ping_com() -> None:
    assert url_for(make_notice("success"), preset="healthchecks", id="abc-uuid") == "https://hc-ping.com/abc-uuid"
    assert url_for(make_notice("failed"), preset="healthchecks", id="abc-uuid") == "https://hc-ping.com/abc-uuid/fail"


# --- json-post: the fork's default payload -------------------------------------------------------


def test_json_post_is_the_default_and_has_the_forks_shape(server: RecordingServer) -> None:
    request = send(server, make_notice("failed"))
    assert request.header("Content-Type") == "application/json; charset=utf-8"
    body = request.json()
    assert set(body) == {"job", "execution", "host", "ofelia"}
    assert body["job"] == {"name": "backup", "command": 'pg_dump -U "app"', "schedule": "@daily", "type": "job-local"}
    execution = body["execution"]
    assert execution["status"] == "failed" and execution["state"] == "failed"
    assert execution["failed"] is True and execution["skipped"] is False
    assert execution["exit_code"] == 2
    assert execution["duration"] == "2.5s" and execution["duration_ns"] == 2_500_000_000
    assert execution["start_time"] == "2023-11-14T22:13:20.000Z"
    assert execution["output"] == "dumping...\n"
    assert body["host"]["hostname"] == "host-1"


def test_json_post_output_is_the_last_4000_characters() -> None:
    config = parse_webhook("t", {"url": "http://x/y"})
    notice = make_notice("failed", stdout=b"a" * 5000 + b"END")
    body = json.loads(config.preset.request(notice, variables(notice), config.settings).body)
    assert len(body["execution"]["output"]) == 4000
    assert body["execution"]["output"].endswith("END")


# --- the docs stay in step -------------------------------------------------------------------------


def test_the_docs_list_every_preset_with_its_page_and_every_placeholder() -> None:
    from pathlib import Path

    from ofelia_core.notifiers.webhook.presets import PRESETS
    from ofelia_core.notifiers.webhook.render import VARIABLES

    text = (Path(__file__).resolve().parents[2] / "docs" / "notifications.md").read_text(encoding="utf-8")
    for preset in PRESETS.values():
        assert f"| `{preset.name}` |" in text
        if preset.doc_url.startswith("https://"):
            assert preset.doc_url in text
    for name in VARIABLES:
        assert f"`{{{name}}}`" in text
