"""Markdown key tables rendered from the KeySpecs, so the docs cannot drift from the code.

``docs/configuration.md`` holds blocks between ``<!-- BEGIN keys:NAME -->`` and
``<!-- END keys:NAME -->``; :func:`update_markdown` rewrites them. Run
``python -m ofelia_core.config.keydocs docs/configuration.md`` after changing
a key; a test fails while the page is stale.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any

from ofelia_hookspecs.types import KeySpec

_KIND_NAMES = {
    "str": "text",
    "bool": "boolean",
    "int": "integer",
    "duration": "duration",
    "list": "list",
    "schedule": "schedule",
}
_BLOCK = re.compile(r"(<!-- BEGIN keys:([\w-]+) -->\n).*?(<!-- END keys:\2 -->)", re.DOTALL)


def key_table(specs: Iterable[KeySpec]) -> str:
    """A Markdown table: key, kind, default, meaning."""
    rows = ["| key | kind | default | meaning |", "|---|---|---|---|"]
    for spec in specs:
        kind = _KIND_NAMES.get(spec.kind, spec.kind)
        if spec.required:
            kind += ", **required**"
        if spec.secret:
            kind += ", secret"
        rows.append(f"| `{spec.name}` | {kind} | {_default(spec.default)} | {spec.description} |")
    return "\n".join(rows) + "\n"


def reference_tables() -> dict[str, str]:
    """Every table the configuration page shows, by block name."""
    from ofelia_core import jobtypes

    from ..notify.keys import NOTIFY_GLOBAL_KEYS
    from .validate import WEBHOOK_KEYS

    tables = {spec.name: key_table(spec.keys) for spec in jobtypes.JOB_TYPES}
    tables["job"] = key_table(jobtypes.JOB_KEYS)
    tables["global"] = key_table(jobtypes.GLOBAL_KEYS)
    tables["webhook"] = key_table(WEBHOOK_KEYS)
    tables["notify"] = key_table(NOTIFY_GLOBAL_KEYS)
    return tables


def update_markdown(text: str, tables: Mapping[str, str]) -> str:
    """``text`` with each marked block replaced by its table (unknown names left alone)."""

    def replace(match: re.Match[str]) -> str:
        table = tables.get(match.group(2))
        return match.group(0) if table is None else match.group(1) + table + match.group(3)

    return _BLOCK.sub(replace, text)


def _default(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    return f"`{value}`"


def main(argv: list[str]) -> int:
    for path in argv:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(update_markdown(text, reference_tables()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
