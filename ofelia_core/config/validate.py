"""Check a loaded :class:`~.model.Config` against the registered job types and keys.

What is checked:

- each job's type is registered, else an error listing the known types;
- each key is known for the job's type (its own keys, the keys every job
  takes, and keys plugins add for ``job`` or that type); an unknown key is an
  error when ``strict`` and a warning otherwise, with the nearest key
  suggested. ``[global]`` and ``[webhook "x"]`` follow the same rule;
- required keys are present and not empty, and ``job-run`` has ``image`` or
  ``container``;
- values fit their kind (bool, int, duration, schedule); a key that is not a
  list key is given at most once;
- ``[drivers]`` keys are concerns (driver names are checked when drivers are
  chosen); concern sections (``[docker-client]``...) are not checked here:
  settings of drivers that are not chosen are kept, never rejected;
- references to other jobs (``depends-on``, ``on-success``, ``on-failure``):
  a name that names no job is an error, or a warning when ``[global]``
  ``docker = true`` (the job may come from Docker labels; the daemon's
  ``--docker`` does the same, see :func:`soften_unknown_references`, and the
  files and labels together are checked again as errors). A job referring to
  itself, a cycle of ``depends-on``, and a loop of ``on-success``/``on-failure``
  triggers are errors that spell the chain out (``a -> b -> a``);
  ``retry-on`` names known outcomes. An unknown webhook name is a warning.

Values of ``secret`` keys never appear in messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, KeySpec

from .kinds import CONCERNS
from .model import Config, Diagnostic, Section
from .schedule import ScheduleError, check_zone, parse_schedule
from .suggest import nearest
from .values import coerce, to_bool, to_list

#: Keys of ``[webhook "name"]`` sections (read by ``ofelia_core.notifiers.webhook``, which checks them).
WEBHOOK_KEYS: tuple[KeySpec, ...] = (
    KeySpec("url", secret=True, description="Where to POST; secret because webhook URLs carry tokens."),
    KeySpec(
        "preset", default="json-post",
        description="Payload format: json-post, slack, discord, teams, ntfy, gotify, healthchecks (and the "
        "fork's ntfy-token, healthchecks-selfhosted).",
    ),
    KeySpec("id", secret=True, description="The fork's preset id (Slack `T…/B…`, ntfy topic, healthchecks uuid)."),
    KeySpec(
        "secret", secret=True,
        description="The service's token where the preset uses one (Slack/Discord URL, ntfy, Gotify); "
        "otherwise the HMAC-SHA256 key that signs the body.",
    ),
    KeySpec(
        "trigger", default="error", choices=("always", "error", "success", "skipped"),
        description="Which runs are sent: error (failed, timed out, cancelled), success, skipped (skipped, "
        "missed) or always.",
    ),
    KeySpec("timeout", "duration", "10s", description="Time limit for one request, all of it."),
    KeySpec("retry-count", "int", 3, description="Retries after a failed request."),
    KeySpec("retry-delay", "duration", "5s", description="Pause between retries."),
    KeySpec("template", description="Body with `{placeholders}`, replacing the preset's; JSON when it starts "
            "with `{` or `[`."),
    KeySpec("link", description="A URL the message links to (logs, a dashboard)."),
    KeySpec("link-text", description="The link's text (`View details`)."),
)


#: Job types that need at least one of several keys.
ONE_OF: dict[str, tuple[str, ...]] = {"job-run": ("image", "container")}
JOB_REFERENCE_KEYS: tuple[str, ...] = ("depends-on", "on-success", "on-failure")
#: Keys whose targets a finished run triggers: a loop through them would never end.
TRIGGER_KEYS: tuple[str, ...] = ("on-success", "on-failure")
#: ``retry-on`` words (see ``ofelia_core.jobs.RETRY_ON_WORDS``).
RETRY_ON_WORDS: frozenset[str] = frozenset({"failed", "timed-out", "timed_out", "timeout"})
#: Starts the message of an unknown job reference (:func:`soften_unknown_references` finds it).
UNKNOWN_JOB = "no job named"


def job_keys(job_type: JobTypeSpec, extra_keys: Sequence[ConfigKeys]) -> dict[str, KeySpec]:
    """Every key a job of ``job_type`` accepts; a type's own spec wins over the common one."""
    table = _section_keys(extra_keys, "job")
    table.update((spec.name, spec) for spec in job_type.keys)
    table.update(_section_keys(extra_keys, job_type.name))
    return table


