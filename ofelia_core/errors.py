"""Errors the core raises for the user to read."""

from __future__ import annotations


class OfeliaError(Exception):
    """An error with a message meant for the operator; the CLI prints it and exits non-zero."""


class DriverSelectionError(OfeliaError):
    """A flag, name override or ``drivers`` entry that cannot be honoured."""


class PluginError(OfeliaError):
    """A plugin that breaks the rules (a general plugin implementing a factory hook, a misspelled hook)."""


class RunError(Exception):
    """Raised by a job type's runner: the run failed before or without an exit code.
    The message is recorded as the run's error text."""


class RunTimedOut(RunError):
    """The run exceeded its ``max-runtime`` and was stopped."""


class RunCancelled(RunError):
    """The run was stopped because the daemon is shutting down."""
