"""Everything a command needs to run jobs: config, plugins, drivers, history, executor.

Shared by ``ofelia daemon`` and ``ofelia run``; commands that only read
config (``validate``, ``schedule``) use :func:`load_and_validate` alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config.model import Config, Diagnostic
from .errors import OfeliaError
from .plugins import OfeliaHooks


@dataclass
class LoadedConfig:
    config: Config
    diagnostics: list[Diagnostic]
    hooks: OfeliaHooks

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.level == "error"]


def global_strict(config: Config) -> bool:
    """``strict = true`` in [global] (a bad value is reported by validation)."""
    from .config.values import to_bool

    try:
        return to_bool(config.global_.values.get("strict", False))
    except ValueError:
        return False


def load_and_validate(
    config_path: str | None, env: Mapping[str, str], *, strict: bool = False, hooks: OfeliaHooks | None = None
) -> LoadedConfig:
    """Read the config files and validate them against the registered job types and keys."""
    from .config.loader import config_paths, load_config
    from .config.validate import validate_config
    from .notify.validation import check_notifiers
    from .plugins import build_plugin_manager, disabled_plugins

    hooks = hooks or OfeliaHooks(build_plugin_manager(disabled=disabled_plugins(env)))
    config, diagnostics = load_config(config_paths(config_path, env), env=env)
    strict = strict or global_strict(config)
    diagnostics += validate_config(config, hooks.job_types(), hooks.config_keys(), strict=strict)
    diagnostics += check_notifiers(config, hooks.notifiers())
    return LoadedConfig(config, diagnostics, hooks)


def require_valid(loaded: LoadedConfig) -> None:
    if loaded.errors:
        details = "\n".join(str(d) for d in loaded.errors)
        raise OfeliaError(f"the config is invalid:\n{details}")


def secret_keys(hooks: OfeliaHooks) -> frozenset[str]:
    """Every key marked secret by a job type or a plugin, to keep out of logs and files."""
    names = {key.name for spec in hooks.job_types().values() for key in spec.keys if key.secret}
    names |= {key.name for batch in hooks.config_keys() for key in batch.keys if key.secret}
    return frozenset(names)


class Runtime:
    """Drivers, history, executor and jobs built from a valid config. Close it when done."""

    def __init__(
        self,
        loaded: LoadedConfig,
        *,
        env: Mapping[str, str] | None = None,
        cli_drivers: Mapping[str, str] | None = None,
        history_file: Path | None = None,
    ) -> None:
        from .drivers.loading import default_context, start_drivers
        from .drivers.selection import choose_drivers
        from .execution.executor import RunExecutor
        from .history import HistoryStore, default_state_dir, history_path
        from .jobs import build_jobs
        from .metrics_runs import register_run_metrics

        require_valid(loaded)
        env = os.environ if env is None else env
        self.loaded = loaded
        self.hooks = loaded.hooks
        config = loaded.config
        self.choices = choose_drivers(cli=cli_drivers, env=env, file_drivers=config.drivers)
        settings = {key: config.concern_settings(key) for key in self.choices}
        self.history_file = history_file or history_path(config.global_.values, env)
        state_dir = config.global_.values.get("state-dir")
        self.state_dir = Path(str(state_dir)) if state_dir else default_state_dir(env)
        self.drivers = start_drivers(
            self.hooks.pm, self.choices, settings, default_context(config.global_.values, self.state_dir)
        )
        self.history = HistoryStore(self.history_file)
        self.secret_keys = secret_keys(self.hooks)
        from .notify.service import Notifications

        # Deliveries go through one worker thread, started here and drained by close().
        self.notifications = Notifications(self.hooks, self.history, self.secret_keys)
        self.notifications.start()
        self.executor = RunExecutor(self.hooks, drivers=self.drivers, history=self.history)
        # Runs in progress for the metrics driver (nothing is registered with the noop one).
        self.run_metrics = register_run_metrics(self.hooks.pm, self.drivers)
        self.jobs = build_jobs(config, self.hooks.job_types(), self.hooks.config_keys())
        self._register_middlewares()

    def apply(self, loaded: LoadedConfig, jobs: Mapping[str, Any]) -> None:
        """Take a reloaded config: new jobs, and middlewares rebuilt with the new [global]."""
        self.loaded = loaded
        self.jobs = dict(jobs)
        self._register_middlewares()

    def _register_middlewares(self) -> None:
        from .middlewares.save import SaveMiddleware

        old = self.hooks.pm.get_plugin(SaveMiddleware.PLUGIN_NAME)
        if old is not None:
            self.hooks.pm.unregister(old)
        save = SaveMiddleware(self.loaded.config.global_.values, self.secret_keys)
        self.hooks.pm.register(save, name=SaveMiddleware.PLUGIN_NAME)
        # Each job's notifiers are built here, once per config, never per run.
        self.notifications.configure(self.loaded.config, self.jobs)
        if self.hooks.pm.get_plugin(self.notifications.PLUGIN_NAME) is not self.notifications:
            old_observer = self.hooks.pm.get_plugin(self.notifications.PLUGIN_NAME)
            if old_observer is not None:  # another Runtime's, on the same plugin manager
                self.hooks.pm.unregister(old_observer)
            self.hooks.pm.register(self.notifications, name=self.notifications.PLUGIN_NAME)

    @property
    def global_values(self) -> dict[str, Any]:
        return dict(self.loaded.config.global_.values)

    def close(self) -> None:
        # Notifications first: the worker drains into the history, which must still be open.
        self.notifications.close()
        if self.hooks.pm.get_plugin(self.notifications.PLUGIN_NAME) is self.notifications:
            self.hooks.pm.unregister(self.notifications)
        self.history.close()
        self.drivers.close()