def global_keys(extra_keys: Sequence[ConfigKeys]) -> dict[str, KeySpec]:
    """Every key ``[global]`` accepts."""
    return _section_keys(extra_keys, "global")


def validate_config(
    config: Config,
    job_types: Mapping[str, JobTypeSpec],
    extra_keys: Sequence[ConfigKeys],
    *,
    strict: bool,
) -> list[Diagnostic]:
    """All findings for ``config``; it is usable when none has level ``error``."""
    out: list[Diagnostic] = []
    if config.global_.values:
        _check_keys(config.global_, global_keys(extra_keys), strict, out, None, "in [global]")
    _check_drivers(config.drivers, out)
    for webhook in config.webhooks.values():
        out.extend(validate_webhook(webhook, strict=strict))
    for name, job in config.jobs.items():
        job_type = job_types.get(job.kind)
        if job_type is None:
            known = sorted(job_types)
            out.append(
                Diagnostic(
                    "error",
                    job.location,
                    f"unknown job type '{job.kind}'; known types: {', '.join(known)}",
                    job=name,
                    suggestion=nearest(job.kind, known),
                )
            )
            continue
        _check_job(job, job_keys(job_type, extra_keys), strict, out)
    _check_references(config, out)
    return out


def validate_webhook(webhook: Section, *, strict: bool) -> list[Diagnostic]:
    """Findings for one ``[webhook "name"]`` section: its keys, then what its preset needs."""
    from ..notifiers.webhook.settings import problems  # the notifier owns the rules

    out: list[Diagnostic] = []
    where = f'in [webhook "{webhook.name}"]'
    _check_keys(webhook, {spec.name: spec for spec in WEBHOOK_KEYS}, strict, out, None, where)
    out = [d if where in d.message else replace(d, message=f"{d.message} {where}") for d in out]
    if not any(d.level == "error" for d in out):
        known = {spec.name for spec in WEBHOOK_KEYS}
        values = {key: value for key, value in webhook.values.items() if key in known}
        for key, message in problems(values):
            out.append(Diagnostic("error", webhook.where(key), f"{message} {where}", key=key))
    return out


def _section_keys(extra_keys: Sequence[ConfigKeys], section: str) -> dict[str, KeySpec]:
    return {spec.name: spec for group in extra_keys if group.section == section for spec in group.keys}


def _check_job(job: Section, table: dict[str, KeySpec], strict: bool, out: list[Diagnostic]) -> None:
    name = job.name
    _check_keys(job, table, strict, out, name, f"for {job.kind} jobs")
    alternatives = ONE_OF.get(job.kind)
    if alternatives and not any(_present(job.values.get(key)) for key in alternatives):
        wanted = " or ".join(f"'{key}'" for key in alternatives)
        out.append(Diagnostic("error", job.location, f"{job.kind} needs {wanted}", job=name, key=alternatives[0]))
    zone = job.values.get("timezone")
    if isinstance(zone, str) and zone.strip():
        try:
            check_zone(zone.strip())
        except ScheduleError as exc:
            out.append(Diagnostic("error", job.where("timezone"), str(exc), job=name, key="timezone"))
            zone = None
    for key, spec in table.items():
        value = job.values.get(key)
        if spec.kind != "schedule" or value is None or isinstance(value, list):
            continue
        try:
            _, warnings = parse_schedule(str(value), timezone=zone if isinstance(zone, str) else None)
        except ScheduleError as exc:
            out.append(Diagnostic("error", job.where(key), str(exc), job=name, key=key))
            continue
        out.extend(Diagnostic("warning", job.where(key), text, job=name, key=key) for text in warnings)


