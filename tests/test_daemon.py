"""The daemon end to end, as a user runs it: a real `ofelia daemon` process, real
job-local processes, real signals, the real history database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from history_rows import history_rows
from polling import wait_for

pytestmark = pytest.mark.slow

OFELIA = [sys.executable, "-m", "ofelia_core"]




class DaemonProcess:
    def __init__(self, config: Path, state: Path, *extra: str) -> None:
        self.log = state / "daemon.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
        env["OFELIA_STATE_DIR"] = str(state)
        self.env = env
        self.handle = self.log.open("ab")
        self.proc = subprocess.Popen(
            [*OFELIA, "daemon", "--config", str(config), *extra],
            stdout=self.handle, stderr=subprocess.STDOUT, env=env,
        )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, needle: str, timeout: float = 20.0) -> bool:
        return wait_for(lambda: needle in self.text(), timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout)
        self.handle.close()
        return code


#: Run rows of the daemon under test.
runs = history_rows


@pytest.fixture
def state(tmp_path: Path) -> Path:
    path = tmp_path / "state"
    path.mkdir()
    return path


@pytest.fixture
def daemons() -> Iterator[list[DaemonProcess]]:
    started: list[DaemonProcess] = []
    yield started
    for daemon in started:
        if daemon.proc.poll() is None:
            daemon.proc.kill()
            daemon.proc.wait()


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_runs_local_jobs_on_schedule_and_records_them(tmp_path: Path, state: Path, daemons: list) -> None:
    marker = tmp_path / "ticks"
    config = write(tmp_path / "c.ini",
                   f'[job-local "tick"]\nschedule = @every 1s\ncommand = sh -c "echo tick >> {marker}"\n')
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert wait_for(lambda: len([r for r in runs(state, "tick") if r["state"] == "success"]) >= 2), daemon.text()
    assert daemon.stop() == 0
    text = daemon.text()
    assert '[Job "tick" (' in text and "] Started - sh -c" in text
    assert 'Finished in "' in text
    assert marker.read_text().count("tick") >= 2
    assert all(len(str(r["id"])) == 12 for r in runs(state, "tick"))
    drivers = json.loads((state / "drivers.json").read_text())
    assert {d["concern"]: d["driver"] for d in drivers["drivers"]}["buffer-pool"] == "baseline"
    assert json.loads((state / "daemon.json").read_text())["config_sources"] == [str(config)]


def test_sigterm_waits_for_a_running_job_within_the_timeout(tmp_path: Path, state: Path, daemons: list) -> None:
    config = write(tmp_path / "c.ini", '[global]\nshutdown-timeout = 20s\n'
                   '[job-local "slow"]\nschedule = @manual\nrun-on-startup = true\n'
                   'command = sh -c "sleep 1; echo finished"\n')
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert daemon.wait_log('Started - sh -c'), daemon.text()
    assert daemon.stop() == 0
    [run] = runs(state, "slow")
    assert run["state"] == "success"
    assert run["stdout"] == b"finished\n"
    assert run["trigger"] == "startup"


def test_sigterm_cancels_jobs_still_running_after_the_timeout(tmp_path: Path, state: Path, daemons: list) -> None:
    pidfile = tmp_path / "pid"
    config = write(tmp_path / "c.ini", '[global]\nshutdown-timeout = 500ms\n'
                   '[job-local "stuck"]\nschedule = @manual\nrun-on-startup = true\n'
                   f'command = sh -c "echo $$ > {pidfile}; exec sleep 300"\n')
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert wait_for(lambda: pidfile.exists() and pidfile.read_text().strip() != ""), daemon.text()
    assert daemon.stop() == 0
    [run] = runs(state, "stuck")
    assert run["state"] == "cancelled"
    pid = int(pidfile.read_text())
    assert wait_for(lambda: not Path(f"/proc/{pid}").exists()
                    or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z")


# The daemon as ``ofelia daemon`` runs it, from a script whose helper thread sends a signal to
# itself: the kernel then hands it to that thread, not the main one (as it may any signal).
SIGNAL_TO_ANOTHER_THREAD = """
import signal, sys, threading, time
from ofelia_core.daemon import Daemon
from ofelia_core.logs import configure_logging

configure_logging("info")
daemon = Daemon(sys.argv[1])

def poke():
    daemon.started.wait(20)
    time.sleep(0.5)
    signal.pthread_kill(threading.get_ident(), signal.SIGHUP)
    time.sleep(1)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)

