"""Log set-up: loguru to stderr, human-readable or JSON lines."""

from __future__ import annotations

import sys

LEVELS = ("trace", "debug", "info", "success", "warning", "error", "critical")

#: The level configure_logging set last (the notification process forwards from it up).
current_level = "INFO"


def configure_logging(level: str = "info", *, json: bool = False) -> None:
    """Replace loguru's default sink with one at ``level``; ``json`` writes one JSON object a line."""
    from loguru import logger

    global current_level
    current_level = level.upper()
    logger.remove()
    if json:
        logger.add(sys.stderr, level=level.upper(), serialize=True)
    else:
        logger.add(
            sys.stderr,
            level=level.upper(),
            format="<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> {message}",
        )
