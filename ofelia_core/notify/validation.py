"""What ``ofelia validate`` (and the daemon at start) says about notifiers: settings a
notifier cannot use (errors) and settings that send nothing (warnings), each once: for
``[global]``, and for each job that sets the notifier's keys itself."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs.types import NotifierContext, NotifierSpec

from ..config.model import Config, Diagnostic, Section
from .queue import scrub
from .settings import own_values, resolve, secret_values


def check_notifiers(config: Config, notifiers: Mapping[str, NotifierSpec]) -> list[Diagnostic]:
    if not notifiers:
        return []
    global_values = config.global_.values
    context = NotifierContext(
        webhooks={name: dict(section.values) for name, section in config.webhooks.items()},
        global_settings=dict(global_values),
        hostname=socket.gethostname(),
    )
    out: list[Diagnostic] = []
    for spec in notifiers.values():
        if own_values(spec, global_values):
            out += _check(spec, {}, global_values, context, config.global_, None)
        for name, section in config.jobs.items():
            own = own_values(spec, section.values)
            if own:
                out += _check(spec, own, global_values, context, section, name)
    return out


def _check(
    spec: NotifierSpec,
    own: Mapping[str, Any],
    global_values: Mapping[str, Any],
    context: NotifierContext,
    section: Section,
    job: str | None,
) -> list[Diagnostic]:
    try:
        settings = resolve(spec, own, global_values)
    except ValueError:  # a value of the wrong kind: validate_config reports it with its key
        return []
    secrets = secret_values(spec, settings)
    try:
        built = spec.build(settings, context)
    except ValueError as exc:
        return [Diagnostic("error", section.location, f"{spec.name}: {scrub(str(exc), secrets)}", job=job)]
    if job is not None and not built and not _blanked(own) and _builds(spec, global_values, context):
        # Ofelia's rule surprises: one key of the job's own drops every global one of this notifier.
        keys = ", ".join(sorted(own))
        return [Diagnostic(
            "warning", section.location,
            f"{spec.name}: the job sets {keys} itself, which replaces all of [global]'s {spec.name} settings "
            f"(Ofelia's rule); with its own alone it sends nothing. Set the other {spec.name} keys in the job too, "
            "or leave them all to [global]",
            job=job,
        )]
    if spec.check is None:
        return []
    return [
        Diagnostic("warning", section.location, f"{spec.name}: {scrub(text, secrets)}", job=job)
        for text in spec.check(settings)
    ]


def _blanked(own: Mapping[str, Any]) -> bool:
    """A key set to nothing (``email-to =``): the way to turn a notifier off for one job."""
    return any(value is None or (isinstance(value, str) and not value.strip()) for value in own.values())


def _builds(spec: NotifierSpec, global_values: Mapping[str, Any], context: NotifierContext) -> bool:
    try:
        return bool(spec.build(resolve(spec, {}, global_values), context))
    except ValueError:
        return False