threading.Thread(target=poke, name="poke").start()
sys.exit(daemon.run())
"""


def test_a_signal_the_kernel_hands_to_another_thread_still_reloads_and_stops(tmp_path: Path, state: Path) -> None:
    config = write(tmp_path / "c.ini", '[global]\nconfig-watch-interval = 0\n'
                   '[job-local "a"]\nschedule = @daily\ncommand = true\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("OFELIA_")}
    env["OFELIA_STATE_DIR"] = str(state)
    proc = subprocess.run([sys.executable, "-c", SIGNAL_TO_ANOTHER_THREAD, str(config)], env=env,
                          capture_output=True, text=True, timeout=60)
    # The main thread waited with no file to watch; it woke for both signals all the same.
    assert "reloading the config (SIGHUP)" in proc.stderr, proc.stderr
    assert "ofelia stopped" in proc.stderr and proc.returncode == 0, proc.stderr


def test_sighup_reloads_added_changed_and_removed_jobs(tmp_path: Path, state: Path, daemons: list) -> None:
    config = write(tmp_path / "c.ini", '[global]\nconfig-watch-interval = 0\n'
                   '[job-local "old"]\nschedule = @every 1s\ncommand = true\n')
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert wait_for(lambda: len(runs(state, "old")) >= 1), daemon.text()
    write(config, '[global]\nconfig-watch-interval = 0\n[job-local "new"]\nschedule = @every 1s\ncommand = true\n')
    daemon.proc.send_signal(signal.SIGHUP)
    assert daemon.wait_log("reloaded: 1 jobs (added: new; changed: none; removed: old)"), daemon.text()
    assert wait_for(lambda: len(runs(state, "new")) >= 1)
    settled = len(runs(state, "old"))
    assert wait_for(lambda: len(runs(state, "new")) >= 3)
    assert len(runs(state, "old")) <= settled + 1  # at most one run that was already due
    assert daemon.stop() == 0


def test_an_invalid_reload_keeps_the_running_config(tmp_path: Path, state: Path, daemons: list) -> None:
    config = write(tmp_path / "c.ini", '[global]\nconfig-watch-interval = 100ms\n'
                   '[job-local "keep"]\nschedule = @every 1s\ncommand = true\n')
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert wait_for(lambda: len(runs(state, "keep")) >= 1), daemon.text()
    write(config, '[global]\nconfig-watch-interval = 100ms\n'
          '[job-local "keep"]\nschedule = * * * * * * *\ncommand = true\n')
    assert daemon.wait_log("reload failed, keeping the running config"), daemon.text()
    assert "schedule" in daemon.text().split("reload failed")[1]
    before = len(runs(state, "keep"))
    assert wait_for(lambda: len(runs(state, "keep")) >= before + 2)
    assert daemon.stop() == 0


def test_a_config_file_change_is_picked_up_without_a_signal(tmp_path: Path, state: Path, daemons: list) -> None:
    config = write(tmp_path / "c.yaml", "global:\n  config-watch-interval: 100ms\n"
                   "job-local:\n  a:\n    schedule: '@manual'\n    command: 'true'\n")
    daemon = DaemonProcess(config, state)
    daemons.append(daemon)
    assert daemon.wait_log("started: 1 jobs"), daemon.text()
    write(config, "global:\n  config-watch-interval: 100ms\n"
          "job-local:\n  a:\n    schedule: '@manual'\n    command: 'false'\n")
    assert daemon.wait_log("(a config file changed)"), daemon.text()
    assert daemon.wait_log("changed: a;"), daemon.text()
    assert daemon.stop() == 0


def test_an_invalid_config_at_start_exits_non_zero_with_the_reason(tmp_path: Path, state: Path) -> None:
    config = write(tmp_path / "c.ini", '[job-local "x"]\nschedule = @every\ncommand = true\n')
    result = subprocess.run([*OFELIA, "daemon", "--config", str(config)], capture_output=True, text=True,
                            env={**os.environ, "OFELIA_STATE_DIR": str(state)}, timeout=60)
    assert result.returncode == 1
    assert f"{config}:2" in result.stderr and "@every" in result.stderr


def test_a_run_killed_with_the_daemon_is_recorded_as_cancelled_at_the_next_start(
    tmp_path: Path, state: Path, daemons: list
) -> None:
    config = write(tmp_path / "c.ini", '[job-local "long"]\nschedule = @manual\nrun-on-startup = true\n'
                   'command = sleep 300\n[job-local "other"]\nschedule = @manual\ncommand = true\n')
    first = DaemonProcess(config, state)
    daemons.append(first)
    assert wait_for(lambda: any(r["state"] == "running" for r in runs(state, "long"))), first.text()
    first.stop(signal.SIGKILL)
    write(config, '[job-local "other"]\nschedule = @manual\ncommand = true\n')
    second = DaemonProcess(config, state)
    daemons.append(second)
    assert second.wait_log("recorded as cancelled"), second.text()
    [run] = runs(state, "long")
    assert run["state"] == "cancelled"
    assert "daemon stopped before the run finished" in str(run["error"])
    assert second.stop() == 0


def test_ofelia_run_prints_output_exits_with_the_code_and_records(tmp_path: Path, state: Path) -> None:
    config = write(tmp_path / "c.ini", '[job-local "hello"]\nschedule = @manual\n'
                   'command = sh -c "echo out; echo err >&2; exit 4"\n')
    env = {**os.environ, "OFELIA_STATE_DIR": str(state)}
    result = subprocess.run([*OFELIA, "run", "--config", str(config), "hello"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert result.returncode == 4
    assert result.stdout == "out\n"
    assert "err\n" in result.stderr
    [run] = runs(state, "hello")
    assert (run["state"], run["exit_code"], run["trigger"]) == ("failed", 4, "manual")
    listed = subprocess.run([*OFELIA, "history", "--json", "--output", "hello"], capture_output=True,
                            text=True, env=env, timeout=60)
    assert listed.returncode == 0, listed.stderr
    [record] = [json.loads(line) for line in listed.stdout.splitlines()]
    assert record["id"] == run["id"] and record["stdout"] == "out\n" and record["exit_code"] == 4


def test_ofelia_run_unknown_job(tmp_path: Path, state: Path) -> None:
    config = write(tmp_path / "c.ini", '[job-local "hello"]\nschedule = @manual\ncommand = true\n')
    result = subprocess.run([*OFELIA, "run", "--config", str(config), "nope"], capture_output=True, text=True,
                            env={**os.environ, "OFELIA_STATE_DIR": str(state)}, timeout=60)
    assert result.returncode == 1
    assert "no job named 'nope'; jobs: hello" in result.stderr


def test_save_middleware_writes_ofelias_files_without_secrets(tmp_path: Path, state: Path) -> None:
    folder = tmp_path / "saved"
    config = write(tmp_path / "c.ini", f'[global]\nsave-folder = {folder}\n'
                   '[job-local "saveme"]\nschedule = @manual\ncommand = echo saved-output\n'
                   'smtp-password = hunter2\nslack-webhook = https://hooks.example.invalid/T0/B0/XYZ\n')
    subprocess.run([*OFELIA, "run", "--config", str(config), "saveme"], capture_output=True,
                   env={**os.environ, "OFELIA_STATE_DIR": str(state)}, timeout=60, check=True)
    names = sorted(p.name for p in folder.iterdir())
    assert [n.split("_", 2)[-1] for n in names] == ["saveme.json", "saveme.stderr.log", "saveme.stdout.log"]
    stdout_file = next(p for p in folder.iterdir() if p.name.endswith(".stdout.log"))
    assert stdout_file.read_text() == "saved-output\n"
    json_text = next(p for p in folder.iterdir() if p.name.endswith(".json")).read_text()
    assert "saveme" in json_text  # the job's config is there...
    assert "hunter2" not in json_text and "XYZ" not in json_text  # ...without its secrets


def test_run_now_by_name_goes_through_the_daemon(tmp_path: Path, state: Path) -> None:
    import threading

    from ofelia_core.daemon import Daemon
    from ofelia_core.errors import OfeliaError
    from ofelia_core.runs import RunState

    config = write(tmp_path / "c.ini", '[job-local "now"]\nschedule = @manual\ncommand = echo ran\n')
    daemon = Daemon(str(config), env={**os.environ, "OFELIA_STATE_DIR": str(state)})
    codes: list[int] = []
    thread = threading.Thread(target=lambda: codes.append(daemon.run(install_signals=False)))
    thread.start()
    try:
        assert daemon.started.wait(30)
        run = daemon.run_now("now")
        assert daemon.dispatcher is not None and daemon.dispatcher.wait_idle(30)
        assert (run.state, run.stdout, run.trigger) == (RunState.SUCCESS, b"ran\n", "manual")
        with pytest.raises(OfeliaError, match="no job named 'later'; jobs: now"):
            daemon.run_now("later")
    finally:
        daemon.request_stop()
        thread.join(60)
    assert codes == [0]
    assert [r["id"] for r in runs(state, "now")] == [run.id]
