"""``${VAR}`` and ``${VAR:-default}`` substitution in configuration values.

- ``${NAME}`` becomes the variable's value; an undefined variable becomes the
  empty string and is reported (the caller turns it into a warning naming
  the file, line and variable), as Ofelia's fork does.
- ``${NAME:-default}`` becomes the value, or ``default`` when the variable is
  undefined or empty (shell semantics). The default is literal text up to the
  first ``}``; it is not substituted again (no nesting).
- ``$${`` is an escape for a literal ``${`` (for a ``${x}`` meant for the
  job's own shell).
- Nothing else is touched: ``$HOME``, ``$$``, ``$(cmd)`` and ``${1}`` stay as
  written, so shell commands keep working.

``NAME`` is a letter or underscore followed by letters, digits or underscores.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .model import Diagnostic, Location

_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(:-[^}]*)?\}")


def substitute(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Return ``text`` with variables replaced, and the undefined names used without a default."""
    if "${" not in text:
        return text, []
    missing: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name is None:  # the $${ escape
            return "${"
        value = env.get(name)
        if default is not None:
            return value if value else default[2:]
        if value is None:
            missing.append(name)
            return ""
        return value

    return _PATTERN.sub(replace, text), missing


def substitute_reported(
    text: str,
    env: Mapping[str, str],
    location: Location,
    diagnostics: list[Diagnostic],
    *,
    job: str | None = None,
    key: str | None = None,
) -> str:
    """:func:`substitute`, adding a warning for each undefined variable."""
    result, missing = substitute(text, env)
    for name in missing:
        diagnostics.append(
            Diagnostic(
                "warning",
                location,
                f"environment variable '{name}' is not set; '${{{name}}}' became an empty string "
                f"(write '${{{name}:-default}}' to give a default)",
                job=job,
                key=key,
            )
        )
    return result
