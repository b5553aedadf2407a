"""Errors the core raises for the user to read.

The errors a job type's runner raises (``RunError``, ``RunTimedOut``,
``RunCancelled``) are part of the plugin contract: :mod:`ofelia_hookspecs.errors`.
"""

from __future__ import annotations


class OfeliaError(Exception):
    """An error with a message meant for the operator; the CLI prints it and exits non-zero."""


class DriverSelectionError(OfeliaError):
    """A flag, name override or ``drivers`` entry that cannot be honoured."""


class PluginError(OfeliaError):
    """A plugin that breaks the rules (a general plugin implementing a factory hook, a misspelled hook)."""

