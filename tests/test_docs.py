"""The docs stay in step with the code: every hook documented under its exact
signature, and the flags table matching the driver table."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from ofelia_hookspecs import specs

from ofelia_core.drivers.table import CONCERNS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def hook_names() -> list[str]:
    return sorted(name for name in dir(specs) if name.startswith("ofelia_"))


def exact_signature(name: str) -> str:
    signature = inspect.signature(getattr(specs, name))
    return f"{name}{signature}".replace("'", "")


@pytest.mark.parametrize("name", hook_names())
def test_every_hook_has_a_section_headed_by_its_signature(name: str) -> None:
    text = (DOCS / "plugin-authors.md").read_text()
    assert f"#### `{exact_signature(name)}`" in text


def test_no_documented_hook_is_missing_from_the_specs() -> None:
    text = (DOCS / "plugin-authors.md").read_text()
    documented = set(re.findall(r"^#### `(ofelia_\w+)\(", text, flags=re.MULTILINE))
    assert documented == set(hook_names())


@pytest.mark.parametrize("name", hook_names())
def test_every_hookspec_has_a_docstring_saying_whether_it_stops(name: str) -> None:
    doc = inspect.getdoc(getattr(specs, name)) or ""
    assert ("Stops at the first" in doc) or ("Every implementation is called" in doc)


@pytest.mark.parametrize("concern", CONCERNS, ids=lambda c: c.key)
def test_flags_page_lists_each_concern_exactly(concern: object) -> None:
    text = (DOCS / "feature-flags.md").read_text()
    c = concern
    row = (f"| {c.title} | `{c.namespace}` | `{c.baseline}` | `{c.optimized}` (`{c.optimized_distribution}`) "  # type: ignore[attr-defined]
           f"| `{c.flag}` | `{c.override}` |")  # type: ignore[attr-defined]
    assert row in text
