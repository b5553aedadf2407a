"""End to end: a real Daemon in this process (job-local jobs, the history database, the
notification core's delivery worker) posting to a real local HTTP server."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from loguru import logger
from polling import wait_for
from recording_server import RecordingServer, running_server

from ofelia_core.daemon import Daemon
from ofelia_core.history import HistoryStore, NotificationRecord
from ofelia_core.runs import FINAL_STATES, Run

TOKEN = "T0KEN9SECRET9VALUE"


class Rig:
    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.stopped = False
        self._reopened: HistoryStore | None = None

    @property
    def history(self) -> HistoryStore:
        """The daemon's store; after :meth:`stop`, the same file opened again."""
        assert self.daemon.runtime is not None
        if not self.stopped:
            return self.daemon.runtime.history
        if self._reopened is None:
            self._reopened = HistoryStore(self.daemon.runtime.history_file)
        return self._reopened

    def run(self, job: str) -> Run:
        run = self.daemon.run_now(job)
        assert wait_for(lambda: self._final(run.id)), f"run {run.id} of {job} did not finish"
        final = self.history.get(run.id)
        assert final is not None
        return final

    def _final(self, run_id: str) -> bool:
        run = self.history.get(run_id)
        return run is not None and run.state in FINAL_STATES

    def notifications(self, run_id: str, count: int = 1) -> list[NotificationRecord]:
        def found() -> list[NotificationRecord]:
            return list(self.history.notifications([run_id]).get(run_id, []))

        assert wait_for(lambda: len(found()) >= count), found()
        return found()

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.daemon.request_stop()
            self.daemon.shutdown()

    def close(self) -> None:
        self.stop()
        if self._reopened is not None:
            self._reopened.close()


@pytest.fixture
def server() -> Iterator[RecordingServer]:
    yield from running_server()


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Callable[[str], Rig]]:
    rigs: list[Rig] = []

    def start(text: str) -> Rig:
        path = tmp_path / "ofelia.ini"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        env["OFELIA_STATE_DIR"] = str(tmp_path / "state")
        daemon = Daemon(str(path), env=env)
        daemon.start()
        rigs.append(Rig(daemon))
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


def test_a_run_posts_what_the_docs_say(server: RecordingServer, daemon: Callable[[str], Rig]) -> None:
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
    (record,) = rig.notifications(run.id)
    assert (record.notifier, record.state, record.attempts) == ("webhook:ops", "sent", 1)


def test_trigger_error_sends_the_failed_run_only(server: RecordingServer, daemon: Callable[[str], Rig]) -> None:
    rig = daemon(f'[webhook "ops"]\nurl = {server.url()}\n' + jobs(webhooks="ops"))  # trigger: error (default)
    ok = rig.run("hello")
    failed = rig.run("broken")
    (request,) = server.wait_for(1)
    assert request.json()["execution"]["id"] == failed.id
    assert request.json()["execution"]["error"] == "exit code 3"
    rig.notifications(failed.id)
    rig.stop()
    assert len(server.requests) == 1
    assert rig.history.notifications([ok.id]).get(ok.id, []) == []


def test_a_jobs_webhooks_replace_the_global_ones(server: RecordingServer, daemon: Callable[[str], Rig]) -> None:
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
    rig.notifications(inherits.id)
    rig.notifications(own.id)
    rig.stop()
    assert len(server.requests) == 2


@pytest.mark.slow
def test_a_request_failing_twice_is_retried_until_sent(server: RecordingServer, daemon: Callable[[str], Rig]) -> None:
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
    (record,) = rig.notifications(run.id)
    assert (record.state, record.attempts) == ("sent", 3)


@pytest.mark.slow
def test_a_failed_delivery_is_recorded_logged_and_the_run_still_succeeds(
    server: RecordingServer, daemon: Callable[[str], Rig], request: pytest.FixtureRequest
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
    (record,) = rig.notifications(run.id)
    assert (record.state, record.attempts) == ("failed", 2)
    assert record.error is not None and "HTTP 500" in record.error
    assert TOKEN not in record.error
    assert len(server.requests) == 2
    assert any("webhook:ops" in line and "HTTP 500" in line for line in lines)
    assert not any(TOKEN in line for line in lines)


def test_allowed_hosts_refusal_is_a_recorded_failure(server: RecordingServer, daemon: Callable[[str], Rig]) -> None:
    rig = daemon(f"""
[global]
webhook-allowed-hosts = hooks.slack.com

[webhook "ops"]
url = {server.url()}
trigger = always
retry-count = 0
""" + jobs(webhooks="ops"))
    run = rig.run("hello")
    (record,) = rig.notifications(run.id)
    assert record.state == "failed"
    assert record.error is not None and "not in webhook-allowed-hosts" in record.error
    assert server.requests == []


def test_ofelias_slack_keys_post_the_form_payload(
    server: RecordingServer, daemon: Callable[[str], Rig], tmp_path: Path
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
    (record,) = rig.notifications(failed.id)
    assert (record.notifier, record.state) == ("slack", "sent")
    saved = list((tmp_path / "saved").glob("*.json"))
    assert saved and not any(TOKEN in path.read_text() for path in saved)  # the save middleware's files
    rig.stop()
    assert len(server.requests) == 1
    assert rig.history.notifications([ok.id]).get(ok.id, []) == []


def test_webhook_url_and_secret_are_redacted_from_the_config_api(
    server: RecordingServer, daemon: Callable[[str], Rig]
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
