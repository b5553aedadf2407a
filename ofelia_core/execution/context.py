"""What a job type's runner gets besides the job and the run."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from ofelia_hookspecs.protocols import OutputBuffer


@dataclass
class RunContext:
    """Handed to ``JobTypeSpec.runner(job, run, context) -> int`` (the exit code).

    The runner writes output into ``stdout``/``stderr`` (buffers from the pool
    driver, capped, newest bytes kept); the executor copies them into the run
    and returns them to the pool. A runner raises
    :class:`~ofelia_core.errors.RunTimedOut` after stopping a run that passed
    ``max_runtime``, :class:`~ofelia_core.errors.RunCancelled` after stopping
    one because ``cancel`` was set (shutdown), and
    :class:`~ofelia_core.errors.RunError` when the run could not start.
    """

    stdout: OutputBuffer
    stderr: OutputBuffer
    #: Seconds the run may take; None for no limit.
    max_runtime: float | None = None
    #: Set when the daemon gives up waiting at shutdown: stop the run now.
    cancel: threading.Event = field(default_factory=threading.Event)
    #: The active drivers (``ActiveDrivers``); None where a runner needs none.
    drivers: Any = None
