"""A third-party notifier (examples/notifier-jsonl) installed into a throwaway environment:
listed by ``ofelia plugins``, its keys accepted by ``ofelia validate``, and the real daemon
and ``ofelia run`` from that environment delivering every run to it through the notification
core (override rule, delivery worker, retries, delivery records). Without it, or blocked,
the same keys are unknown."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from throwaway_venv import REPO, ThrowawayVenv

from ofelia_core.history import HistoryStore, NotificationRecord

pytestmark = pytest.mark.slow

EXAMPLE = REPO / "examples" / "notifier-jsonl"
DISTRIBUTION = "ofelia-example-jsonl-notifier"
#: Every field of a line, in the order the notifier writes them (without jsonl-include-output).
FIELDS = ["job", "job_type", "run_id", "state", "failed", "trigger", "attempt", "scheduled_at", "started_at",
          "ended_at", "duration", "exit_code", "error", "hostname", "suppressed"]


@pytest.fixture(scope="module")
def jsonl_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayVenv]:
    env = ThrowawayVenv(tmp_path_factory.mktemp("jsonl") / "venv")
    env.install(EXAMPLE)
    yield env


@pytest.fixture(scope="module")
def bare_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThrowawayVenv]:
    yield ThrowawayVenv(tmp_path_factory.mktemp("bare") / "venv")


def lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def history_runs(env: ThrowawayVenv, state_dir: Path) -> dict[str, dict[str, Any]]:
    """Every recorded run by id, as ``ofelia history --json`` prints it."""
    result = env.ofelia("history", "--json", "--limit", "10000", env={"OFELIA_STATE_DIR": str(state_dir)})
    assert result.returncode == 0, result.stderr
    runs = [json.loads(line) for line in result.stdout.splitlines()]
    return {run["id"]: run for run in runs}


def deliveries(state_dir: Path, run_ids: list[str]) -> dict[str, list[NotificationRecord]]:
    store = HistoryStore(state_dir / "history.db")
    try:
        return store.notifications(run_ids)
    finally:
        store.close()


def assert_line_is_the_run(line: dict[str, Any], run: dict[str, Any]) -> None:
    """The notice's fields are exactly what the history recorded for the run."""
    assert list(line)[: len(FIELDS)] == FIELDS
    assert (line["job"], line["job_type"], line["state"], line["trigger"], line["attempt"]) == (
        run["job"], run["type"], run["state"], run["trigger"], run["attempt"])
    assert (line["scheduled_at"], line["started_at"], line["ended_at"]) == (
        run["scheduled_at"], run["started_at"], run["ended_at"])
    assert (line["exit_code"], line["error"]) == (run["exit_code"], run["error"])
    assert line["duration"] == pytest.approx(run["ended_at"] - run["started_at"], abs=1e-6)
    assert line["hostname"] == socket.gethostname()
    assert line["suppressed"] == 0


# --- the plugin is found --------------------------------------------------------------