def _check_keys(
    section: Section,
    table: dict[str, KeySpec],
    strict: bool,
    out: list[Diagnostic],
    job: str | None,
    where: str,
) -> None:
    """Unknown keys, repeated single keys, value kinds and required keys."""
    for key, value in section.values.items():
        location = section.where(key)
        spec = table.get(key)
        if spec is None:
            out.append(
                Diagnostic(
                    "error" if strict else "warning",
                    location,
                    f"unknown key {where}" + ("" if strict else "; it is ignored"),
                    job=job,
                    key=key,
                    suggestion=nearest(key, table),
                )
            )
            continue
        problem = _value_problem(spec, value)
        if problem:
            out.append(Diagnostic("error", location, problem, job=job, key=key))
    for spec in table.values():
        if not spec.required:
            continue
        if spec.name not in section.values:
            out.append(
                Diagnostic("error", section.location, f"is required {where} but missing", job=job, key=spec.name)
            )
        elif spec.kind != "schedule" and not _present(section.values[spec.name]):
            # An empty schedule gets the schedule parser's more helpful message.
            out.append(
                Diagnostic(
                    "error",
                    section.where(spec.name),
                    f"is required {where} but empty",
                    job=job,
                    key=spec.name,
                )
            )


def _value_problem(spec: KeySpec, value: Any) -> str | None:
    if spec.kind != "list" and isinstance(value, list):
        return f"given {len(value)} times, but takes one value"
    if spec.choices and str(value).strip().lower() not in spec.choices:
        return f"must be one of {', '.join(spec.choices)}, got {value!r}"
    if spec.kind in ("str", "schedule"):
        return None
    try:
        coerce(spec, value)
    except ValueError as exc:
        return f"invalid {spec.kind} value" if spec.secret else str(exc)
    return None


def _present(value: Any) -> bool:
    if isinstance(value, list):
        return any(_present(item) for item in value)
    return value is not None and str(value).strip() != ""


def _check_drivers(drivers: Section, out: list[Diagnostic]) -> None:
    for key, value in drivers.values.items():
        location = drivers.where(key)
        if key not in CONCERNS:
            out.append(
                Diagnostic(
                    "error",
                    location,
                    f"not a driver concern; [drivers] takes {', '.join(CONCERNS)}",
                    key=key,
                    suggestion=nearest(key, CONCERNS),
                )
            )
        elif isinstance(value, list):
            out.append(Diagnostic("error", location, f"given {len(value)} times; name one driver", key=key))


def _check_references(config: Config, out: list[Diagnostic]) -> None:
    jobs = config.jobs
    labels_possible = _reads_labels(config)
    for name, job in jobs.items():
        for key in JOB_REFERENCE_KEYS:
            if key not in job.values:
                continue
            for target in to_list(job.values[key], split_commas=True):
                if target == name:
                    out.append(Diagnostic("error", job.where(key), "a job cannot refer to itself", job=name, key=key))
                elif target not in jobs:
                    out.append(_unknown_job(job, key, target, jobs, labels_possible))
        if "retry-on" in job.values:
            for word in to_list(job.values["retry-on"], split_commas=True):
                if word.lower() not in RETRY_ON_WORDS:
                    out.append(
                        Diagnostic(
                            "error",
                            job.where("retry-on"),
                            f"unknown outcome {word!r}; retry-on takes failed and timed-out",
                            job=name,
                            key="retry-on",
                            suggestion=nearest(word.lower(), ("failed", "timed-out")),
                        )
                    )
        if "webhooks" in job.values:
            for target in to_list(job.values["webhooks"], split_commas=True):
                if target not in config.webhooks:
                    out.append(
                        Diagnostic(
                            "warning",
                            job.where("webhooks"),
                            f"no webhook named '{target}' is defined",
                            job=name,
                            key="webhooks",
                            suggestion=nearest(target, config.webhooks),
                        )
                    )
    cycle = _dependency_cycle(config)
    if cycle:
        first = jobs[_reported(cycle, config)]
        out.append(
            Diagnostic(
                "error",
                first.where("depends-on"),
                "depends-on forms a cycle: " + " -> ".join([*cycle, cycle[0]]),
                job=first.name,
                key="depends-on",
            )
        )
    loop = trigger_loop(config)
    if loop:
        names = [name for name, _ in loop]
        reported = _reported(names, config)
        key = dict(loop)[reported]
        steps = ", ".join(f"{name} {how} {names[(i + 1) % len(names)]}" for i, (name, how) in enumerate(loop))
        out.append(
            Diagnostic(
                "error",
                jobs[reported].where(key),
                "on-success/on-failure triggers form a loop that would never end: "
                + " -> ".join([*names, names[0]])
                + f" ({steps}); use max-retries to run a failed job again",
                job=reported,
                key=key,
            )
        )


