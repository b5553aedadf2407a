"""The tiered output buffer pool: ofelia's ``tiered`` driver of ``ofelia.buffer_pool``.

Selected with ``OFELIA_USE_ENHANCED_BUFFER_POOL=true`` (or
``OFELIA_BUFFER_POOL=tiered``, or ``[drivers] buffer-pool = tiered``); rolled
back by unsetting the flag, which brings the core's ``baseline`` pool back.

Buffers come in size tiers (1 KiB, 256 KiB, 2.5 MiB, 5 MiB, 10 MiB by
default) and are reused across runs; a run starts at the tier its job's
recent runs needed; idle buffers are bounded by ``max-held``; pre-warming is
optional and off by default. Settings, section ``[buffer-pool]``: see
:mod:`ofelia_buffers_tiered.settings` and this distribution's README.

Like any plugin, this package imports ``ofelia_hookspecs`` only, never ``ofelia_core``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext

from .pool import Slab, TieredBuffer, TieredBufferPool
from .settings import ENV_OVERRIDES, KEYS, SECTION, TieredSettings, parse_settings

__version__ = "0.1.0"


def build_pool(settings: Mapping[str, Any], env: Mapping[str, str] | None = None) -> TieredBufferPool:
    """The pool the factory hook builds, with the environment given explicitly (for tests)."""
    return TieredBufferPool(parse_settings(settings, env))


@hookimpl
def ofelia_make_buffer_pool(settings: Mapping[str, Any], context: DriverContext) -> TieredBufferPool:
    """Build the tiered buffer pool from the ``[buffer-pool]`` section and the
    ``OFELIA_BUFFER_POOL_*`` environment overrides."""
    return build_pool(settings, os.environ)


__all__ = [
    "ENV_OVERRIDES",
    "KEYS",
    "SECTION",
    "Slab",
    "TieredBuffer",
    "TieredBufferPool",
    "TieredSettings",
    "__version__",
    "build_pool",
    "ofelia_make_buffer_pool",
    "parse_settings",
]
