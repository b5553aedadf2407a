"""The one marker pair for the ``ofelia`` project.

Plugins decorate their hook implementations with :data:`hookimpl`; the core's
specifications use :data:`hookspec`. Both carry the project name ``ofelia``.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "ofelia"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
