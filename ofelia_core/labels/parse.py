"""Container labels to config sections: Ofelia's label rules as pure functions.

Rules (docs/configuration.md, "Docker labels"):

- only containers labelled ``ofelia.enabled=true`` are read (exactly ``true``,
  as the engine-side filter matches it);
- ``ofelia.<job-type>.<job-name>.<key>=<value>`` defines a job; a job name
  cannot contain a dot;
- ``ofelia.<key>=<value>`` on the scheduler's own container (labelled
  ``ofelia.service=true``) sets a ``[global]`` key;
- ``job-exec`` labels are read from any enabled container, and there
  ``container`` is that container's name (on the service container a
  ``container`` label is honoured); every other job type is read only from
  the service container;
- ``volume``, ``environment``, ``volumes-from`` (and the other list keys) may
  be a JSON array of strings;
- values stay strings: validation converts booleans and numbers as it does
  for INI values;
- ``ofelia.webhook.<name>.<key>`` defines a ``[webhook "name"]`` section, on the
  service container only: a webhook's URL decides where job output is sent, so
  whoever can label an app container must not set one. On any other container
  such a label is an error naming the container and the label, and is ignored.

Containers are read oldest first (then by name), so when two containers
define the same job name the one created first keeps it, whatever the order
the engine lists them in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..config.kinds import BUILTIN_JOB_TYPES, WEBHOOK, is_job_kind
from ..config.model import Diagnostic, Location, Section
from ..config.suggest import nearest

PREFIX = "ofelia."
ENABLED_LABEL = "ofelia.enabled"
SERVICE_LABEL = "ofelia.service"
EXEC = "job-exec"
#: Ofelia's JSON-array keys, plus the fork's; the daemon passes every list key it knows.
DEFAULT_LIST_KEYS = frozenset({"volume", "environment", "volumes-from", "depends-on", "on-success", "on-failure"})
#: Global keys a label may not set: they decide how labels are read or where state lives.
BOOTSTRAP_KEYS = frozenset(
    {
        "docker",
        "docker-filter",
        "docker-poll-interval",
        "docker-startup-retries",
        "docker-startup-interval",
        "state-dir",
        "history-path",
        "strict",
    }
)
#: Filter names the engine's container list understands; any other ``key=value`` is a label.
ENGINE_FILTERS = frozenset(
    {
        "ancestor",
        "before",
        "expose",
        "exited",
        "health",
        "id",
        "isolation",
        "is-task",
        "label",
        "name",
        "network",
        "publish",
        "since",
        "status",
        "volume",
    }
)


@dataclass(frozen=True)
class LabelledContainer:
    """What the parser needs of a container."""

    id: str
    name: str
    labels: Mapping[str, str]
    #: Creation time (epoch seconds): the older container keeps a contested job name.
    created: float = 0.0

    @property
    def enabled(self) -> bool:
        return self.labels.get(ENABLED_LABEL) == "true"

    @property
    def is_service(self) -> bool:
        return self.labels.get(SERVICE_LABEL) == "true"


def container_from_record(record: Mapping[str, Any]) -> LabelledContainer:
    """From a container list entry (``Names``, ``Labels``, epoch ``Created``) or an
    inspect document (``Name``, ``Config.Labels``, ISO ``Created``)."""
    if "Names" in record:
        names = record.get("Names") or []
        name = str(names[0]) if names else ""
        labels = record.get("Labels") or {}
    else:
        name = str(record.get("Name") or "")
        labels = (record.get("Config") or {}).get("Labels") or {}
    return LabelledContainer(
        id=str(record.get("Id") or ""),
        name=name.lstrip("/") or str(record.get("Id") or "")[:12],
        labels={str(k): str(v) for k, v in labels.items()},
        created=_created(record.get("Created")),
    )


def _created(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value:
        # The engine writes nanoseconds; fromisoformat takes at most microseconds.
        text = value.rstrip("Z")
        head, dot, fraction = text.partition(".")
        text = f"{head}.{fraction[:6]}" if dot else head
        try:
            return datetime.fromisoformat(text + "+00:00").timestamp()
        except ValueError:
            return 0.0
    return 0.0


@dataclass
class LabelConfig:
    """Everything read from the labels of the enabled containers."""

    #: Jobs by name; each section's locations name the label, the container and the key.
    jobs: dict[str, Section] = field(default_factory=dict)
    global_: Section = field(default_factory=lambda: Section("global", None, Location("docker labels")))
    #: ``[webhook "name"]`` sections from the service container's ``ofelia.webhook.NAME.KEY`` labels.
    webhooks: dict[str, Section] = field(default_factory=dict)
    #: Findings of the parse; an error with a ``job`` means that job was left out.
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: Names of the enabled containers read, oldest first.
    containers: list[str] = field(default_factory=list)

    @property
    def rejected(self) -> list[str]:
        """Jobs left out by the parse (a dotted name, a malformed label)."""
        return sorted({d.job for d in self.diagnostics if d.level == "error" and d.job and d.job not in self.jobs})

    def fingerprint(self) -> str:
        """Changes whenever anything that reaches the daemon changes (values, where from, findings)."""
        data = {
            "jobs": {
                name: [s.kind, s.values, {k: str(v) for k, v in s.locations.items()}, str(s.location)]
                for name, s in self.jobs.items()
            },
            "global": [self.global_.values, {k: str(v) for k, v in self.global_.locations.items()}],
            "webhooks": {
                name: [s.values, {k: str(v) for k, v in s.locations.items()}] for name, s in self.webhooks.items()
            },
            "diagnostics": [str(d) for d in self.diagnostics],
        }
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()


def engine_filters(user_filters: Sequence[str]) -> dict[str, list[str]]:
    """Container-list filters: ``ofelia.enabled=true`` plus each ``--docker-filter``.

    As in Ofelia, ``name=value`` with an engine filter name (``label``,
    ``name``, ``status``, ...) is passed as that filter: ``label=a=b``,
    ``name=db``. Any other ``key=value`` is a label filter: ``team=ops`` means
    ``label=team=ops``. Raises ``ValueError`` for an item without ``=``.
    """
    filters: dict[str, list[str]] = {"label": [f"{ENABLED_LABEL}=true"]}
    for item in user_filters:
        key, sep, value = item.strip().partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"docker filter {item!r}: expected key=value, for example "
                "label=com.docker.compose.project=web, name=db or team=ops (a label)"
            )
        if key in ENGINE_FILTERS:
            filters.setdefault(key, []).append(value)
        else:
            filters["label"].append(f"{key}={value}")
    return filters


def parse_containers(
    containers: Iterable[LabelledContainer | Mapping[str, Any]],
    *,
    job_types: Collection[str] = BUILTIN_JOB_TYPES,
    list_keys: Collection[str] = DEFAULT_LIST_KEYS,
    global_keys: Collection[str] = (),
) -> LabelConfig:
    """Jobs, ``[global]`` values and findings from the labels of ``containers``.

    ``job_types`` and ``global_keys`` are the registered names (used for the
    form of a label and for warnings); ``list_keys`` take JSON arrays. Values
    are not validated here: :func:`~.merge.merge_labels` does that, per job.
    """
    items = [c if isinstance(c, LabelledContainer) else container_from_record(c) for c in containers]
    enabled = sorted((c for c in items if c.enabled), key=lambda c: (c.created, c.name))
    out = LabelConfig(containers=[c.name for c in enabled])
    owners: dict[str, str] = {}
    services = [c.name for c in enabled if c.is_service]
    if len(services) > 1:
        out.diagnostics.append(
            Diagnostic(
                "warning",
                Location(f"label {SERVICE_LABEL}=true"),
                f"is set on {len(services)} containers ({', '.join(services)}): all of them may define "
                "global keys and every job type",
            )
        )
    reader = _Reader(set(job_types), frozenset(list_keys), frozenset(global_keys), out, owners)
    for container in enabled:
        reader.read(container)
    return out


@dataclass
class _JobLabels:
    kind: str
    name: str
    entries: list[tuple[str, str, str]] = field(default_factory=list)  # (key, value, label)


class _Reader:
    """Reads one container at a time into a shared :class:`LabelConfig`."""

    def __init__(
        self,
        job_types: set[str],
        list_keys: frozenset[str],
        global_keys: frozenset[str],
        out: LabelConfig,
        owners: dict[str, str],
    ) -> None:
        self.job_types = job_types
        self.list_keys = list_keys
        self.global_keys = global_keys
        self.out = out
        self.owners = owners
        self.webhook_owners: dict[str, str] = {}

    def read(self, container: LabelledContainer) -> None:
        jobs: dict[tuple[str, str], _JobLabels] = {}
        for label in sorted(container.labels):
            if not label.startswith(PREFIX) or label in (ENABLED_LABEL, SERVICE_LABEL):
                continue
            parts = label[len(PREFIX) :].split(".")
            if len(parts) == 1:
                self._global(container, label, parts[0].lower())
                continue
            kind = parts[0].lower()
            if kind == WEBHOOK:
                self._webhook(container, label, parts)
                continue
            if kind not in self.job_types and not is_job_kind(kind):
                self._warn(
                    container,
                    label,
                    "is not an ofelia label: jobs are ofelia.<job-type>.<job-name>.<key> "
                    "and global keys ofelia.<key>; it is ignored",
                    suggestion=nearest(kind, sorted(self.job_types)),
                )
                continue
            if len(parts) < 3 or not parts[-1] or not parts[1]:
                self.out.diagnostics.append(
                    Diagnostic(
                        "error",
                        _where(label, container),
                        f"a job label reads ofelia.{kind}.<job-name>.<key>; this one is ignored",
                    )
                )
                continue
            name = ".".join(parts[1:-1])
            group = jobs.setdefault((kind, name), _JobLabels(kind, name))
            group.entries.append((parts[-1].lower(), container.labels[label], label))
        for group in jobs.values():
            self._job(container, group)

    # --- global keys ---------------------------------------------------------------

    def _global(self, container: LabelledContainer, label: str, key: str) -> None:
        where = _where(label, container)
        if not key:
            return
        if not container.is_service:
            # Other ofelia.<x> labels on app containers are often the user's own filter labels.
            if key in self.global_keys:
                self._warn(
                    container,
                    label,
                    f"global keys are read only from the scheduler's own container (labelled "
                    f"{SERVICE_LABEL}=true); it is ignored",
                    key=key,
                )
            return
        if key in BOOTSTRAP_KEYS:
            self._warn(
                container,
                label,
                "cannot be set by a label (it decides how labels are read or where state is kept): "
                "set it in the config file, on the command line or in the environment; it is ignored",
                key=key,
            )
            return
        target = self.out.global_
        if key in target.values:
            self.out.diagnostics.append(
                Diagnostic(
                    "warning",
                    where,
                    f"also set by {target.where(key)}, which is kept",
                    key=key,
                )
            )
            return
        target.set(key, container.labels[label], where, repeatable=False)

    # --- webhooks ------------------------------------------------------------------

    def _webhook(self, container: LabelledContainer, label: str, parts: list[str]) -> None:
        where = _where(label, container)
        if not container.is_service:
            self.out.diagnostics.append(
                Diagnostic(
                    "error",
                    where,
                    f"webhook labels are read only from the scheduler's own container (labelled "
                    f"{SERVICE_LABEL}=true), and container '{container.name}' is not it: a webhook decides "
                    "where job output is sent; define it there or in the config file. This label is ignored",
                )
            )
            return
        if len(parts) != 3 or not parts[1] or not parts[2]:
            self.out.diagnostics.append(
                Diagnostic(
                    "error",
                    where,
                    "a webhook label reads ofelia.webhook.<name>.<key> (the name cannot contain a dot); "
                    "this one is ignored",
                )
            )
            return
        name, key = parts[1], parts[2].lower()
        owner = self.webhook_owners.setdefault(name, container.name)
        if owner != container.name:
            self.out.diagnostics.append(
                Diagnostic(
                    "error",
                    where,
                    f"webhook '{name}' is already defined by the labels of container '{owner}' "
                    "(created earlier), which is kept; this label is ignored",
                    key=key,
                )
            )
            return
        section = self.out.webhooks.get(name)
        if section is None:
            location = Location(f"labels ofelia.webhook.{name}.* on container '{container.name}'")
            section = self.out.webhooks[name] = Section(WEBHOOK, name, location)
        section.set(key, container.labels[label], where, repeatable=False)

    # --- jobs ----------------------------------------------------------------------

    def _job(self, container: LabelledContainer, group: _JobLabels) -> None:
        kind, name = group.kind, group.name
        location = Location(f"labels ofelia.{kind}.{name}.* on container '{container.name}'")
        if "." in name:
            labels = ", ".join(label for _, _, label in group.entries)
            self._error(
                _where(group.entries[0][2], container),
                name,
                f"a job name cannot contain a dot ({labels}); the job is ignored",
            )
            return
        if kind != EXEC and not container.is_service:
            self.out.diagnostics.append(
                Diagnostic(
                    "warning",
                    location,
                    f"{kind} labels are read only from the scheduler's own container (labelled "
                    f"{SERVICE_LABEL}=true); only job-exec labels may sit on other containers; "
                    "the job is ignored",
                    job=name,
                )
            )
            return
        owner = self.owners.get(name)
        if owner is not None:
            self._error(
                location,
                name,
                f"a job with this name is already defined by the labels of container '{owner}' "
                "(created earlier), which is kept; this one is ignored",
            )
            return
        section = Section(kind, name, location)
        for key, value, label in group.entries:
            section.set(key, self._value(key, value, label, container, name), _where(label, container),
                        repeatable=False)
        if kind == EXEC:
            self._force_container(container, section)
        self.out.jobs[name] = section
        self.owners[name] = container.name

    def _force_container(self, container: LabelledContainer, section: Section) -> None:
        given = section.values.get("container")
        if container.is_service and given is not None:
            return  # the scheduler's own container may exec elsewhere, as in Ofelia
        if given is not None and given != container.name:
            self.out.diagnostics.append(
                Diagnostic(
                    "warning",
                    section.where("container"),
                    f"job-exec labels run in the container that carries them: '{container.name}' is used",
                    job=section.name,
                    key="container",
                )
            )
        origin = Location(f"container '{container.name}' (job-exec labels run in their own container)")
        section.set("container", container.name, origin, repeatable=False)

    def _value(self, key: str, value: str, label: str, container: LabelledContainer, job: str) -> Any:
        if key not in self.list_keys or not value.lstrip().startswith("["):
            return value
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            parsed = exc
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return parsed
        self.out.diagnostics.append(
            Diagnostic(
                "warning",
                _where(label, container),
                "looks like a JSON array but is not one of strings; it is used as one value",
                job=job,
                key=key,
            )
        )
        return value

    # --- findings ------------------------------------------------------------------

    def _warn(
        self,
        container: LabelledContainer,
        label: str,
        message: str,
        *,
        key: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        self.out.diagnostics.append(
            Diagnostic("warning", _where(label, container), message, key=key, suggestion=suggestion)
        )

    def _error(self, location: Location, job: str, message: str) -> None:
        self.out.diagnostics.append(Diagnostic("error", location, message, job=job))


def _where(label: str, container: LabelledContainer) -> Location:
    return Location(f"label {label} on container '{container.name}'")
