"""The ``ofelia`` command line.

Every option can also come from an ``OFELIA_*`` variable (shown in ``--help``).
Heavy modules are imported inside the commands so ``ofelia validate`` starts fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, NoReturn

import click

from . import __version__
from .errors import OfeliaError
from .logs import LEVELS

CONFIG_HELP = (
    "Config file (INI or YAML by extension); a glob or several comma-separated paths. "
    "Default: /etc/ofelia/config.ini."
)


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _config_option(func: Any) -> Any:
    return click.option(
        "--config", "-c", "config_path", envvar="OFELIA_CONFIG", show_envvar=True, help=CONFIG_HELP
    )(func)


def _driver_option(func: Any) -> Any:
    return click.option(
        "--driver",
        "drivers",
        multiple=True,
        metavar="CONCERN=NAME",
        help="Choose a driver, overriding environment and file (repeatable). "
        "Concerns: docker-client, token-manager, buffer-pool, metrics.",
    )(func)


def _parse_driver_options(values: Sequence[str]) -> dict[str, str]:
    parsed: dict[str, str] = {}
    for value in values:
        concern, sep, name = value.partition("=")
        if not sep or not concern.strip() or not name.strip():
            _fail(f"--driver {value!r}: expected CONCERN=NAME, for example --driver buffer-pool=tiered")
        parsed[concern.strip()] = name.strip()
    return parsed


def _load(config_path: str | None, strict: bool) -> tuple[Any, list[Any], Any]:
    """Read and validate the config; return (config, diagnostics, hooks)."""
    from .runtime import load_and_validate

    loaded = load_and_validate(config_path, os.environ, strict=strict)
    return loaded.config, loaded.diagnostics, loaded.hooks


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="ofelia")
@click.option(
    "--log-level",
    type=click.Choice(LEVELS, case_sensitive=False),
    default="info",
    envvar="OFELIA_LOG_LEVEL",
    show_envvar=True,
    show_default=True,
    help="Least severe log level printed.",
)
@click.option("--log-json", is_flag=True, envvar="OFELIA_LOG_JSON", show_envvar=True,
              help="Write logs as JSON lines.")
def cli(log_level: str, log_json: bool) -> None:
    """ofelia: a Docker job scheduler, a drop-in for Ofelia's INI files and labels, plus YAML.

    Jobs run in running containers (job-exec), new containers (job-run), swarm services
    (job-service-run) or on the host (job-local), on cron schedules. Start with
    `ofelia validate --config FILE`, then `ofelia schedule` and `ofelia plugins`.
    """
    # loguru is imported only by commands that log (it costs ~80 ms, validate must be quick).
    click.get_current_context().obj = {"log_level": log_level, "log_json": log_json}


def _start_logging() -> None:
    from .logs import configure_logging

    options = click.get_current_context().find_root().obj or {}
    configure_logging(options.get("log_level", "info"), json=options.get("log_json", False))


@cli.command()
@_config_option
@click.option("--strict", is_flag=True, envvar="OFELIA_STRICT", show_envvar=True,
              help="Treat unknown keys as errors instead of warnings.")
def validate(config_path: str | None, strict: bool) -> None:
    """Check the config: every job's type, keys, values and schedule, and the driver choice.

    Prints `OK. Found N jobs.` and exits 0, or prints each problem (file, line or path,
    job and key) and exits 1.
    """
    from .drivers.selection import choose_drivers

    try:
        config, diagnostics, _ = _load(config_path, strict)
        choose_drivers(env=os.environ, file_drivers=config.drivers)
    except OfeliaError as exc:
        _fail(str(exc))
    errors = [d for d in diagnostics if d.level == "error"]
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)
    if errors:
        click.echo(f"Invalid: {len(errors)} error(s) in {', '.join(config.sources) or 'no file'}.", err=True)
        sys.exit(1)
    click.echo(f"OK. Found {len(config.jobs)} jobs.")


@cli.command()
@_config_option
@_driver_option
@click.option("--json", "as_json", is_flag=True, envvar="OFELIA_PLUGINS_JSON", show_envvar=True,
              help="Print JSON instead of a table.")
@click.option("--check", is_flag=True, envvar="OFELIA_PLUGINS_CHECK", show_envvar=True,
              help="Also build each chosen driver (as a start would) and print its stats().")
def plugins(config_path: str | None, drivers: Sequence[str], as_json: bool, check: bool) -> None:
    """Show which driver each concern would use, where it comes from and what chose it.

    Precedence: --driver, then the environment (a name override such as
    OFELIA_BUFFER_POOL beats a flag such as OFELIA_USE_ENHANCED_BUFFER_POOL), then the
    config file's drivers section, then the default. General plugins are listed too.
    Without a config file, only command line and environment decide.
    """
    from .config.model import Config
    from .drivers.loading import default_context, register_drivers, start_drivers
    from .drivers.report import describe_choices, format_table
    from .drivers.selection import choose_drivers
    from .plugins import build_plugin_manager, disabled_plugins, general_plugins

    _start_logging()
    try:
        config = Config()
        if config_path or os.environ.get("OFELIA_CONFIG"):
            config, diagnostics, _ = _load(config_path, strict=False)
            errors = [str(d) for d in diagnostics if d.level == "error"]
            if errors:
                _fail("the config is invalid:\n" + "\n".join(errors))
        choices = choose_drivers(cli=_parse_driver_options(drivers), env=os.environ, file_drivers=config.drivers)
        pm = build_plugin_manager(disabled=disabled_plugins(os.environ))
        rows = describe_choices(choices)
        if check:
            settings = {key: config.concern_settings(key) for key in choices}
            active = start_drivers(pm, choices, settings, default_context(config.global_.values))
            try:
                for row in rows:
                    row["stats"] = active.by_concern()[row["concern"]].stats()
            finally:
                active.close()
        else:
            register_drivers(pm, choices)
        general = {
            name: {"distribution": dist, "version": version}
            for name, (dist, version) in general_plugins(pm).items()
        }
    except OfeliaError as exc:
        _fail(str(exc))
    except ValueError as exc:  # a driver rejecting its own settings
        _fail(str(exc))
    if as_json:
        click.echo(json.dumps({"drivers": rows, "plugins": general}, indent=2, default=str))
        return
    click.echo(format_table(rows))
    if check:
        for row in rows:
            click.echo(f"{row['concern']} stats: {json.dumps(row['stats'], default=str)}")
    click.echo("general plugins: " + (", ".join(
        f"{name} ({info['distribution']} {info['version']})" for name, info in general.items()) or "none"))


@cli.command()
def version() -> None:
    """Print the version of ofelia and of its hookspecs."""
    from ofelia_hookspecs import __version__ as hookspecs_version

    click.echo(f"ofelia {__version__} (ofelia-hookspecs {hookspecs_version}, Python {sys.version.split()[0]})")


@cli.command()
@_config_option
@click.option("--count", "-n", default=5, show_default=True, envvar="OFELIA_SCHEDULE_COUNT",
              show_envvar=True, type=click.IntRange(1, 1000), help="Fire times per job.")
@click.option("--from", "start", envvar="OFELIA_SCHEDULE_FROM", show_envvar=True,
              help="Start instant (ISO 8601 with an offset); default now.")
@click.argument("jobs", nargs=-1)
def schedule(config_path: str | None, count: int, start: str | None, jobs: Sequence[str]) -> None:
    """Print the next fire times of each job, in the job's time zone, DST handled.

    Limit the output to some jobs by naming them.
    """
    from .config.schedule import next_fire_times, parse_schedule

    try:
        config, diagnostics, _ = _load(config_path, strict=False)
    except OfeliaError as exc:
        _fail(str(exc))
    errors = [str(d) for d in diagnostics if d.level == "error"]
    if errors:
        _fail("the config is invalid:\n" + "\n".join(errors))
    unknown = sorted(set(jobs) - set(config.jobs))
    if unknown:
        _fail(f"no job named {', '.join(unknown)}; jobs: {', '.join(sorted(config.jobs))}")
    try:
        # Like the scheduler, count @every from the whole second it starts on.
        origin = datetime.fromisoformat(start) if start else datetime.now().astimezone().replace(microsecond=0)
    except ValueError:
        _fail(f"--from {start!r} is not an ISO 8601 date-time")
    if origin.tzinfo is None:
        _fail(f"--from {start!r} needs a UTC offset, for example 2026-03-29T00:00:00+01:00")
    for name in jobs or sorted(config.jobs):
        section = config.jobs[name]
        spec = str(section.values.get("schedule", ""))
        zone = section.values.get("timezone")
        parsed, _warnings = parse_schedule(spec, timezone=str(zone) if zone else None)
        click.echo(f"{name} ({section.kind}) {spec}")
        times = next_fire_times(parsed, origin, count)
        if not times:
            click.echo("  never fires on a schedule (run it by name or trigger)")
        for instant in times:
            click.echo(f"  {instant.isoformat()}")


@cli.command()
@_config_option
@_driver_option
@click.option("--strict", is_flag=True, envvar="OFELIA_STRICT", show_envvar=True,
              help="Treat unknown keys as errors instead of warnings.")
@click.option("--docker", "-d", "docker", is_flag=True, envvar="OFELIA_DOCKER", show_envvar=True,
              help="Also read jobs from the labels of running containers labelled ofelia.enabled=true "
              "(as [global] docker = true), and follow their changes.")
@click.option("--docker-filter", "-f", "docker_filters", multiple=True, metavar="KEY=VALUE",
              envvar="OFELIA_DOCKER_FILTER", show_envvar=True,
              help="Read only containers that match (repeatable; replaces [global] docker-filter): "
              "KEY=VALUE is a label; label=..., name=... and other engine filters pass as they are.")
@click.option("--enable-web", "enable_web", is_flag=True, envvar="OFELIA_ENABLE_WEB", show_envvar=True,
              help="Serve the web UI and API (as [global] enable-web = true); see docs/web.md.")
@click.option("--web-address", "web_address", metavar="HOST:PORT", envvar="OFELIA_WEB_ADDRESS", show_envvar=True,
              help="Where the web server listens (replaces [global] web-address). Default 127.0.0.1:8081; "
              ":8081 means every address.")
def daemon(
    config_path: str | None,
    drivers: Sequence[str],
    strict: bool,
    docker: bool,
    docker_filters: Sequence[str],
    enable_web: bool,
    web_address: str | None,
) -> None:
    """Run the scheduler: jobs fire on their schedules until SIGTERM or SIGINT.

    SIGTERM/SIGINT stop scheduling and wait for running jobs (shutdown-timeout,
    default 30s) before cancelling them; a second signal cancels them at once.
    SIGHUP, or a change to a config file, reloads the config; a config that fails
    validation is not applied. Run history goes to an SQLite file in the state
    directory (state-dir; OFELIA_STATE_DIR). With --docker, jobs also come from
    container labels, followed live; a job in a file wins over a label job of the
    same name. With --enable-web, the web UI and API are served (loopback only
    unless --web-address says otherwise).
    """
    from .daemon import Daemon

    _start_logging()
    try:
        code = Daemon(
            config_path,
            strict=strict,
            cli_drivers=_parse_driver_options(drivers),
            docker=docker,
            docker_filters=docker_filters,
            enable_web=enable_web,
            web_address=web_address,
        ).run()
    except OfeliaError as exc:
        _fail(str(exc))
    sys.exit(code)


@cli.command(name="run")
@_config_option
@_driver_option
@click.option("--quiet", "-q", is_flag=True, help="Do not print the job's output.")
@click.argument("job")
def run_job(config_path: str | None, drivers: Sequence[str], quiet: bool, job: str) -> None:
    """Run one job once, now, print its output and record it in the history.

    Exits with the job's exit code (1 when it failed without one).
    """
    import threading

    from .runs import Run, RunState, Trigger
    from .runtime import Runtime, load_and_validate

    _start_logging()
    runtime = None
    try:
        runtime = Runtime(load_and_validate(config_path, os.environ), cli_drivers=_parse_driver_options(drivers))
        target = runtime.jobs.get(job)
        if target is None:
            _fail(f"no job named '{job}'; jobs: {', '.join(sorted(runtime.jobs))}")
        cancel = threading.Event()
        try:
            run = runtime.executor.execute(target, Run(target.name, target.type, trigger=Trigger.MANUAL), cancel)
        except KeyboardInterrupt:
            cancel.set()
            raise
    except OfeliaError as exc:
        _fail(str(exc))
    finally:
        if runtime is not None:
            runtime.close()
    if not quiet:
        sys.stdout.buffer.write(run.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(run.stderr)
        sys.stderr.flush()
    if run.state != RunState.SUCCESS:
        click.echo(f"run {run.id}: {run.state}: {run.error or ''}".rstrip(": "), err=True)
    sys.exit(0 if run.state == RunState.SUCCESS else (run.exit_code or 1))


@cli.command()
@_config_option
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(1, 10000),
              help="Runs to show.")
@click.option("--output", "show_output", is_flag=True, help="Also print each run's stdout and stderr.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines, one run each.")
@click.argument("job", required=False)
def history(config_path: str | None, limit: int, show_output: bool, as_json: bool, job: str | None) -> None:
    """Show recent runs (of JOB, or of every job), newest first, from the history database."""
    from datetime import datetime

    from ofelia_hookspecs.settings import format_duration

    from .history import HistoryStore, history_path

    values: dict[str, Any] = {}
    if config_path or os.environ.get("OFELIA_CONFIG"):
        config, _, _ = _load(config_path, strict=False)
        values = dict(config.global_.values)
    path = history_path(values, os.environ)
    if not path.exists():
        _fail(f"no run history at {path} (set state-dir or history-path, or OFELIA_STATE_DIR)")
    store = HistoryStore(path)
    try:
        runs = store.recent(job, limit, with_output=show_output)
    finally:
        store.close()
    if job and not runs:
        click.echo(f"no runs recorded for job '{job}'", err=True)
    for run in runs:
        if as_json:
            record = run.summary()
            if show_output:
                record["stdout"] = run.stdout.decode(errors="replace")
                record["stderr"] = run.stderr.decode(errors="replace")
            click.echo(json.dumps(record, default=str))
            continue
        started = "-"
        if run.started_at:
            started = datetime.fromtimestamp(run.started_at).isoformat(sep=" ", timespec="seconds")
        took = format_duration(run.duration) if run.duration is not None else "-"
        code = "-" if run.exit_code is None else str(run.exit_code)
        click.echo(f"{run.id}  {started}  {run.job_name:<20} {run.state:<10} exit {code:<4} {took:>10}  "
                   f"{run.trigger}{'  ' + run.error if run.error else ''}")
        if show_output:
            for name, data in (("stdout", run.stdout), ("stderr", run.stderr)):
                if data:
                    click.echo(f"  --- {name} ---")
                    click.echo("  " + data.decode(errors="replace").rstrip("\n").replace("\n", "\n  "))


@cli.command(name="hash-password")
@click.option("--stdin", "from_stdin", is_flag=True, envvar="OFELIA_HASH_PASSWORD_STDIN", show_envvar=True,
              help="Read the password from the first line of standard input instead of prompting.")
@click.option("--cost", default=12, show_default=True, type=click.IntRange(4, 31),
              envvar="OFELIA_HASH_PASSWORD_COST", show_envvar=True, help="bcrypt cost (work factor).")
def hash_password_command(from_stdin: bool, cost: int) -> None:
    """Print a bcrypt hash for web-password-hash (a $2a$ hash, as Ofelia's own).

    Prompts twice without echoing the password, or reads one line from standard
    input with --stdin. The password itself is never printed.
    """
    from .web.password import hash_password

    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt("Password", hide_input=True, confirmation_prompt="Repeat the password", err=True)
    try:
        click.echo(hash_password(password, cost))
    except ValueError as exc:
        _fail(str(exc))


def main() -> None:
    cli(prog_name="ofelia")