def test_plugins_lists_it_with_its_distribution(jsonl_env: ThrowawayVenv) -> None:
    result = jsonl_env.ofelia("plugins", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["plugins"]["jsonl"] == {"distribution": DISTRIBUTION, "version": "0.1.0"}
    table = jsonl_env.ofelia("plugins")
    assert table.returncode == 0, table.stderr
    assert f"jsonl ({DISTRIBUTION} 0.1.0)" in table.stdout


def test_shared_environment_does_not_have_it(bare_env: ThrowawayVenv) -> None:
    # Proves the install went to the throwaway environment only.
    result = bare_env.ofelia("plugins", "--json")
    assert result.returncode == 0, result.stderr
    plugins = json.loads(result.stdout)["plugins"]
    assert "jsonl" not in plugins
    assert "mail" in plugins  # the core's notifiers are there: the listing itself works


def test_the_example_passes_its_own_tests(jsonl_env: ThrowawayVenv) -> None:
    result = subprocess.run(
        [str(jsonl_env.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        capture_output=True, text=True, cwd=str(EXAMPLE), timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout


# --- validation -----------------------------------------------------------------------


def keys_config(tmp_path: Path) -> Path:
    config = tmp_path / "keys.ini"
    config.write_text(
        f"[global]\njsonl-file = {tmp_path}/all.jsonl\njsonl-retry-delay = 500ms\n\n"
        '[job-local "a"]\nschedule = @hourly\ncommand = true\n'
        f"jsonl-file = {tmp_path}/a.jsonl\njsonl-only-on-error = true\njsonl-include-output = yes\n"
        "jsonl-retry-count = 4\n"
    )
    return config


def test_validate_accepts_its_keys_in_global_and_jobs(jsonl_env: ThrowawayVenv, tmp_path: Path) -> None:
    result = jsonl_env.ofelia("validate", "--strict", "--config", str(keys_config(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK. Found 1 jobs."
    assert result.stderr.strip() == ""


def test_without_the_plugin_the_same_keys_are_unknown(bare_env: ThrowawayVenv, tmp_path: Path) -> None:
    config = keys_config(tmp_path)
    loose = bare_env.ofelia("validate", "--config", str(config))
    assert loose.returncode == 0, loose.stderr  # unknown keys are warnings, as in Ofelia
    assert f"{config}:2: key 'jsonl-file': unknown key in [global]; it is ignored" in loose.stderr
    assert f"{config}:3: key 'jsonl-retry-delay': unknown key in [global]; it is ignored" in loose.stderr
    for line, key in ((8, "jsonl-file"), (9, "jsonl-only-on-error"), (10, "jsonl-include-output"),
                      (11, "jsonl-retry-count")):
        assert f'{config}:{line}: job "a": key \'{key}\': unknown key for job-local jobs' in loose.stderr
    strict = bare_env.ofelia("validate", "--strict", "--config", str(config))
    assert strict.returncode == 1
    assert f"error: {config}:2: key 'jsonl-file': unknown key in [global]" in strict.stderr
    assert "Invalid: 6 error(s)" in strict.stderr


def test_blocking_it_makes_its_keys_unknown_again(jsonl_env: ThrowawayVenv, tmp_path: Path) -> None:
    blocked = {"OFELIA_DISABLED_PLUGINS": "jsonl"}
    plugins = jsonl_env.ofelia("plugins", "--json", env=blocked)
    assert plugins.returncode == 0, plugins.stderr
    assert "jsonl" not in json.loads(plugins.stdout)["plugins"]
    result = jsonl_env.ofelia("validate", "--strict", "--config", str(keys_config(tmp_path)), env=blocked)
    assert result.returncode == 1
    assert "key 'jsonl-file': unknown key in [global]" in result.stderr


def test_validate_reports_what_build_and_check_say(jsonl_env: ThrowawayVenv, tmp_path: Path) -> None:
    config = tmp_path / "bad.ini"
    config.write_text(
        f"[global]\njsonl-file = {tmp_path}/all.jsonl\n\n"
        '[job-local "relative"]\nschedule = @hourly\ncommand = true\njsonl-file = runs.jsonl\n\n'
        # Ofelia's rule: its one key replaces every global jsonl-* key, so it writes nothing.
        '[job-local "only-flag"]\nschedule = @hourly\ncommand = true\njsonl-only-on-error = true\n\n'
        '[job-local "muted"]\nschedule = @hourly\ncommand = true\njsonl-file =\n'
    )
    result = jsonl_env.ofelia("validate", "--config", str(config))
    assert result.returncode == 1
    assert (f"error: {config}:4: job \"relative\": jsonl: jsonl-file must be an absolute path, "
            "got 'runs.jsonl'") in result.stderr
    assert (f'warning: {config}:9: job "only-flag": jsonl: the job sets jsonl-only-on-error itself, which '
            "replaces all of [global]'s jsonl settings") in result.stderr
    assert '"muted"' not in result.stderr  # an empty value turns it off on purpose: no warning
    assert "Invalid: 1 error(s)" in result.stderr

    flag_alone = tmp_path / "flag.ini"
    flag_alone.write_text("[global]\njsonl-only-on-error = true\n")
    result = jsonl_env.ofelia("validate", "--config", str(flag_alone))
    assert result.returncode == 0, result.stderr
    assert (f"warning: {flag_alone}:1: jsonl: jsonl-only-on-error is set but jsonl-file is not: "
            "nothing is written") in result.stderr


# --- deliveries -----------------------------------------------------------------------


def test_ofelia_run_delivers_and_records_a_failed_delivery(jsonl_env: ThrowawayVenv, tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "run.ini"
    config.write_text(
        f"[global]\njsonl-file = {tmp_path}/runs.jsonl\n\n"
        '[job-local "hello"]\nschedule = @hourly\ncommand = echo hello\n\n'
        # Its own file is in a directory that does not exist: every attempt fails.
        '[job-local "lost"]\nschedule = @hourly\ncommand = sh -c "exit 3"\n'
        f"jsonl-file = {tmp_path}/missing/runs.jsonl\njsonl-retry-count = 1\njsonl-retry-delay = 100ms\n"
    )
    env = {"OFELIA_STATE_DIR": str(state)}
    hello = jsonl_env.ofelia("run", "--config", str(config), "hello", env=env)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == "hello\n"
    lost = jsonl_env.ofelia("run", "--config", str(config), "lost", env=env)
    assert lost.returncode == 3, lost.stderr

    runs = history_runs(jsonl_env, state)
    (written,) = lines(tmp_path / "runs.jsonl")  # only hello's: lost's own file replaces the global one
    run = runs[written["run_id"]]
    assert run["job"] == "hello"
    assert_line_is_the_run(written, run)
    assert (written["state"], written["failed"], written["trigger"], written["exit_code"]) == (
        "success", False, "manual", 0)

    (lost_id,) = [run_id for run_id, run in runs.items() if run["job"] == "lost"]
    records = deliveries(state, [written["run_id"], lost_id])
    assert [(r.notifier, r.state, r.attempts, r.error) for r in records[written["run_id"]]] == [
        ("jsonl", "sent", 1, None)]
    (failed,) = records[lost_id]
    assert (failed.notifier, failed.state, failed.attempts) == ("jsonl", "failed", 2)
    assert failed.error is not None and failed.error.startswith("FileNotFoundError: [Errno 2]")
    assert f"{tmp_path}/missing/runs.jsonl" in failed.error
    assert "not delivered after 2 attempt(s)" in lost.stderr


def test_without_the_plugin_ofelia_run_writes_nothing(bare_env: ThrowawayVenv, tmp_path: Path) -> None:
    config = tmp_path / "run.ini"
    config.write_text(f"[global]\njsonl-file = {tmp_path}/runs.jsonl\n\n"
                      '[job-local "hello"]\nschedule = @hourly\ncommand = echo hello\n')
    result = bare_env.ofelia("run", "--config", str(config), "hello", env={"OFELIA_STATE_DIR": str(tmp_path / "s")})
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "runs.jsonl").exists()


class Daemon:
    """``ofelia daemon`` from the throwaway environment, as a user starts it."""

    def __init__(self, env: ThrowawayVenv, config: Path, state: Path, log: Path) -> None:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        self.log = log
        with log.open("wb") as sink:
            self.proc = subprocess.Popen(
                [str(env.python), "-m", "ofelia_core", "daemon", "--config", str(config)],
                env={**base, "OFELIA_STATE_DIR": str(state)}, cwd=str(REPO),
                stdout=sink, stderr=subprocess.STDOUT,
            )

    def wait_until(self, ready: Any, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the daemon exited ({self.proc.returncode}):\n{self.log.read_text()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out; daemon log:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"the daemon did not stop on SIGTERM:\n{self.log.read_text()[-3000:]}") from None


def test_daemon_delivers_every_run_with_the_override_rule(jsonl_env: ThrowawayVenv, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    state = tmp_path / "state"
    config = tmp_path / "ofelia.ini"
    keep = "history-limit = 1000\n"  # every run stays in the history to compare with (default: 10)
    config.write_text(
        f"[global]\njsonl-file = {out}/global.jsonl\n\n"
        # No jsonl key of its own: the global file.
        f'[job-local "tick"]\nschedule = @every 1s\ncommand = echo tick\n{keep}\n'
        # Its own keys replace the global ones: its own file, output included.
        '[job-local "broken"]\nschedule = @every 1s\ncommand = sh -c "echo partial; echo oops >&2; exit 3"\n'
        f"jsonl-file = {out}/broken.jsonl\njsonl-include-output = true\n{keep}\n"
        # Only on error, and it never fails: nothing.
        '[job-local "fine"]\nschedule = @every 1s\ncommand = true\n'
        f"jsonl-file = {out}/errors.jsonl\njsonl-only-on-error = true\n{keep}\n"
        # Turned off for this job.
        f'[job-local "muted"]\nschedule = @every 1s\ncommand = true\njsonl-file =\n{keep}'
    )
    daemon = Daemon(jsonl_env, config, state, tmp_path / "daemon.log")
    try:
        daemon.wait_until(lambda: len(lines(out / "global.jsonl")) >= 3 and len(lines(out / "broken.jsonl")) >= 3)
    finally:
        code = daemon.stop()
    log = daemon.log.read_text()
    assert code == 0, log[-3000:]

    runs = history_runs(jsonl_env, state)
    by_job: dict[str, list[str]] = {}
    for run_id, run in runs.items():
        by_job.setdefault(run["job"], []).append(run_id)
    assert len(by_job["fine"]) >= 3 and len(by_job["muted"]) >= 3  # they ran, and wrote nothing below

    ticks, broken = lines(out / "global.jsonl"), lines(out / "broken.jsonl")
    # Every run of each job, once: the worker drains what is queued at shutdown.
    assert sorted(line["run_id"] for line in ticks) == sorted(by_job["tick"])
    assert sorted(line["run_id"] for line in broken) == sorted(by_job["broken"])
    for line in ticks:
        assert_line_is_the_run(line, runs[line["run_id"]])
        assert (line["job"], line["state"], line["failed"], line["trigger"], line["exit_code"]) == (
            "tick", "success", False, "schedule", 0)
        assert "stdout" not in line and "stderr" not in line
    for line in broken:
        assert_line_is_the_run(line, runs[line["run_id"]])
        assert (line["job"], line["state"], line["failed"], line["exit_code"], line["error"]) == (
            "broken", "failed", True, 3, "exit code 3")
        assert (line["stdout"], line["stderr"]) == ("partial\n", "oops\n")
    # The scheduled instants are whole seconds, one per fire.
    assert all(line["scheduled_at"] == int(line["scheduled_at"]) for line in ticks)
    assert len({line["scheduled_at"] for line in ticks}) == len(ticks)

    assert not (out / "errors.jsonl").exists()
    assert sorted(path.name for path in out.iterdir()) == ["broken.jsonl", "global.jsonl"]

    records = deliveries(state, list(runs))
    for run_id in by_job["tick"] + by_job["broken"]:
        assert [(r.notifier, r.state, r.attempts) for r in records[run_id]] == [("jsonl", "sent", 1)]
    assert not any(run_id in records for run_id in by_job["fine"] + by_job["muted"])
    assert "notifier 'jsonl'" not in log  # no failed or dropped delivery was logged
