"""The keys notifications add to validation: the core's two ``[global]`` keys, and each
notifier's keys, accepted in ``[global]`` and in every job section."""

from __future__ import annotations

from collections.abc import Mapping

from ofelia_hookspecs.types import ConfigKeys, KeySpec, NotifierSpec

#: Defaults of the core's notification keys.
DEFAULT_QUEUE_SIZE = 1000
DEFAULT_COOLDOWN = "0"
DEFAULT_QUIET = "20ms"

NOTIFY_GLOBAL_KEYS: tuple[KeySpec, ...] = (
    KeySpec(
        "notify-queue-size", "int", DEFAULT_QUEUE_SIZE,
        description="Notifications waiting for the delivery worker; when full, new ones are dropped "
        "(logged and recorded).",
    ),
    KeySpec(
        "notify-cooldown", "duration", DEFAULT_COOLDOWN,
        description="Per job and notifier, at most one notification in this time (Go duration); the next "
        "one sent says how many were suppressed. 0 sends every run's, as Ofelia.",
    ),
    KeySpec(
        "notify-quiet", "duration", DEFAULT_QUIET,
        description="Deliveries wait until no run has started or ended for this long, so a burst of runs "
        "goes first (never more than 1s later); 0 sends at once.",
    ),
    KeySpec(
        "notify-process", "bool", True,
        description="Send notifications from a separate process, so their CPU is not taken from runs; "
        "false sends them from a thread of the daemon (one process fewer).",
    ),
)


def notification_keys(notifiers: Mapping[str, NotifierSpec]) -> list[ConfigKeys]:
    """Config keys for validation, key tables and redaction (``secret`` keys)."""
    batches = [ConfigKeys("global", NOTIFY_GLOBAL_KEYS)]
    for spec in notifiers.values():
        batches += [ConfigKeys("global", spec.keys), ConfigKeys("job", spec.keys)]
    return batches
