"""Webhook notifiers: selection, triggers, signing, templates, time limits, allowed hosts
and secrets kept out of errors; requests go to a real local server."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import time
from collections.abc import Iterator
from typing import Any

import pytest
from ofelia_hookspecs.types import NotifierContext
from recording_server import HANG, RecordingServer, make_certificate, make_notice, running_server

from ofelia_core.notifiers import webhook
from ofelia_core.notifiers.webhook import WebhookNotifier, signature_headers
from ofelia_core.notifiers.webhook.http import DeliveryError, HostPolicy, HostRefused, post, tls_context
from ofelia_core.notifiers.webhook.settings import parse_webhook

STATES = ("success", "failed", "timed_out", "cancelled", "skipped", "missed")


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from running_server()


def notifier(values: dict[str, Any], policy: HostPolicy | None = None, name: str = "ops") -> WebhookNotifier:
    return WebhookNotifier(parse_webhook(name, values), policy or HostPolicy())


# --- triggers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("trigger", "sent"),
    [
        (None, {"failed", "timed_out", "cancelled"}),  # the fork's default: error
        ("error", {"failed", "timed_out", "cancelled"}),
        ("success", {"success"}),
        ("skipped", {"skipped", "missed"}),
        ("always", set(STATES)),
        ("ALWAYS", set(STATES)),
    ],
)
def test_trigger_selects_the_runs_sent(trigger: str | None, sent: set[str]) -> None:
    values = {"url": "http://127.0.0.1:9/x"} | ({"trigger": trigger} if trigger else {})
    hook = notifier(values)
    assert {state for state in STATES if hook.wants(make_notice(state))} == sent


def test_an_unknown_trigger_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match="key 'trigger': must be one of always, error, success, skipped"):
        parse_webhook("x", {"url": "http://h/", "trigger": "sometimes"})


# --- selection with the override rule -------------------------------------------------------------


def context(**global_settings: Any) -> NotifierContext:
    sections = {"ops": {"url": "http://127.0.0.1:9/ops"}, "dev": {"url": "http://127.0.0.1:9/dev", "trigger": "always"}}
    return NotifierContext(webhooks=sections, global_settings=global_settings, hostname="h")


def names(built: Any) -> list[str]:
    return [n.name for n in built]


def test_a_jobs_webhooks_select_sections_in_order_without_duplicates() -> None:
    assert names(webhook.build({"webhooks": ["dev, ops", "dev"]}, context())) == ["webhook:dev", "webhook:ops"]


def test_the_global_webhooks_apply_when_the_job_sets_none() -> None:
    # The core hands build() the global values when the job sets none of the notifier's keys.
    assert names(webhook.build({"webhooks": "ops"}, context(webhooks="ops"))) == ["webhook:ops"]
    assert names(webhook.build({"webhooks": None}, context(**{"webhook-webhooks": "dev"}))) == ["webhook:dev"]


def test_an_empty_job_list_turns_the_global_ones_off() -> None:
    assert webhook.build({"webhooks": ""}, context(**{"webhook-webhooks": "dev"})) == []


def test_an_undefined_name_is_skipped_and_the_rest_kept() -> None:
    assert names(webhook.build({"webhooks": "nope, ops"}, context())) == ["webhook:ops"]


def test_a_bad_allowed_hosts_setting_is_refused_at_build_time() -> None:
    with pytest.raises(ValueError, match=r"\[global\] webhook-allowed-hosts: 'https://x/y' is not a host name"):
        webhook.build({"webhooks": "ops"}, context(**{"webhook-allowed-hosts": "https://x/y"}))


def test_retry_settings_come_from_the_section() -> None:
    hook = notifier({"url": "http://h/", "retry-count": "5", "retry-delay": "250ms", "timeout": "2s"})
    assert (hook.retry_count, hook.retry_delay, hook.config.timeout) == (5, 0.25, 2.0)
    default = notifier({"url": "http://h/"})
    assert (default.retry_count, default.retry_delay, default.config.timeout) == (3, 5.0, 10.0)


# --- signing -----------------------------------------------------------------------------------------


def test_secret_signs_the_body_with_hmac_sha256_over_timestamp_and_body(server: RecordingServer) -> None:
    before = int(time.time())
    notifier({"url": server.url(), "secret": "s3cr3t-key"}).send(make_notice("failed"))
    (request,) = server.wait_for(1)
    stamp = request.header("X-Ofelia-Timestamp")
    assert stamp is not None and before <= int(stamp) <= int(time.time())
    expected = hmac.new(b"s3cr3t-key", stamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.header("X-Ofelia-Signature") == f"sha256={expected}"
    assert "s3cr3t-key" not in request.body.decode() and "s3cr3t-key" not in str(request.headers)


def test_a_tampered_body_does_not_verify() -> None:
    headers = signature_headers("k", b'{"a":1}', now=1000)
    forged = hmac.new(b"k", b"1000." + b'{"a":2}', hashlib.sha256).hexdigest()
    assert headers == {"X-Ofelia-Timestamp": "1000", "X-Ofelia-Signature": headers["X-Ofelia-Signature"]}
    assert headers["X-Ofelia-Signature"] != f"sha256={forged}"


def test_a_secret_the_preset_uses_as_its_token_does_not_sign(server: RecordingServer) -> None:
    hook = notifier({"preset": "ntfy", "url": server.url("/topic"), "secret": "tk_x"})
    hook.send(make_notice("failed"))
    (request,) = server.wait_for(1)
    assert request.header("Authorization") == "Bearer tk_x"
    assert request.header("X-Ofelia-Signature") is None


# --- templates -----------------------------------------------------------------------------------------


def test_a_json_template_replaces_the_body_with_escaped_values(server: RecordingServer) -> None:
    template = '{"msg": "{job} {status} ({exit_code})", "err": "{error}", "host": "{hostname}"}'
    notice = make_notice("failed", error='bad "quote"\nline')
    notifier({"url": server.url(), "template": template}).send(notice)
    (request,) = server.wait_for(1)
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"msg": "backup failed (2)", "err": 'bad "quote"\nline', "host": "host-1"}


def test_a_text_template_is_sent_as_text_with_a_preset_destination(server: RecordingServer) -> None:
    notifier({"preset": "ntfy", "url": server.url("/t"), "template": "{job} took {duration}"}).send(make_notice())
    (request,) = server.wait_for(1)
    assert request.body == b"backup took 2.5s"
    assert request.header("Content-Type") == "text/plain; charset=utf-8"
    assert request.header("Title") == "backup: failed"  # the preset's headers stay


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{job} {nope}", r"unknown placeholder\(s\) \{nope\}"),
        ('{"a": {job}}', "starts like JSON but is not valid JSON with its placeholders filled in"),
    ],
)
def test_a_bad_template_is_a_configuration_error(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"key 'template': {message}"):
        parse_webhook("x", {"url": "http://h/", "template": template})


# --- time limit and failures ------------------------------------------------------------------------


def test_a_server_that_never_answers_fails_after_the_timeout(server: RecordingServer) -> None:
    server.default = HANG
    hook = notifier({"url": server.url("/slow/TOKEN123456"), "timeout": "300ms"})
    # The server never answers: without the time limit this send would not return.
    with pytest.raises(DeliveryError, match=r"no answer within 0\.3s") as caught:
        hook.send(make_notice())
    assert "TOKEN123456" not in str(caught.value)


def test_an_error_status_raises_with_the_status_and_without_the_path(server: RecordingServer) -> None:
    server.default = 503
    with pytest.raises(DeliveryError, match=r"HTTP 503 Service Unavailable") as caught:
        notifier({"url": server.url("/hook/SECRETPATH99?token=QUERYTOKEN99")}).send(make_notice())
    text = str(caught.value)
    assert "SECRETPATH99" not in text and "QUERYTOKEN99" not in text


def test_redirects_are_not_followed(server: RecordingServer) -> None:
    server.default = 302
    with pytest.raises(DeliveryError, match="redirects are not followed"):
        notifier({"url": server.url()}).send(make_notice())
    assert len(server.requests) == 1


def test_a_refused_connection_names_host_and_port_only() -> None:
    with pytest.raises(DeliveryError) as caught:
        post("http://127.0.0.1:9/tok/SEKRET12345", b"x", {}, timeout=2, policy=HostPolicy())
    assert str(caught.value).startswith("http://127.0.0.1:9/…: ")
    assert "SEKRET12345" not in str(caught.value)


def test_https_verifies_the_certificate_for_the_host_name(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = make_certificate(str(tmp_path))
    server = RecordingServer(tls=(cert, key)).start()
    tls_context.cache_clear()
    try:
        url = f"https://localhost:{server.port}/tls/TLSTOKEN12345"
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED") as caught:
            post(url, b"{}", {}, timeout=5, policy=HostPolicy())
        assert "TLSTOKEN12345" not in str(caught.value)
        # Trusted, it is reached: the connection goes to the checked address, TLS names the host.
        monkeypatch.setenv("SSL_CERT_FILE", cert)
        tls_context.cache_clear()  # the CA store is read once per process
        assert post(url, b"{}", {}, timeout=5, policy=HostPolicy()).status == 200
        assert server.wait_for(1)[0].path == "/tls/TLSTOKEN12345"
        # One context serves every request (building one costs ~40 ms of CPU).
        assert tls_context() is tls_context()
    finally:
        tls_context.cache_clear()
        server.stop()


# --- allowed hosts ------------------------------------------------------------------------------------


def test_a_host_outside_the_list_is_refused_before_any_request(server: RecordingServer) -> None:
    policy = HostPolicy.parse("hooks.slack.com, *.example.com")
    with pytest.raises(HostRefused, match=r"host 127\.0\.0\.1 is not in webhook-allowed-hosts"):
        notifier({"url": server.url()}, policy).send(make_notice())
    assert server.requests == []


@pytest.mark.parametrize("allowed", ["127.0.0.1", "127.0.0.0/8", "localhost, 127.0.0.1", "*"])
def test_a_listed_host_address_or_network_is_reached(server: RecordingServer, allowed: str) -> None:
    notifier({"url": server.url()}, HostPolicy.parse(allowed)).send(make_notice())
    assert len(server.wait_for(1)) == 1


def test_the_default_allows_loopback_and_refuses_link_local_metadata(server: RecordingServer) -> None:
    notifier({"url": server.url()}).send(make_notice())  # self-hosted ntfy, gotify... on the same host
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[::ffff:169.254.169.254]/",
                "http://[fe80::1]/", "http://100.100.100.200/"):
        with pytest.raises(HostRefused, match="link-local or cloud metadata address"):
            post(url, b"", {}, timeout=1, policy=HostPolicy())


def test_a_metadata_address_is_reached_only_when_listed_by_address() -> None:
    # The name matches, but what it resolves to is checked too (DNS cannot smuggle it in).
    by_name = HostPolicy.parse("*.internal, metadata")
    with pytest.raises(HostRefused):
        by_name.check("metadata", [ipaddress.ip_address("169.254.169.254")])
    HostPolicy.parse("169.254.169.254").check("metadata", [ipaddress.ip_address("169.254.169.254")])
    HostPolicy.parse("*").check("metadata", [ipaddress.ip_address("169.254.169.254")])


def test_wildcards_match_subdomains_only() -> None:
    policy = HostPolicy.parse(["*.example.com"])
    policy.check("a.example.com", [ipaddress.ip_address("93.184.216.34")])
    policy.check("A.B.Example.COM.", [ipaddress.ip_address("93.184.216.34")])
    for host in ("example.com", "badexample.com", "example.com.evil.net"):
        with pytest.raises(HostRefused):
            policy.check(host, [ipaddress.ip_address("93.184.216.34")])


@pytest.mark.parametrize("bad", ["https://hooks.slack.com/x", "*, hooks.slack.com", "user@host", "*"])
def test_allowed_hosts_entries_are_checked(bad: str) -> None:
    if bad == "*":
        assert HostPolicy.parse(bad).any_host
        return
    with pytest.raises(ValueError):
        HostPolicy.parse(bad)


# --- registration ------------------------------------------------------------------------------------


def test_registered_as_a_notifier_with_global_keys() -> None:
    (spec,) = webhook.ofelia_register_notifiers()
    assert spec.name == "webhook" and [k.name for k in spec.keys] == ["webhooks"]
    (batch,) = webhook.ofelia_add_config_keys()
    assert batch.section == "global"
    assert {k.name for k in batch.keys} == {"webhooks", "webhook-webhooks", "webhook-allowed-hosts"}


def test_the_plugin_is_installed_on_the_ofelia_entry_point_group() -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep.value for ep in entry_points(group="ofelia")}
    assert found.get("slack") == "ofelia_core.notifiers.slack"
    assert found.get("webhook") == "ofelia_core.notifiers.webhook"
