"""A real daemon in this process (real job-local shell commands, the real history
database), with an observer plugin that sees each run as ``ofelia_observe_run_end`` does."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from history_rows import history_rows
from ofelia_hookspecs import hookimpl
from polling import wait_for

from ofelia_core.daemon import Daemon


@dataclass
class Observer:
    """Records (job, id, attempt, state, will_retry) at the moment each run is reported."""

    seen: list[tuple[str, str, int, str, bool]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @hookimpl
    def ofelia_observe_run_end(self, job: Any, run: Any) -> None:
        with self.lock:
            self.seen.append((job.name, run.id, run.attempt, str(run.state), run.will_retry))

    def of(self, job: str) -> list[tuple[str, str, int, str, bool]]:
        with self.lock:
            return [s for s in self.seen if s[0] == job]


@dataclass
class Harness:
    daemon: Daemon
    state: Path
    observer: Observer
    config: Path

    def runs(self, job: str | None = None) -> list[dict[str, Any]]:
        """History rows, oldest first (by start, then by record order)."""
        return history_rows(self.state, job)

    def wait_runs(self, job: str, count: int, timeout: float = 30.0, **where: Any) -> list[dict[str, Any]]:
        def matching() -> list[dict[str, Any]]:
            return [r for r in self.runs(job) if all(r[k] == v for k, v in where.items())]

        assert wait_for(lambda: len(matching()) >= count, timeout), (job, self.runs(job))
        return matching()

    def wait_final(self, job: str, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        """Wait until ``job`` has ``count`` records and none is still running."""

        def done() -> bool:
            rows = self.runs(job)
            return len(rows) >= count and all(r["state"] != "running" for r in rows)

        assert wait_for(done, timeout), (job, self.runs(job))
        return self.runs(job)

    def rewrite(self, text: str) -> None:
        self.config.write_text(text)


@contextmanager
def running_daemon(tmp_path: Path, config_text: str, *, docker: bool = False) -> Iterator[Harness]:
    """Start a daemon on ``config_text`` (file watching off unless the text sets it)."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    config = tmp_path / "c.ini"
    if "config-watch-interval" not in config_text:
        config_text = "[global]\nconfig-watch-interval = 0\n" + config_text.replace("[global]\n", "", 1)
    config.write_text(config_text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
    env["OFELIA_STATE_DIR"] = str(state)
    daemon = Daemon(str(config), env=env, docker=docker)
    observer = Observer()
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run(install_signals=False)), daemon=True)
    # Registered before start-up runs can end: the plugin manager is built in start().
    original = daemon._start_with

    def start_with(runtime: Any, loaded: Any) -> None:
        runtime.hooks.pm.register(observer, name="tests.policies.observer")
        original(runtime, loaded)

    daemon._start_with = start_with  # type: ignore[method-assign]
    thread.start()
    try:
        assert daemon.started.wait(30)
        assert daemon.runtime is not None, "the daemon did not start"
        yield Harness(daemon, state, observer, config)
    finally:
        daemon.request_stop()
        thread.join(60)
    assert codes == [0]
