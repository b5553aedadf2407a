"""The page in a real headless Chromium (Debian's, driven by Playwright): log in, see the
jobs, run one, see its output in the history, disable it, and the metrics summary.

Skips with a hint when /usr/bin/chromium is missing (scripts/install-browser.sh installs
it), except under CI=true, where a missing browser fails the run.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from docker_engine_fixtures import in_ci
from web_support import PASSWORD, USERNAME, Running, auth_config

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
HINT = "install it with: scripts/install-browser.sh"


def browser_missing(reason: str) -> None:
    message = f"no browser for the browser tests: {reason}; {HINT}"
    if in_ci():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


@pytest.fixture
def browser() -> Iterator[Any]:
    if not os.access(CHROMIUM, os.X_OK):
        browser_missing(f"{CHROMIUM} is missing")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        browser_missing("the playwright package is not installed (scripts/setup.sh)")
    with sync_playwright() as playwright:
        # --no-sandbox: the tests may run as root, where Chromium's sandbox refuses to start.
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


def test_log_in_run_a_job_and_read_its_output(browser: Any, tmp_path: Path, password_hash: str) -> None:
    from playwright.sync_api import expect

    running = Running(tmp_path, auth_config(password_hash))
    try:
        page = browser.new_page()
        problems: list[str] = []
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.goto(running.url())

        expect(page.locator("#login")).to_be_visible()
        page.fill("#username", USERNAME)
        page.fill("#password", "not the password")
        page.click("#login-button")
        expect(page.locator("#login-error")).to_contain_text("Wrong user name or password")
        problems.clear()  # the browser reports the 401 on the console; that one is expected
        page.fill("#password", PASSWORD)
        page.click("#login-button")

        row = page.locator('tr[data-job="hello"]')
        expect(row).to_contain_text("@every 1h")
        expect(page.locator('tr[data-job="later"]')).to_contain_text("@manual")
        expect(page.locator("#user")).to_contain_text(USERNAME)
        expect(page.locator("#metrics-body")).to_contain_text("Metrics disabled")

        row.get_by_role("button", name="Run now").click()
        expect(page.locator("#history-job")).to_have_text("hello")
        expect(page.locator("#runs pre.stdout").first).to_have_text("hello-from-web\n")
        expect(row.locator("td.state")).to_have_text("success")
        expect(page.locator("#message")).to_contain_text("of hello")

        row.get_by_role("button", name="Disable").click()
        expect(row).to_have_class("disabled")
        assert running.daemon.disabled == {"hello"}
        row.get_by_role("button", name="Enable").click()
        expect(row).not_to_have_class("disabled")
        assert running.daemon.disabled == set()

        page.click("#logout")
        expect(page.locator("#login")).to_be_visible()
        assert not problems, problems
    finally:
        assert running.stop() == 0
