"""The job routes against a real daemon: the table, run now, history with output, enable/disable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from polling import wait_for
from web_support import Rig


def history(rig: Rig, headers: dict[str, str], job: str, **params: Any) -> dict[str, Any]:
    response = rig.client().get(f"/api/jobs/{job}/history", params=params, headers=headers)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def finished(rig: Rig, headers: dict[str, str], job: str, run_id: str) -> dict[str, Any] | None:
    for run in history(rig, headers, job)["runs"]:
        if run["id"] == run_id and run["state"] != "running":
            return dict(run)
    return None


def test_the_job_table_shows_schedule_next_and_last_run(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    auth = rig.bearer()
    client = rig.client()
    jobs = {job["name"]: job for job in client.get("/api/jobs", headers=auth).json()}
    assert set(jobs) == {"hello", "later"}
    hello = jobs["hello"]
    assert hello["type"] == "job-local" and hello["schedule"] == "@every 1h"
    assert hello["command"] == "echo hello-from-web"
    assert hello["next_run"] is not None and hello["enabled"] is True
    assert hello["last_run"] is None and hello["running"] is False
    assert jobs["later"]["next_run"] is None  # @manual never fires on a schedule

    run_id = client.post("/api/jobs/run", json={"name": "hello"}, headers=auth).json()["id"]
    assert wait_for(lambda: finished(rig, auth, "hello", run_id) is not None)
    last = {job["name"]: job for job in client.get("/api/jobs", headers=auth).json()}["hello"]["last_run"]
    assert last["id"] == run_id and last["state"] == "success" and last["trigger"] == "manual"
    assert last["exit_code"] == 0


def test_the_job_table_matches_its_published_schema_field_for_field(make_rig: Callable[..., Rig]) -> None:
    # The route serializes plain dicts for speed: the body must still be exactly JobOut's shape, and
    # the OpenAPI schema must still say so.
    from pydantic import TypeAdapter

    from ofelia_core.web.routes_jobs import JobOut

    rig = make_rig()
    auth = rig.bearer()
    client = rig.client()
    run_id = client.post("/api/jobs/run", json={"name": "hello"}, headers=auth).json()["id"]
    assert wait_for(lambda: finished(rig, auth, "hello", run_id) is not None)
    response = client.get("/api/jobs", headers=auth)
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    strict = TypeAdapter(list[JobOut]).validate_python(body, strict=True)
    assert [job.model_dump() for job in strict] == body  # no field missing, none extra, none retyped
    assert {job.name: job.last_run is not None for job in strict} == {"hello": True, "later": False}
    schema = client.get("/openapi.json", headers=auth).json()
    ok = schema["paths"]["/api/jobs"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["type"] == "array" and ok["items"]["$ref"].endswith("/JobOut")


def test_run_now_returns_the_run_id_and_the_history_holds_its_output(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    auth = rig.bearer()
    response = rig.client().post("/api/jobs/run", json={"name": "later"}, headers=auth)
    assert response.status_code == 200
    started = response.json()
    assert started["job"] == "later" and started["state"] == "running" and len(started["id"]) == 12
    assert wait_for(lambda: finished(rig, auth, "later", started["id"]) is not None)
    run = finished(rig, auth, "later", started["id"])
    assert run is not None
    assert run["state"] == "success"
    assert run["stdout"] == "out-line\n" and run["stderr"] == "err-line\n"
    assert run["stdout_truncated"] is False


def test_history_limit_and_output_limit(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    auth = rig.bearer()
    ids = [rig.client().post("/api/jobs/run", json={"name": "hello"}, headers=auth).json()["id"] for _ in range(3)]
    assert wait_for(lambda: all(finished(rig, auth, "hello", i) for i in ids))
    assert len(history(rig, auth, "hello", limit=2)["runs"]) == 2
    clipped = history(rig, auth, "hello", limit=1, output_limit=4)["runs"][0]
    assert clipped["stdout"] == "web\n" and clipped["stdout_truncated"] is True  # the newest bytes
    assert rig.client().get("/api/jobs/hello/history?limit=0", headers=auth).status_code == 422


def test_unknown_jobs_are_404(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    auth = rig.bearer()
    client = rig.client()
    for path in ("/api/jobs/run", "/api/jobs/enable", "/api/jobs/disable"):
        response = client.post(path, json={"name": "nope"}, headers=auth)
        assert response.status_code == 404 and "nope" in response.json()["detail"]
    assert client.get("/api/jobs/nope/history", headers=auth).status_code == 404


def test_a_disabled_job_is_not_scheduled_until_enabled(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    auth = rig.bearer()
    client = rig.client()
    scheduler = rig.daemon.scheduler
    assert scheduler is not None and "hello" in scheduler.next_fires()

    response = client.post("/api/jobs/disable", json={"name": "hello"}, headers=auth)
    assert response.json() == {"name": "hello", "enabled": False, "changed": True}
    assert "hello" not in scheduler.next_fires()
    job = {j["name"]: j for j in client.get("/api/jobs", headers=auth).json()}["hello"]
    assert job["enabled"] is False and job["next_run"] is None
    again = client.post("/api/jobs/disable", json={"name": "hello"}, headers=auth).json()
    assert again["changed"] is False
    assert client.get("/ready").json()["disabled"] == 1

    # A disabled job still runs when asked by name.
    run_id = client.post("/api/jobs/run", json={"name": "hello"}, headers=auth).json()["id"]
    assert wait_for(lambda: finished(rig, auth, "hello", run_id) is not None)

    response = client.post("/api/jobs/enable", json={"name": "hello"}, headers=auth)
    assert response.json() == {"name": "hello", "enabled": True, "changed": True}
    assert scheduler.next_fires()["hello"] is not None


def test_disabled_survives_a_reload_and_goes_with_the_job(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    daemon = rig.daemon
    assert daemon.set_job_enabled("hello", False) and daemon.set_job_enabled("later", False)
    assert daemon.reload("test")
    assert daemon.disabled == {"hello", "later"}
    assert daemon.scheduler is not None and "hello" not in daemon.scheduler.next_fires()
    path = daemon.config_path
    assert path is not None
    with open(path) as handle:
        text = handle.read()
    with open(path, "w") as handle:
        handle.write(text.split('[job-local "later"]')[0])  # "later" removed
    assert daemon.reload("test")
    assert daemon.disabled == {"hello"}


def test_openapi_schema_lists_the_api(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(auth=False)
    schema = rig.client().get("/openapi.json").json()
    for path in ("/api/jobs", "/api/jobs/{name}/history", "/api/jobs/run", "/api/jobs/enable",
                 "/api/jobs/disable", "/api/login", "/api/logout", "/api/auth/status", "/api/csrf-token",
                 "/api/config", "/api/plugins", "/health", "/ready", "/metrics", "/api/metrics"):
        assert path in schema["paths"], path
    assert "/" not in schema["paths"]  # the page is not API


def test_health_and_ready(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    client = rig.client()
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["jobs"] == 2
    rig.daemon.request_stop()
    assert client.get("/ready").status_code == 503


def test_plugins_lists_the_active_drivers_with_their_stats(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig()
    data = rig.client().get("/api/plugins", headers=rig.bearer()).json()
    drivers = {row["concern"]: row for row in data["drivers"]}
    assert set(drivers) == {"docker-client", "token-manager", "buffer-pool", "metrics"}
    assert drivers["metrics"]["driver"] == "noop" and drivers["metrics"]["source"]
    assert drivers["token-manager"]["stats"]["driver"]["driver"] == "baseline"  # the instrumented stats
    assert "scheduler" in data["core"] and isinstance(data["plugins"], dict)
