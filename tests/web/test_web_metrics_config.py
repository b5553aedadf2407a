"""``/metrics``, ``/api/metrics`` (with the no-op driver and with a stub recorder) and
``/api/config``'s redaction."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import Any

import pytest
from web_support import Rig


class StubRecorder:
    """A stand-in metrics recorder (named as such) that exports fixed text: the performance
    driver is another distribution; here only the web layer's handling is under test."""

    def export(self, fmt: str) -> str:
        return json.dumps({"jobs": {"runs_total": 3}}) if fmt == "json" else "ofelia_runs_total 3\n"

    def observe_operation(self, concern: str, operation: str, seconds: float, error: str | None) -> None: ...
    def record_run(self, job_name: str, state: str, seconds: float) -> None: ...
    def set_gauge(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None: ...
    def stats(self) -> dict[str, Any]:
        return {}

    def close(self) -> None: ...


def test_metrics_disabled_is_a_clear_503(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    client = rig.client()
    text = client.get("/metrics")
    assert text.status_code == 503 and "OFELIA_ENABLE_PERFORMANCE_METRICS=true" in text.text
    assert text.headers["content-type"].startswith("text/plain")
    as_json = client.get("/metrics", headers={"Accept": "application/json"})
    assert as_json.status_code == 503 and as_json.json()["enabled"] is False
    api = client.get("/api/metrics", headers=rig.bearer())  # for the page, "off" is a state, not an error
    assert api.status_code == 200 and api.json()["enabled"] is False and api.json()["metrics"] is None
    assert "OFELIA_ENABLE_PERFORMANCE_METRICS" in api.json()["detail"]


def test_metrics_from_the_driver(make_rig: Callable[..., Rig], monkeypatch: pytest.MonkeyPatch) -> None:
    rig = make_rig()
    assert rig.daemon.runtime is not None
    monkeypatch.setattr(rig.daemon.runtime.drivers, "metrics", StubRecorder())
    client = rig.client()
    text = client.get("/metrics")
    assert text.status_code == 200 and text.text == "ofelia_runs_total 3\n"
    assert text.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert client.get("/metrics", headers={"Accept": "application/json"}).json() == {"jobs": {"runs_total": 3}}
    assert client.get("/metrics", headers={"Accept": "text/plain, application/json"}).text.startswith("ofelia_")
    assert client.get("/api/metrics", headers=rig.bearer()).json() == {
        "enabled": True, "detail": None, "metrics": {"jobs": {"runs_total": 3}}}
    assert client.get("/api/metrics").status_code == 401  # /api/metrics follows the web login


def test_metrics_from_the_performance_driver(make_rig: Callable[..., Rig]) -> None:
    """The real optimized driver, when its distribution is installed (scripts/setup.sh installs it)."""
    if not any(ep.name == "performance" for ep in entry_points(group="ofelia.metrics")):
        pytest.skip("ofelia-metrics-perf is not installed: scripts/setup.sh installs every plugin")
    rig = make_rig(env={"OFELIA_ENABLE_PERFORMANCE_METRICS": "true"})
    client = rig.client()
    client.post("/api/jobs/run", json={"name": "hello"}, headers=rig.bearer())
    text = client.get("/metrics")
    assert text.status_code == 200 and text.headers["content-type"].startswith("text/plain")
    assert "# TYPE" in text.text
    as_json = client.get("/metrics", headers={"Accept": "application/json"})
    assert as_json.status_code == 200 and isinstance(as_json.json(), dict)
    api = client.get("/api/metrics", headers=rig.bearer()).json()
    assert api["enabled"] is True and api["detail"] is None
    assert isinstance(api["metrics"], dict) and api["metrics"]


def test_metrics_token_guards_metrics(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(global_extra="metrics-token = scrape-me-please")
    client = rig.client()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    login_token = rig.login(rig.client())["token"]  # a web login is not the scrape token
    assert client.get("/metrics", headers={"Authorization": f"Bearer {login_token}"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer scrape-me-please"}).status_code == 503


SECRETS = {
    "smtp": "smtp-Pa55word-global",
    "job_smtp": "smtp-Pa55word-of-job",
    "slack": "https://hooks.slack.example/services/T000/B000/XXXXsecretXXXX",
    "job_slack": "https://hooks.slack.example/services/T111/B111/job-secret-path",
    "secret_key": "web-secret-key-value-1234",
    "metrics": "metrics-token-value-5678",
    "hook_url": "https://hooks.example/hook/abcdef-token-0042",
    "hook_secret": "webhook-signing-secret-9",
    "env": "db-password-in-env-777",
    "cmd": "secret-in-command-313",
}


def test_config_never_shows_a_secret(make_rig: Callable[..., Rig], password_hash: str) -> None:
    s = SECRETS
    rig = make_rig(
        global_extra=f"smtp-password = {s['smtp']}\nslack-webhook = {s['slack']}\nweb-secret-key = {s['secret_key']}\n"
        f"metrics-token = {s['metrics']}\nsmtp-host = mail.example\n",
        jobs=f"""
[webhook "ops"]
url = {s['hook_url']}
secret = {s['hook_secret']}
trigger = error

[job-local "hello"]
schedule = @every 1h
command = echo {s['cmd']}
smtp-password = {s['job_smtp']}
slack-webhook = {s['job_slack']}
environment = DB_PASSWORD={s['env']}
environment = TZ=UTC
webhooks = ops
""")
    # The command repeats a secret given elsewhere, so it is scrubbed from there too.
    response = rig.client().get("/api/config", headers=rig.bearer())
    assert response.status_code == 200
    text = response.text
    for name, value in SECRETS.items():
        if name == "cmd":
            continue
        assert value not in text, name
    assert password_hash not in text and password_hash[7:29] not in text
    data = response.json()
    assert data["global"]["smtp-password"] == "<redacted>"
    assert data["global"]["web-password-hash"] == "<redacted>"
    assert data["global"]["smtp-host"] == "mail.example"  # plain values stay
    assert data["global"]["web-auth-enabled"] is True and data["global"]["web-token-expiry"] == 24
    assert data["webhooks"]["ops"] == {"url": "<redacted>", "secret": "<redacted>", "trigger": "error"}
    options = data["jobs"]["hello"]["options"]
    assert options["environment"] == ["DB_PASSWORD=<redacted>", "TZ=UTC"]
    assert options["slack-webhook"] == "<redacted>" and options["command"] == f"echo {s['cmd']}"


def test_config_scrubs_a_secret_repeated_in_another_value(make_rig: Callable[..., Rig]) -> None:
    secret = "shared-secret-value-31337"
    rig = make_rig(global_extra=f"smtp-password = {secret}",
                   jobs=f'[job-local "leaky"]\nschedule = @manual\ncommand = mail --pass {secret}\n')
    text = rig.client().get("/api/config", headers=rig.bearer()).text
    assert secret not in text and "mail --pass <redacted>" in text
