import re
from pathlib import Path

from ofelia_hookspecs.types import KeySpec

from ofelia_core.config.keydocs import key_table, reference_tables, update_markdown

PAGE = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_key_tables_are_current() -> None:
    text = PAGE.read_text(encoding="utf-8")
    assert update_markdown(text, reference_tables()) == text, (
        "docs/configuration.md is stale: run python -m ofelia_core.config.keydocs docs/configuration.md"
    )


def test_every_table_has_a_block() -> None:
    blocks = set(re.findall(r"<!-- BEGIN keys:([\w-]+) -->", PAGE.read_text(encoding="utf-8")))
    assert blocks == set(reference_tables())


def test_table_rendering() -> None:
    table = key_table([KeySpec("a", "bool", True, True, "Does A."), KeySpec("b", secret=True)])
    assert "| `a` | boolean, **required** | `true` | Does A. |" in table
    assert "| `b` | text, secret |  |  |" in table


def test_update_replaces_only_known_blocks() -> None:
    text = (
        "x\n<!-- BEGIN keys:one -->\nold\n<!-- END keys:one -->\n<!-- BEGIN keys:two -->\nkeep\n<!-- END keys:two -->\n"
    )
    updated = update_markdown(text, {"one": "new\n"})
    assert "new\n<!-- END keys:one -->" in updated
    assert "keep" in updated and "old" not in updated
