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
- references to other jobs (``depends-on``, ``on-success``, ``on-failure``)
  and to webhooks: a name that is not defined in the files is a warning (it
  may come from Docker labels); a job depending on itself, or a cycle of
  ``depends-on``, is an error.

Values of ``secret`` keys never appear in messages.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, KeySpec

from .kinds import CONCERNS
from .model import Config, Diagnostic, Section
from .schedule import ScheduleError, check_zone, parse_schedule
from .suggest import nearest
from .values import coerce, to_list

#: Keys of ``[webhook "name"]`` sections, checked loosely (kinds only).
WEBHOOK_KEYS: tuple[KeySpec, ...] = (
    KeySpec("url", secret=True, description="Where to POST; secret because webhook URLs carry tokens."),
    KeySpec("preset", description="A named payload format (slack, discord, ...)."),
    KeySpec("trigger", description="When to send: error, success or always."),
    KeySpec("timeout", "duration", "10s", description="Time limit for one request."),
    KeySpec("retry-count", "int", 3, description="Retries after a failed request."),
    KeySpec("retry-delay", "duration", "5s", description="Pause between retries."),
    KeySpec("secret", secret=True, description="Signs the payload."),
    KeySpec("allowed-hosts", "list", description="Hosts the URL may point to."),
    KeySpec("template", description="A custom payload template."),
)

#: Job types that need at least one of several keys.
ONE_OF: dict[str, tuple[str, ...]] = {"job-run": ("image", "container")}
JOB_REFERENCE_KEYS: tuple[str, ...] = ("depends-on", "on-success", "on-failure")


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
    webhook_table = {spec.name: spec for spec in WEBHOOK_KEYS}
    for webhook in config.webhooks.values():
        _check_keys(webhook, webhook_table, strict, out, None, f'in [webhook "{webhook.name}"]')
        if not webhook.values.get("url") and not webhook.values.get("preset"):
            out.append(
                Diagnostic(
                    "error",
                    webhook.location,
                    f'webhook "{webhook.name}" needs a url (or a preset)',
                    key="url",
                )
            )
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
    for name, job in jobs.items():
        for key in JOB_REFERENCE_KEYS:
            if key not in job.values:
                continue
            for target in to_list(job.values[key], split_commas=True):
                if target == name:
                    out.append(Diagnostic("error", job.where(key), "a job cannot refer to itself", job=name, key=key))
                elif target not in jobs:
                    out.append(
                        Diagnostic(
                            "warning",
                            job.where(key),
                            f"no job named '{target}' is defined in the configuration files "
                            "(fine if it comes from Docker labels)",
                            job=name,
                            key=key,
                            suggestion=nearest(target, jobs),
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
        first = jobs[cycle[0]]
        out.append(
            Diagnostic(
                "error",
                first.where("depends-on"),
                "depends-on forms a cycle: " + " -> ".join([*cycle, cycle[0]]),
                job=cycle[0],
                key="depends-on",
            )
        )


def _dependency_cycle(config: Config) -> list[str] | None:
    """One cycle of ``depends-on`` edges between defined jobs, if any (self-loops are reported elsewhere)."""
    edges = {
        name: [
            t for t in to_list(job.values.get("depends-on", []), split_commas=True) if t in config.jobs and t != name
        ]
        for name, job in config.jobs.items()
    }
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in edges[node]:
            if state.get(target) == 1:
                return path[path.index(target) :]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return None

    for name in edges:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return None
