"""Building jobs of a job type defined by the tests themselves (a real plugin,
registered through ``ofelia_register_job_types``), whose runner the test steers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.errors import RunCancelled
from ofelia_hookspecs.types import JobTypeSpec, KeySpec, RunContext

from ofelia_core.config.model import Location, Section
from ofelia_core.drivers.loading import ActiveDrivers, default_context, start_drivers
from ofelia_core.drivers.selection import choose_drivers
from ofelia_core.jobs import Job, build_job
from ofelia_core.plugins import OfeliaHooks, build_plugin_manager
from ofelia_core.runs import Run


@dataclass
class SteeredRunner:
    """The runner of the ``job-steered`` type: each run writes its job name, then waits
    until the test releases it (or the run is cancelled), then exits with ``exit_code``."""

    release: threading.Event = field(default_factory=threading.Event)
    started: list[str] = field(default_factory=list)
    exit_code: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    started_event: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, job: Job, run: Run, context: RunContext) -> int:
        context.stdout.write(f"{job.name}\n".encode())
        with self.started_event:
            self.started.append(run.id)
            self.started_event.notify_all()
        while not self.release.wait(0.01):
            if context.cancel.is_set():
                raise RunCancelled("cancelled by the test")
        return self.exit_code

    def wait_started(self, count: int, timeout: float = 10) -> bool:
        with self.started_event:
            return self.started_event.wait_for(lambda: len(self.started) >= count, timeout)


class SteeredJobTypePlugin:
    def __init__(self, runner: Callable[..., int]) -> None:
        self.runner = runner

    @hookimpl
    def ofelia_register_job_types(self) -> list[JobTypeSpec]:
        return [JobTypeSpec("job-steered", (KeySpec("command"),), "steered by the test", runner=self.runner)]


def steered_hooks(runner: Callable[..., int]) -> OfeliaHooks:
    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(SteeredJobTypePlugin(runner), name="tests.steered")
    return OfeliaHooks(pm)


def baseline_drivers(hooks: OfeliaHooks) -> ActiveDrivers:
    return start_drivers(hooks.pm, choose_drivers(env={}), {}, default_context())


def make_job(hooks: OfeliaHooks, name: str, kind: str = "job-steered", **values: Any) -> Job:
    section = Section(kind, name, Location("test"))
    section.values.update({"schedule": "@manual", **{k.replace("_", "-"): v for k, v in values.items()}})
    return build_job(section, hooks.job_types()[kind], hooks.config_keys())
