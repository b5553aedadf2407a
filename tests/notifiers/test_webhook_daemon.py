"""End to end: a real Daemon in this process (job-local jobs, the history database, the
notification core's delivery worker) posting to a real local HTTP server."""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger
from notify_support import Started, start_daemon_from
from recording_server import RecordingServer, running_server

TOKEN = "T0KEN9SECRET9VALUE"


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from running_server()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str], Started]]:
    rigs: list[Started] = []

    def start(text: str) -> Started:
        rigs.append(start_daemon_from(tmp_path, text, len(rigs)))
        return rigs[-1]

    yield start
    for rig in rigs:
        rig.close()


def jobs(**extra: str) -> str:
    lines = "".join(f"{key} = {value}\n" for key, value in extra.items())
    return f"""
[job-local "hello"]
schedule = @manual
command = echo hello
{lines}
[job-local "broken"]
schedule = @manual
command = sh -c 'echo oops >&2; exit 3'
{lines}
"""


def test_a_run_posts_what_the_docs_say(server: RecordingServer, daemon: Callable[[str], Started]) -> None:
    rig = daemon(f"""
[webhook "ops"]
url = {server.url(f"/hooks/{TOKEN}")}
trigger = always
secret = signing-key
""" + jobs(webhooks="ops"))
    run = rig.run("hello")
    assert run.state == "success"
    (request,) = server.wait_for(1)
    assert request.path == f"/hooks/{TOKEN}"
    body = request.json()
    assert body["job"] == {"name": "hello", "command": "echo hello", "schedule": "@manual", "type": "job-local"}
    assert body["execution"]["id"] == run.id
    assert body["execution"]["status"] == "successful"
    assert body["execution"]["output"] == "hello\n"
    assert request.header("X-Ofelia-Signature", ).startswith("sha256=")  # type: ignore[union-attr]
    (record,) = rig.wait_notifications(run.id)
    assert (record.notifier, record.state, record.attempts) == ("webhook:ops", "sent", 1)


def test_trigger_error_sends_the_failed_run_only(server: RecordingServer, daemon: Callable[[str], Started]) -> None:
    rig = daemon(f'[webhook "ops"]\nurl = {server.url()}\n' + jobs(webhooks="ops"))  # trigger: error (default)
    ok = rig.run("hello")
    failed = rig.run("broken")
    (request,) = server.wait_for(1)
    assert request.json()["execution"]["id"] == failed.id
    assert request.json()["execution"]["error"] == "exit code 3"
    rig.wait_notifications(failed.id)
    rig.stop()
    assert len(server.requests) == 1
    assert rig.history.notifications([ok.id]).get(ok.id, []) == []


def test_a_jobs_webhooks_replace_the_global_ones(server: RecordingServer, daemon: Callable[[str], Started]) -> None:
    rig = daemon(f"""
[global]
webhooks = everyone

[webhook "everyone"]
url = {server.url("/everyone")}
trigger = always

[webhook "mine"]
url = {server.url("/mine")}
trigger = always

[job-local "inherits"]
schedule = @manual
command = true

[job-local "own"]
schedule = @manual
command = true
webhooks = mine
""")
    inherits, own = rig.run("inherits"), rig.run("own")
    requests = server.wait_for(2)
    paths = {r.json()["job"]["name"]: r.path for r in requests}
    assert paths == {"inherits": "/everyone", "own": "/mine"}
    rig.wait_notifications(inherits.id)
    rig.wait_notifications(own.id)
    rig.stop()
    assert len(server.requests) == 2


@pytest.mark.slow
def test_a_request_failing_twice_is_retried_until_sent(
    server: RecordingServer, daemon: Callable[[str], Started]
) -> None:
    server.script = [500, 500]
    rig = daemon(f"""
[webhook "ops"]
url = {server.url()}
trigger = always
retry-count = 3
retry-delay = 200ms
""" + jobs(webhooks="ops"))
    run = rig.run("hello")
    requests = server.wait_for(3)
    assert [r.json()["execution"]["id"] for r in requests] == [run.id] * 3
    assert all(b.at - a.at >= 0.18 for a, b in itertools.pairwise(requests))
    (record,) = rig.wait_notifications(run.id)
    assert (record.state, record.attempts) == ("sent", 3)


