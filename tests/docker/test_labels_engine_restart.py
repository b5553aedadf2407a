"""The daemon survives a restart of the engine it reads labels from.

This test stops and starts the suite's own engine (``scripts/docker-engine.sh``),
which removes every container on it: see engine_control.py for when it runs.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from pathlib import Path
from typing import Any

import docker.errors
import pytest
from docker_engine_fixtures import admin_client
from engine_control import engine
from labels_support import FILTER_LABEL, LiveDaemon, tick
from polling import wait_for

from ofelia_core.runs import RunState

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.engine_restart]

def run_labelled(url: str, image: str, name: str, labels: dict[str, str]) -> str:
    api = admin_client(url)
    try:
        cid: str = api.create_container(image, command=["sleep", "300"], name=name, labels=labels,
                                        host_config=api.create_host_config(network_mode="none"))["Id"]
        api.start(cid)
        return cid
    finally:
        api.close()


def remove(url: str, *names: str) -> None:
    with contextlib.suppress(Exception):
        api = admin_client(url)
        try:
            for name in names:
                with contextlib.suppress(docker.errors.NotFound):
                    api.remove_container(name, force=True, v=True)
        finally:
            api.close()


def test_the_daemon_survives_an_engine_restart(tmp_path: Path, own_engine: str, test_image: str) -> None:
    tag = secrets.token_hex(4)
    before, after = f"lbl-restart-a-{tag}", f"lbl-restart-b-{tag}"
    labels = {"ofelia.enabled": "true", FILTER_LABEL: tag}
    # docker-poll-interval = 0: only events can bring the new container's job, so it proves they resumed.
    daemon = LiveDaemon(tmp_path, own_engine, tag, poll="0",
                        files=f'[job-exec "probe"]\nschedule = @every 1s\ncontainer = {before}\n'
                              "command = echo probe\nhistory-limit = 0\n")
    try:
        run_labelled(own_engine, test_image, before, {**labels, **tick()})
        assert wait_for(lambda: daemon.job("tick") is not None), daemon.text()
        assert wait_for(lambda: any(r.state == RunState.SUCCESS for r in daemon.runs("probe"))), daemon.text()
        watcher = daemon.daemon.label_watcher
        assert watcher is not None and watcher.counts["connects"] == 1

        try:
            engine("stop")  # removes every container, then stops dockerd
            failed = len([r for r in daemon.runs("probe") if r.state == RunState.FAILED])
            assert wait_for(lambda: len([r for r in daemon.runs("probe") if r.state == RunState.FAILED])
                            >= failed + 2), daemon.text()
            assert daemon.thread.is_alive()
            assert "cannot reach the engine" in daemon.text()
        finally:
            engine("start")  # whatever happened: the other tests need the engine
        # The container did not survive the restart: once the daemon reads the engine again, its job goes.
        assert wait_for(lambda: daemon.job("tick") is None, timeout=60), daemon.text()
        assert wait_for(lambda: watcher.counts["connects"] >= 2, timeout=60), daemon.text()
        run_labelled(own_engine, test_image, after,
                     {**labels, "ofelia.job-exec.tock.schedule": "@every 1s",
                      "ofelia.job-exec.tock.command": "echo tock"})
        assert wait_for(lambda: daemon.job("tock") is not None), daemon.text()
        assert wait_for(lambda: any(r.state == RunState.SUCCESS and r.stdout == b"tock\n"
                                    for r in daemon.runs("tock"))), daemon.text()
        assert "the engine answers again" in daemon.text()
        # Runs that failed while the engine was away are recorded with the reason.
        failures: list[Any] = [r for r in daemon.runs("probe") if r.state == RunState.FAILED]
        assert failures and all(r.error for r in failures)
        assert any(re.search(r"engine|connect", r.error, re.IGNORECASE) for r in failures), \
            [r.error for r in failures]
    finally:
        remove(own_engine, before, after)
        code = daemon.stop()
    assert code == 0