def soften_unknown_references(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    """``diagnostics`` with unknown-job errors made warnings: for the files alone when the
    daemon also reads Docker labels (``--docker``), where the job may be a label job."""
    return [
        replace(d, level="warning") if d.level == "error" and d.message.startswith(UNKNOWN_JOB) else d
        for d in diagnostics
    ]


def _unknown_job(
    job: Section, key: str, target: str, jobs: Mapping[str, Section], labels_possible: bool
) -> Diagnostic:
    if labels_possible:
        return Diagnostic(
            "warning",
            job.where(key),
            f"{UNKNOWN_JOB} '{target}' is defined in the configuration files (fine if it comes from Docker labels)",
            job=job.name,
            key=key,
            suggestion=nearest(target, jobs),
        )
    return Diagnostic(
        "error",
        job.where(key),
        f"{UNKNOWN_JOB} '{target}'; jobs: {', '.join(sorted(jobs))}",
        job=job.name,
        key=key,
        suggestion=nearest(target, jobs),
    )


def _reads_labels(config: Config) -> bool:
    """Whether [global] turns Docker labels on (a bad value is reported elsewhere)."""
    try:
        return to_bool(config.global_.values.get("docker", False))
    except ValueError:
        return False


def _reported(cycle: Sequence[str], config: Config) -> str:
    """The job a cycle is reported on: a label job if there is one (the merge drops that
    job, never a file's), else the first."""
    for name in cycle:
        section = config.jobs[name]
        if section.location.source.startswith("label"):
            return name
    return cycle[0]


def trigger_loop(config: Config) -> list[tuple[str, str]] | None:
    """One loop of on-success/on-failure triggers between defined jobs, as (job, key) steps,
    if any (self-triggers are reported elsewhere).

    Every loop is refused, on-failure ones too: a job that keeps failing would trigger
    its own trigger for ever. (Retrying is what ``max-retries`` is for, and it ends.)
    """
    edges: dict[str, list[tuple[str, str]]] = {}
    for name, job in config.jobs.items():
        edges[name] = [
            (target, key)
            for key in TRIGGER_KEYS
            for target in to_list(job.values.get(key, []), split_commas=True)
            if target in config.jobs and target != name
        ]
    return _find_cycle(edges)


def _find_cycle(edges: Mapping[str, Sequence[tuple[str, str]]]) -> list[tuple[str, str]] | None:
    """One cycle of ``edges`` (job -> [(target, key)]), as (job, key of the edge taken) steps, if any."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[tuple[str, str]] = []  # (job, the key of the edge taken from it)

    def visit(node: str) -> list[tuple[str, str]] | None:
        state[node] = 1
        for target, key in edges[node]:
            path.append((node, key))
            if state.get(target) == 1:
                start = next(i for i, (name, _) in enumerate(path) if name == target)
                return path[start:]
            if target not in state:
                found = visit(target)
                if found:
                    return found
            path.pop()
        state[node] = 2
        return None

    for name in edges:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None


def _dependency_cycle(config: Config) -> list[str] | None:
    """One cycle of ``depends-on`` edges between defined jobs, if any (self-loops are reported elsewhere)."""
    edges = {
        name: [
            (t, "depends-on") for t in to_list(job.values.get("depends-on", []), split_commas=True)
            if t in config.jobs and t != name
        ]
        for name, job in config.jobs.items()
    }
    cycle = _find_cycle(edges)
    return None if cycle is None else [name for name, _ in cycle]
