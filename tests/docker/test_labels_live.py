"""Labels followed live by a real daemon on the test engine.

Most tests run the daemon in-process (``Daemon(...).run()`` in a thread) to look
at ``daemon.jobs`` and the history directly; one runs ``ofelia daemon --docker``
as a user does. Every container carries ``ofelia.labels-test=<tag>`` and each
daemon reads only its own tag (``--docker-filter``), so suites running at the
same time on the engine do not see each other's containers.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from labels_support import FILTER_LABEL, Labelled, LiveDaemon, tick
from loguru import logger
from polling import wait_for

from ofelia_core.daemon import Daemon
from ofelia_core.runs import RunState

pytestmark = pytest.mark.docker


@pytest.fixture
def tag() -> str:
    return secrets.token_hex(4)


@pytest.fixture
def daemons() -> Iterator[list[LiveDaemon]]:
    made: list[LiveDaemon] = []
    yield made
    for daemon in made:
        if daemon.thread.is_alive():
            daemon.stop()


@pytest.fixture
def start_daemon(tmp_path: Path, docker_engine_url: str, tag: str,
                 daemons: list[LiveDaemon]) -> Callable[..., LiveDaemon]:
    def start(**kwargs: Any) -> LiveDaemon:
        daemon = LiveDaemon(tmp_path, docker_engine_url, tag, **kwargs)
        daemons.append(daemon)
        return daemon

    return start


@pytest.fixture
def labelled(containers: Any, tag: str) -> Labelled:
    return Labelled(containers, tag)


def test_a_labelled_container_adds_its_job_and_it_runs(start_daemon: Any, labelled: Labelled, tag: str) -> None:
    daemon = start_daemon()
    assert daemon.job("tick") is None
    name = f"lbl-live-{tag}"
    labelled.run(name, tick())
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    job = daemon.job("tick")
    assert (job.type, job.get("container"), job.get("command")) == ("job-exec", name, "echo hi")
    assert wait_for(lambda: "docker labels changed: 1 jobs (added: tick;" in daemon.text()), daemon.text()
    assert wait_for(lambda: any(r.state == RunState.SUCCESS for r in daemon.runs("tick"))), daemon.text()
    success = next(r for r in daemon.runs("tick") if r.state == RunState.SUCCESS)
    assert success.stdout == b"hi\n"
    assert daemon.state()["docker_labels"] == {"containers": [name], "jobs": ["tick"], "rejected": []}
    assert daemon.stop() == 0


def test_a_recreated_container_with_other_labels_replaces_the_job(
    start_daemon: Any, labelled: Labelled, containers: Any, tag: str
) -> None:
    daemon = start_daemon()
    name = f"lbl-recreate-{tag}"
    first = labelled.run(name, tick("echo one", "@hourly"))
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    identity = daemon.job("tick").identity
    containers.remove(first)
    labelled.run(name, tick("echo two", "@hourly"))
    assert wait_for(lambda: daemon.job("tick") is not None and daemon.job("tick").get("command") == "echo two"), \
        daemon.text()
    assert daemon.job("tick").identity != identity


def test_a_stopped_container_loses_its_jobs_until_it_starts_again(
    start_daemon: Any, labelled: Labelled, containers: Any, admin_api: Any, tag: str
) -> None:
    daemon = start_daemon()
    cid = labelled.run(f"lbl-stop-{tag}", tick(schedule="@hourly"))
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    admin_api.stop(cid, timeout=0)
    assert wait_for(lambda: daemon.job("tick") is None), daemon.text()
    assert wait_for(lambda: "removed: tick)" in daemon.text()), daemon.text()
    admin_api.start(cid)
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    containers.remove(cid)
    assert wait_for(lambda: daemon.job("tick") is None), daemon.text()


def test_a_file_job_wins_over_a_label_job_of_the_same_name(
    start_daemon: Any, labelled: Labelled, tag: str
) -> None:
    daemon = start_daemon(files='[job-local "tick"]\nschedule = @hourly\ncommand = true\n')
    name = f"lbl-clash-{tag}"
    labelled.run(name, {**tick(), "ofelia.job-exec.tock.schedule": "@hourly", "ofelia.job-exec.tock.command": "true"})
    assert wait_for(lambda: daemon.job("tock") is not None), daemon.text()
    assert daemon.job("tick").type == "job-local"
    assert (f"WARNING docker labels: labels ofelia.job-exec.tick.* on container '{name}': job \"tick\": "
            f"a job with this name is defined at {daemon.config}:") in daemon.text()
    assert "the file's job is used" in daemon.text()


def test_a_file_reload_keeps_the_label_jobs(start_daemon: Any, labelled: Labelled, tag: str) -> None:
    daemon = start_daemon()
    labelled.run(f"lbl-reload-{tag}", tick(schedule="@hourly"))
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    with daemon.config.open("a") as handle:
        handle.write('[job-local "from-file"]\nschedule = @hourly\ncommand = true\n')
    assert daemon.daemon.reload("test") is True
    assert sorted(daemon.daemon.jobs) == ["from-file", "tick"]
    assert "reloaded: 2 jobs (added: from-file; changed: none; removed: none)" in daemon.text()


def test_the_docker_filter_leaves_other_containers_out(start_daemon: Any, labelled: Labelled, tag: str) -> None:
    daemon = start_daemon()
    labelled.run(f"lbl-other-{tag}", {"ofelia.job-exec.other.schedule": "@hourly",
                                      "ofelia.job-exec.other.command": "true"}, tag=f"{tag}-other")
    labelled.run(f"lbl-mine-{tag}", tick(schedule="@hourly"))
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    time.sleep(1.5)  # one more periodic listing
    assert daemon.job("other") is None


def test_a_bad_label_rejects_that_job_only(start_daemon: Any, labelled: Labelled, tag: str) -> None:
    daemon = start_daemon()
    name = f"lbl-bad-{tag}"
    labelled.run(name, {**tick(schedule="@hourly"), "ofelia.job-exec.broken.schedule": "61 * * * *",
                        "ofelia.job-exec.broken.command": "true"})
    assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
    assert daemon.job("broken") is None
    assert (f"ERROR docker labels: label ofelia.job-exec.broken.schedule on container '{name}': "
            "job \"broken\": key 'schedule':") in daemon.text()
    assert "job 'broken' is not scheduled" in daemon.text()
    assert daemon.state()["docker_labels"] == {"containers": [name], "jobs": ["tick"], "rejected": ["broken"]}


def test_labels_on_the_service_container_give_global_keys_and_other_job_types(
    start_daemon: Any, labelled: Labelled, tag: str, tmp_path: Path
) -> None:
    daemon = start_daemon()
    folder = tmp_path / "saved"
    labelled.run(f"lbl-service-{tag}", {"ofelia.service": "true", "ofelia.save-folder": str(folder),
                                        "ofelia.job-local.local.schedule": "@every 1s",
                                        "ofelia.job-local.local.command": "echo local"})
    assert wait_for(lambda: daemon.job("local") is not None), daemon.text()
    assert wait_for(lambda: any(r.state == RunState.SUCCESS for r in daemon.runs("local"))), daemon.text()
    assert wait_for(lambda: folder.is_dir() and any(p.name.endswith(".stdout.log") for p in folder.iterdir()))


def test_an_unreachable_engine_at_start_up_is_a_clear_error(tmp_path: Path) -> None:
    config = tmp_path / "ofelia.ini"
    config.write_text(f"[global]\ndocker = true\ndocker-startup-retries = 2\ndocker-startup-interval = 0.05s\n"
                      f"[docker-client]\nbase-url = unix://{tmp_path}/nothing.sock\n")
    logs: list[str] = []
    sink = logger.add(logs.append, level="DEBUG", format="{level} {message}")
    try:
        code = Daemon(str(config), env={"OFELIA_STATE_DIR": str(tmp_path / "state")}).run(install_signals=False)
    finally:
        logger.remove(sink)
    text = "".join(logs)
    assert code == 1
    assert "retry 1/2 in 0.05s" in text and "retry 2/2" in text
    assert "cannot read Docker labels: the engine did not answer after 3 attempt(s) 0.05s apart" in text


@pytest.mark.slow
def test_ofelia_daemon_docker_from_the_command_line(tmp_path: Path, docker_engine_url: str, labelled: Labelled,
                                                    tag: str) -> None:
    """As a user runs it: OFELIA_DOCKER and DOCKER_HOST from the environment, -f on the command line,
    no config file at all; SIGTERM ends it promptly although the events stream is open."""
    if os.path.exists("/etc/ofelia/config.ini"):
        pytest.skip("/etc/ofelia/config.ini exists: this test runs with no config file")
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OFELIA_", "DOCKER_"))}
    env |= {"OFELIA_STATE_DIR": str(state), "OFELIA_DOCKER": "true", "DOCKER_HOST": docker_engine_url}
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "ofelia_core", "daemon", "-f", f"{FILTER_LABEL}={tag}"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            assert wait_for(lambda: "started: 0 jobs from docker labels" in log.read_text(), 30), log.read_text()
            name = f"lbl-cli-{tag}"
            labelled.run(name, tick())
            assert wait_for(lambda: "docker labels changed: 1 jobs (added: tick;" in log.read_text()), log.read_text()
            daemon_json = json.loads((state / "daemon.json").read_text())
            assert daemon_json["jobs"] == ["tick"] and daemon_json["docker_labels"]["containers"] == [name]
            assert wait_for(lambda: '[Job "tick"' in log.read_text() and "state: success" in log.read_text()), \
                log.read_text()
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)  # an events stream that kept the daemon alive would time out here
    assert code == 0, log.read_text()
    assert "ofelia stopped" in log.read_text()
