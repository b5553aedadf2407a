"""A Daemon started in this process for the notification tests, and what they ask of it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from polling import wait_for

from ofelia_core.daemon import Daemon
from ofelia_core.history import HistoryStore, NotificationRecord
from ofelia_core.runs import FINAL_STATES, Run


def smtp_global(port: int, **extra: str) -> str:
    """A ``[global]`` section that mails every run to ops@example.com through 127.0.0.1:port."""
    lines = ["[global]", "smtp-host = 127.0.0.1", f"smtp-port = {port}", "email-to = ops@example.com",
             "email-from = ofelia@%", "mail-retry-delay = 100ms"]
    lines += [f"{key.replace('_', '-')} = {value}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


@dataclass
class Started:
    daemon: Daemon
    stopped: bool = False
    _reopened: HistoryStore | None = None

    @property
    def history(self) -> HistoryStore:
        """The daemon's store; after :meth:`stop`, the same file opened again."""
        assert self.daemon.runtime is not None
        if not self.stopped:
            return self.daemon.runtime.history
        if self._reopened is None:
            self._reopened = HistoryStore(self.daemon.runtime.history_file)
        return self._reopened

    def run(self, job: str, timeout: float = 20.0) -> Run:
        """Run ``job`` now and wait until its run has a final state in the history."""
        run = self.daemon.run_now(job)
        assert wait_for(lambda: self._final(run.id), timeout), f"run {run.id} of {job} did not finish"
        final = self.history.get(run.id)
        assert final is not None
        return final

    def _final(self, run_id: str) -> bool:
        run = self.history.get(run_id)
        return run is not None and run.state in FINAL_STATES

    def notifications(self, run_id: str) -> list[NotificationRecord]:
        return self.history.notifications([run_id]).get(run_id, [])

    def wait_notifications(self, run_id: str, count: int = 1, timeout: float = 20.0) -> list[NotificationRecord]:
        assert wait_for(lambda: len(self.notifications(run_id)) >= count, timeout), self.notifications(run_id)
        return self.notifications(run_id)

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.daemon.request_stop()
            self.daemon.shutdown()

    def close(self) -> None:
        self.stop()
        if self._reopened is not None:
            self._reopened.close()


def daemon_env(state: Path) -> dict[str, str]:
    """A clean environment: no OFELIA_* variable of the caller's shell changes the daemon."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
    env["OFELIA_STATE_DIR"] = str(state)
    return env


def start_daemon_from(tmp_path: Path, text: str, index: int = 0) -> Started:
    path = tmp_path / f"ofelia{index}.ini"
    path.write_text(text)
    daemon = Daemon(str(path), env=daemon_env(tmp_path / f"state{index}"))
    daemon.start()
    return Started(daemon)
