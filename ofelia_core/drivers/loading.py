"""Load exactly the chosen drivers (stevedore), build them (pluggy), wrap them.

stevedore imports only the chosen entry point, so an unchosen driver's
module is never imported. The loaded object is registered with pluggy and
answers its concern's ``firstresult`` factory hook.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

import pluggy
from ofelia_hookspecs.protocols import BufferPool, DockerClient, MetricsRecorder, TokenManager
from ofelia_hookspecs.types import DriverContext

from ..errors import DriverSelectionError, PluginError
from .selection import Choice, check_installed_driver
from .table import BY_KEY, CONCERNS, Concern

PROTOCOLS: dict[str, type] = {
    "docker-client": DockerClient,
    "token-manager": TokenManager,
    "buffer-pool": BufferPool,
    "metrics": MetricsRecorder,
}


def driver_distribution(concern: Concern, name: str) -> tuple[str, str]:
    """The distribution name and version that provide a driver, read without importing it."""
    for ep in entry_points(group=concern.namespace, name=name):
        if ep.dist is not None:
            return ep.dist.name, ep.dist.version
    return "?", "?"


def plugin_name(choice: Choice) -> str:
    return f"{choice.concern.namespace}:{choice.name}"


def load_driver_plugin(choice: Choice) -> object:
    """Import the chosen driver's entry point, and only that one."""
    from stevedore import driver as stevedore_driver
    from stevedore.exception import NoMatches

    check_installed_driver(choice)
    failures: list[str] = []

    def on_failure(_manager: Any, entrypoint: Any, exc: BaseException) -> None:
        failures.append(f"{entrypoint.value}: {type(exc).__name__}: {exc}")

    try:
        manager = stevedore_driver.DriverManager(
            namespace=choice.concern.namespace,
            name=choice.name,
            invoke_on_load=False,
            on_load_failure_callback=on_failure,
        )
    except NoMatches as exc:
        detail = "; ".join(failures) or str(exc)
        raise DriverSelectionError(
            f"{choice.concern.title} driver '{choice.name}' (chosen by {choice.source}) failed to load: {detail}"
        ) from exc
    return manager.driver


def register_drivers(pm: pluggy.PluginManager, choices: Mapping[str, Choice]) -> dict[str, object]:
    """Load and register each chosen driver; return the plugin objects by concern key."""
    loaded: dict[str, object] = {}
    for key, choice in choices.items():
        plugin = load_driver_plugin(choice)
        if not pm.is_registered(plugin):
            pm.register(plugin, name=plugin_name(choice))
        loaded[key] = plugin
    refuse_foreign_factories(pm, loaded)
    return loaded


def refuse_foreign_factories(pm: pluggy.PluginManager, loaded: Mapping[str, object]) -> None:
    """Only the chosen driver may answer a concern's factory hook, so the flag always decides."""
    for concern in CONCERNS:
        allowed = loaded.get(concern.key)
        for impl in getattr(pm.hook, concern.factory_hook).get_hookimpls():
            if impl.plugin is allowed:
                continue
            raise PluginError(
                f"plugin '{impl.plugin_name}' implements {concern.factory_hook}, the {concern.title} "
                f"driver factory, but is not the chosen {concern.title} driver. Drivers are chosen by "
                f"{concern.override}, {concern.flag} or [drivers] {concern.key}; publish the driver "
                f"under the entry-point group '{concern.namespace}' instead of 'ofelia', or block the "
                f"plugin with OFELIA_DISABLED_PLUGINS={impl.plugin_name}."
            )


def build_driver(
    pm: pluggy.PluginManager, concern_key: str, settings: Mapping[str, Any], context: DriverContext
) -> Any:
    """Call the concern's factory hook and check the result satisfies the Protocol."""
    concern = BY_KEY[concern_key]
    factory = getattr(pm.hook, concern.factory_hook)
    driver = factory(settings=dict(settings), context=context)
    protocol = PROTOCOLS[concern_key]
    if driver is None:
        raise PluginError(f"no {concern.title} driver answered {concern.factory_hook}")
    if not isinstance(driver, protocol):
        raise PluginError(
            f"{concern.title} driver {type(driver).__qualname__} does not satisfy the "
            f"{protocol.__name__} protocol (ofelia_hookspecs.protocols)"
        )
    return driver


@dataclass
class ActiveDrivers:
    """The running drivers, each wrapped by the core's instrumentation layer."""

    choices: dict[str, Choice]
    metrics: MetricsRecorder
    docker_client: DockerClient
    token_manager: TokenManager
    buffer_pool: BufferPool

    def by_concern(self) -> dict[str, Any]:
        return {
            "docker-client": self.docker_client,
            "token-manager": self.token_manager,
            "buffer-pool": self.buffer_pool,
            "metrics": self.metrics,
        }

    def close(self) -> None:
        for driver in self.by_concern().values():
            driver.close()


def default_context(global_settings: Mapping[str, Any] | None = None, state_dir: Any = None) -> DriverContext:
    return DriverContext(clock=time.monotonic, state_dir=state_dir, global_settings=dict(global_settings or {}))


def start_drivers(
    pm: pluggy.PluginManager,
    choices: Mapping[str, Choice],
    settings: Mapping[str, Mapping[str, Any]],
    context: DriverContext,
) -> ActiveDrivers:
    """Load, register, build and instrument the four drivers. Built once; hot paths keep the objects."""
    from loguru import logger

    from .instrumentation import instrument

    register_drivers(pm, choices)
    for key, choice in choices.items():
        distribution, version = driver_distribution(choice.concern, choice.name)
        logger.info(f"driver {key}: {choice.name} ({distribution} {version}), chosen by {choice.source}")
    metrics = build_driver(pm, "metrics", settings.get("metrics", {}), context)
    built = {
        key: instrument(key, build_driver(pm, key, settings.get(key, {}), context), metrics)
        for key in ("docker-client", "token-manager", "buffer-pool")
    }
    return ActiveDrivers(
        choices=dict(choices),
        metrics=metrics,
        docker_client=built["docker-client"],
        token_manager=built["token-manager"],
        buffer_pool=built["buffer-pool"],
    )
