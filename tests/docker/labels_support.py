"""Helpers of the label tests: a daemon in a thread, labelled containers, polling."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from loguru import logger

from ofelia_core.daemon import Daemon

FILTER_LABEL = "ofelia.labels-test"




class LiveDaemon:
    """A daemon in a thread; ``logs`` collects what it logged."""

    def __init__(self, tmp_path: Path, engine_url: str, tag: str, *, files: str = "", glob: str = "",
                 filters: list[str] | None = None, poll: str = "1s") -> None:
        self.config = tmp_path / "ofelia.ini"
        self.config.write_text(
            f"[global]\nconfig-watch-interval = 0\ndocker-poll-interval = {poll}\n"
            f"docker-startup-retries = 2\ndocker-startup-interval = 0.1s\n{glob}\n"
            f"[docker-client]\nbase-url = {engine_url}\n{files}"
        )
        self.logs: list[str] = []
        self._sink = logger.add(self.logs.append, level="DEBUG", format="{level} {message}")
        self.daemon = Daemon(str(self.config), env={"OFELIA_STATE_DIR": str(tmp_path / "state")}, docker=True,
                             docker_filters=[f"{FILTER_LABEL}={tag}"] if filters is None else filters)
        self.code: int | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.daemon.started.wait(60)

    def _run(self) -> None:
        self.code = self.daemon.run(install_signals=False)

    def text(self) -> str:
        return "".join(self.logs)

    def job(self, name: str) -> Any:
        return self.daemon.jobs.get(name)

    def runs(self, name: str) -> list[Any]:
        assert self.daemon.runtime is not None
        return self.daemon.runtime.history.recent(name, 1000, with_output=True)

    def state(self) -> Any:
        """daemon.json (written under the lock that also replaces the jobs)."""
        with self.daemon._jobs_lock:
            assert self.daemon.runtime is not None
            return json.loads((self.daemon.runtime.state_dir / "daemon.json").read_text())

    def stop(self) -> int | None:
        self.daemon.request_stop()
        self.thread.join(60)
        assert not self.thread.is_alive(), "the daemon did not stop"
        logger.remove(self._sink)
        return self.code


class Labelled:
    """Creates labelled containers (``sleep 300``, network none); the ``containers`` fixture removes them."""

    def __init__(self, containers: Any, tag: str) -> None:
        self.containers = containers
        self.tag = tag

    def run(self, name: str, labels: dict[str, str], *, tag: str | None = None) -> str:
        full = {"ofelia.enabled": "true", FILTER_LABEL: tag or self.tag, **labels}
        cid: str = self.containers.create(["sleep", "300"], name=name, labels=full)
        return cid


def tick(command: str = "echo hi", schedule: str = "@every 1s") -> dict[str, str]:
    return {"ofelia.job-exec.tick.schedule": schedule, "ofelia.job-exec.tick.command": command}