@pytest.mark.slow
def test_a_failed_delivery_is_recorded_logged_and_the_run_still_succeeds(
    server: RecordingServer, daemon: Callable[[str], Started], request: pytest.FixtureRequest
) -> None:
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(str(message)), level="DEBUG")
    request.addfinalizer(lambda: logger.remove(sink))
    server.default = 500
    server.reply_body = f"unknown hook /hooks/{TOKEN}".encode()
    rig = daemon(f"""
[webhook "ops"]
url = {server.url(f"/hooks/{TOKEN}")}
trigger = always
retry-count = 1
retry-delay = 100ms
""" + jobs(webhooks="ops"))
    run = rig.run("hello")
    assert run.state == "success"
    (record,) = rig.wait_notifications(run.id)
    assert (record.state, record.attempts) == ("failed", 2)
    assert record.error is not None and "HTTP 500" in record.error
    assert TOKEN not in record.error
    assert len(server.requests) == 2
    assert any("webhook:ops" in line and "HTTP 500" in line for line in lines)
    assert not any(TOKEN in line for line in lines)


def test_allowed_hosts_refusal_is_a_recorded_failure(server: RecordingServer, daemon: Callable[[str], Started]) -> None:
    rig = daemon(f"""
[global]
webhook-allowed-hosts = hooks.slack.com

[webhook "ops"]
url = {server.url()}
trigger = always
retry-count = 0
""" + jobs(webhooks="ops"))
    run = rig.run("hello")
    (record,) = rig.wait_notifications(run.id)
    assert record.state == "failed"
    assert record.error is not None and "not in webhook-allowed-hosts" in record.error
    assert server.requests == []


def test_ofelias_slack_keys_post_the_form_payload(
    server: RecordingServer, daemon: Callable[[str], Started], tmp_path: Path
) -> None:
    rig = daemon(f"""
[global]
slack-webhook = {server.url(f"/services/{TOKEN}")}
slack-only-on-error = true
save-folder = {tmp_path / "saved"}
""" + jobs())
    ok = rig.run("hello")
    failed = rig.run("broken")
    (request,) = server.wait_for(1)
    payload = json.loads(request.form()["payload"][0])
    assert payload["text"].startswith("Job *broken* finished in *")
    assert payload["attachments"] == [{"color": "#F35A00", "title": "Execution failed", "text": "exit code 3"}]
    (record,) = rig.wait_notifications(failed.id)
    assert (record.notifier, record.state) == ("slack", "sent")
    saved = list((tmp_path / "saved").glob("*.json"))
    assert saved and not any(TOKEN in path.read_text() for path in saved)  # the save middleware's files
    rig.stop()
    assert len(server.requests) == 1
    assert rig.history.notifications([ok.id]).get(ok.id, []) == []


def test_webhook_url_and_secret_are_redacted_from_the_config_api(
    server: RecordingServer, daemon: Callable[[str], Started]
) -> None:
    from ofelia_core.web.redact import effective_config
    from ofelia_core.web.settings import WebSettings

    rig = daemon(f"""
[global]
webhook-allowed-hosts = 127.0.0.1

[webhook "ops"]
preset = ntfy
url = {server.url(f"/{TOKEN}")}
secret = tk_{TOKEN}
id = topic-{TOKEN}
""" + jobs(webhooks="ops"))
    runtime = rig.daemon.runtime
    assert runtime is not None
    data = effective_config(runtime, rig.daemon.jobs, WebSettings.from_values(runtime.loaded.config.global_.values))
    text = json.dumps(data)
    assert TOKEN not in text
    assert data["webhooks"]["ops"]["url"] == "<redacted>"
    assert data["webhooks"]["ops"]["preset"] == "ntfy"
