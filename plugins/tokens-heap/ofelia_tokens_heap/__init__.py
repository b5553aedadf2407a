"""The heap token manager: ofelia's ``heap`` driver of ``ofelia.token_manager``.

Selected with ``OFELIA_USE_OPTIMIZED_TOKEN_MANAGER=true`` (or
``OFELIA_TOKEN_MANAGER=heap``, or ``[drivers] token-manager = heap``); rolled
back by unsetting the flag, which brings the core's ``baseline`` dict back.

Web tokens live in an LRU-ordered dict with a min-heap by expiry beside it;
one background worker removes expired tokens in batches (100 a pass, every
5 minutes by default); past the cap (10,000) the least recently *used* token
is evicted. Issue and revoke are O(log n), validate O(1). Settings, section
``[token-manager]``: see :mod:`ofelia_tokens_heap.settings` and this
distribution's README.

Like any plugin, this package imports ``ofelia_hookspecs`` only, never ``ofelia_core``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import DriverContext

from .manager import COMPACT_SLACK, TOKEN_BYTES, WORKER_NAME, HeapTokenManager
from .settings import ENV_OVERRIDES, KEYS, SECTION, HeapSettings, parse_settings

__version__ = "0.1.0"


def build_manager(
    settings: Mapping[str, Any], clock: Callable[[], float], env: Mapping[str, str] | None = None
) -> HeapTokenManager:
    """The manager the factory hook builds, with the environment given explicitly (for tests)."""
    return HeapTokenManager(parse_settings(settings, env), clock=clock)


@hookimpl
def ofelia_make_token_manager(settings: Mapping[str, Any], context: DriverContext) -> HeapTokenManager:
    """Build the heap token manager from the ``[token-manager]`` section and the
    ``OFELIA_TOKEN_MANAGER_*`` environment overrides. Nothing starts here: the
    clean-up worker starts with the first token issued."""
    return build_manager(settings, context.clock, os.environ)


__all__ = [
    "COMPACT_SLACK",
    "ENV_OVERRIDES",
    "KEYS",
    "SECTION",
    "TOKEN_BYTES",
    "WORKER_NAME",
    "HeapSettings",
    "HeapTokenManager",
    "__version__",
    "build_manager",
    "ofelia_make_token_manager",
    "parse_settings",
]
