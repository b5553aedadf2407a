"""docs/notifications.md keeps its key tables in step with the code."""

from __future__ import annotations

from pathlib import Path

from ofelia_core.config.keydocs import key_table, update_markdown
from ofelia_core.notifiers.mail import MAIL_KEYS
from ofelia_core.notify.keys import NOTIFY_GLOBAL_KEYS

PAGE = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"


def test_the_mail_and_delivery_key_tables_are_current() -> None:
    text = PAGE.read_text(encoding="utf-8")
    tables = {"mail": key_table(MAIL_KEYS), "notify": key_table(NOTIFY_GLOBAL_KEYS)}
    assert "<!-- BEGIN keys:mail -->" in text and "<!-- BEGIN keys:notify -->" in text
    assert update_markdown(text, tables) == text, "docs/notifications.md: a key table differs from the KeySpecs"


def test_the_readme_links_the_page() -> None:
    readme = (PAGE.parents[1] / "README.md").read_text(encoding="utf-8")
    assert "(docs/notifications.md)" in readme
