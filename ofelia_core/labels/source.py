"""How the daemon turns on label reading: settings from the command line and
``[global]``, and a :class:`~.watch.LabelWatcher` wired to the registered
job types and keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ofelia_hookspecs.protocols import DockerClient

from ..config.validate import global_keys, job_keys
from ..config.values import to_bool, to_duration, to_int, to_list
from ..errors import OfeliaError
from ..plugins import OfeliaHooks
from .parse import LabelConfig, engine_filters, parse_containers
from .watch import LabelWatcher, OnChange

#: The [global] keys read here; a reload that changes them warns that a restart is needed.
SETTING_KEYS = ("docker", "docker-filter", "docker-poll-interval", "docker-startup-retries", "docker-startup-interval")


@dataclass(frozen=True)
class LabelSettings:
    enabled: bool
    filters: tuple[str, ...] = ()
    poll_interval: float = 10.0
    startup_retries: int = 10
    startup_interval: float = 2.0

    @classmethod
    def from_config(
        cls, values: Mapping[str, Any], *, cli_docker: bool = False, cli_filters: Sequence[str] = ()
    ) -> LabelSettings:
        """``--docker`` or ``docker = true`` turns labels on; ``--docker-filter`` replaces ``docker-filter``."""

        def get(key: str, default: Any, convert: Any) -> Any:
            raw = values.get(key)
            return default if raw is None or raw == "" else convert(raw)

        filters = tuple(cli_filters) or tuple(to_list(values.get("docker-filter") or []))
        return cls(
            enabled=cli_docker or get("docker", False, to_bool),
            filters=tuple(f for f in filters if f.strip()),
            poll_interval=get("docker-poll-interval", 10.0, to_duration),
            startup_retries=get("docker-startup-retries", 10, to_int),
            startup_interval=get("docker-startup-interval", 2.0, to_duration),
        )


def label_parser(hooks: OfeliaHooks) -> Any:
    """``records -> LabelConfig`` with the registered job types, list keys and global keys."""
    types = hooks.job_types()
    extra = hooks.config_keys()
    list_keys = frozenset(
        key.name for spec in types.values() for key in job_keys(spec, extra).values() if key.kind == "list"
    )
    known_globals = frozenset(global_keys(extra))

    def parse(records: list[dict[str, Any]]) -> LabelConfig:
        return parse_containers(records, job_types=types, list_keys=list_keys, global_keys=known_globals)

    return parse


def build_watcher(
    client: DockerClient, hooks: OfeliaHooks, settings: LabelSettings, on_change: OnChange
) -> LabelWatcher:
    try:
        filters = engine_filters(settings.filters)
    except ValueError as exc:
        raise OfeliaError(str(exc)) from None
    return LabelWatcher(
        client,
        label_parser(hooks),
        on_change,
        filters=filters,
        poll_interval=settings.poll_interval,
        startup_retries=settings.startup_retries,
        startup_interval=settings.startup_interval,
    )
