"""Hook specifications, driver Protocols and contract tests for ofelia plugins.

A plugin imports from here and never from ``ofelia_core``::

    from ofelia_hookspecs import hookimpl

    @hookimpl
    def ofelia_make_buffer_pool(settings, context):
        return MyPool(settings)

Submodules (``errors``, ``protocols``, ``settings``, ``specs``, ``types``,
``contract``) are imported on first use, so a command that needs only the
markers starts fast.
"""

from __future__ import annotations

from .markers import PROJECT_NAME, hookimpl, hookspec

__version__ = "0.1.0"

__all__ = ["PROJECT_NAME", "__version__", "hookimpl", "hookspec"]
