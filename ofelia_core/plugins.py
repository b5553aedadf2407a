"""Building the plugin manager, and a typed facade over its hooks.

Nothing happens at import time: the manager is built by a function, so
tests and commands choose what gets loaded.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import pluggy
from ofelia_hookspecs import PROJECT_NAME, specs
from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec, JobView, MetricSample, NotifierSpec, RunView

from .errors import PluginError

#: The core's own general plugins, registered exactly as a third-party one is.
DEFAULT_PLUGINS: tuple[str, ...] = ("ofelia_core.jobtypes",)

#: Drivers are registered under ``<namespace>:<name>``, and every namespace starts with this.
DRIVER_PLUGIN_PREFIX = f"{PROJECT_NAME}."

#: Entry-point group of general plugins (middlewares, notifiers, job types, ...).
ENTRY_POINT_GROUP = PROJECT_NAME


def disabled_plugins(env: Mapping[str, str]) -> list[str]:
    """Names listed in ``OFELIA_DISABLED_PLUGINS`` (comma or space separated)."""
    raw = env.get("OFELIA_DISABLED_PLUGINS", "")
    return [name for name in raw.replace(",", " ").split() if name]


def build_plugin_manager(
    *, disabled: Iterable[str] = (), load_entrypoints: bool = True
) -> pluggy.PluginManager:
    """A plugin manager with the hookspecs, the default plugins and installed general plugins.

    Blocked names are set before any entry point loads, so a blocked plugin is never imported.
    Without entry points (``load_entrypoints=False``, as many tests build it) there are no
    notifiers: the core's mail, Slack and webhook notifiers are entry points too.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(specs)
    for name in disabled:
        pm.set_blocked(name)
    for module_name in DEFAULT_PLUGINS:
        if not pm.is_blocked(module_name):
            pm.register(importlib.import_module(module_name), name=module_name)
    if load_entrypoints:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    check_hooks(pm)
    return pm


def check_hooks(pm: pluggy.PluginManager) -> None:
    """Refuse a plugin that implements a hook no spec declares (a misspelling, usually)."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        known = sorted(name for name in dir(pm.hook) if name.startswith("ofelia_"))
        raise PluginError(f"{exc}. Known hooks: {', '.join(known)}") from exc


def general_plugins(pm: pluggy.PluginManager) -> dict[str, tuple[str, str]]:
    """Registered general plugins (not drivers) -> (distribution, version)."""
    from . import __version__

    from_entry_points = {plugin: (dist.project_name, dist.version) for plugin, dist in pm.list_plugin_distinfo()}
    found: dict[str, tuple[str, str]] = {}
    for name, plugin in pm.list_name_plugin():
        if plugin is None or name.startswith(DRIVER_PLUGIN_PREFIX):
            continue
        found[name] = from_entry_points.get(plugin, ("ofelia", __version__))
    return dict(sorted(found.items()))


class OfeliaHooks:
    """Typed calls into ``pm.hook``; the rest of the core uses this, not ``pm.hook`` directly."""

    def __init__(self, pm: pluggy.PluginManager) -> None:
        self.pm = pm

    def job_types(self) -> dict[str, JobTypeSpec]:
        """Every registered job type by name; two plugins declaring one name is an error."""
        found: dict[str, JobTypeSpec] = {}
        for impl in reversed(self.pm.hook.ofelia_register_job_types.get_hookimpls()):
            declared = cast("list[JobTypeSpec]", impl.function() or [])
            for spec in declared:
                if spec.name in found:
                    raise PluginError(
                        f"job type '{spec.name}' is declared twice (again by plugin '{impl.plugin_name}')"
                    )
                found[spec.name] = spec
        return found

    def notifiers(self) -> dict[str, NotifierSpec]:
        """Every registered notifier by name; two plugins declaring one name is an error."""
        found: dict[str, NotifierSpec] = {}
        for impl in reversed(self.pm.hook.ofelia_register_notifiers.get_hookimpls()):
            for spec in cast("list[NotifierSpec]", impl.function() or []):
                if spec.name in found:
                    raise PluginError(
                        f"notifier '{spec.name}' is declared twice (again by plugin '{impl.plugin_name}')"
                    )
                found[spec.name] = spec
        return found

    def config_keys(self) -> list[ConfigKeys]:
        """Keys plugins add, then the notification keys (notifiers' keys in ``[global]`` and every
        job; last, so a notifier's own spec of a key wins over an older declaration of it)."""
        from .notify.keys import notification_keys

        declared = [keys for batch in self.pm.hook.ofelia_add_config_keys() for keys in batch or ()]
        return declared + notification_keys(self.notifiers())

    def collect_metrics(self) -> list[MetricSample]:
        return [sample for batch in self.pm.hook.ofelia_collect_metrics() for sample in batch or ()]

    def execute_run(self, job: JobView, run: RunView) -> Any:
        return self.pm.hook.ofelia_execute_run(job=job, run=run)

    def observe_run_start(self, job: JobView, run: RunView) -> None:
        self._call_each("ofelia_observe_run_start", job=job, run=run)

    def observe_run_end(self, job: JobView, run: RunView) -> None:
        self._call_each("ofelia_observe_run_end", job=job, run=run)

    def _call_each(self, hook_name: str, **kwargs: Any) -> None:
        """Call every implementation on its own, so one failing plugin neither stops the
        others nor changes the run; the failure is logged with the plugin's name."""
        from loguru import logger

        for impl in reversed(getattr(self.pm.hook, hook_name).get_hookimpls()):
            if impl.wrapper or impl.hookwrapper:  # nothing to wrap in an observation
                continue
            try:
                impl.function(*(kwargs[name] for name in impl.argnames))
            except Exception as exc:  # a plugin's bug must not fail the run
                logger.opt(exception=exc).error(f"plugin '{impl.plugin_name}' failed in {hook_name}: {exc}")

    def plugin_names(self) -> Sequence[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin())
