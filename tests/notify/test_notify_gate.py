"""The states gate: when every notifier of a job says which run states it may want
(``states``), a run in none of them ends without a notice being built or ``wants`` asked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from ofelia_hookspecs import hookimpl
from ofelia_hookspecs.types import (
    FAILED_STATES,
    RUN_STATES,
    SKIPPED_STATES,
    KeySpec,
    Notice,
    NotifierContext,
    NotifierSpec,
)

from ofelia_core.jobs import build_jobs
from ofelia_core.notifiers import mail, slack, webhook
from ofelia_core.notify.service import Notifications
from ofelia_core.plugins import OfeliaHooks, build_plugin_manager
from ofelia_core.runs import Run, RunState
from ofelia_core.runtime import load_and_validate


class Asked:
    """Records the states ``wants`` is asked about; wants nothing (no delivery is queued)."""

    retry_count, retry_delay = 0, 0.0

    def __init__(self, name: str, states: frozenset[str] | None) -> None:
        self.name = name
        if states is not None:
            self.states = states
        self.asked: list[str] = []

    def wants(self, notice: Notice) -> bool:
        self.asked.append(notice.state)
        return False

    def send(self, notice: Notice) -> None:
        raise AssertionError("nothing is wanted")


class Plugin:
    def __init__(self, notifiers: Sequence[Asked]) -> None:
        self.notifiers = notifiers

    @hookimpl
    def ofelia_register_notifiers(self) -> list[NotifierSpec]:
        def build(settings: Mapping[str, Any], context: NotifierContext) -> Sequence[Asked]:
            return self.notifiers if settings["asked-on"] else []

        return [NotifierSpec("asked", (KeySpec("asked-on", "bool", False),), build)]


def observe(tmp_path: Path, notifiers: Sequence[Asked], states: Sequence[RunState]) -> None:
    pm = build_plugin_manager(load_entrypoints=False)
    pm.register(Plugin(notifiers), name="test.asked")
    hooks = OfeliaHooks(pm)
    path = tmp_path / "ofelia.ini"
    path.write_text('[global]\nasked-on = true\n\n[job-local "a"]\nschedule = @manual\ncommand = true\n')
    loaded = load_and_validate(str(path), {}, hooks=hooks)
    assert not loaded.errors
    jobs = build_jobs(loaded.config, hooks.job_types(), hooks.config_keys())
    core = Notifications(hooks, None, frozenset())
    core.configure(loaded.config, jobs)
    for state in states:
        run = Run("a", "job-local")
        run.state = state
        core.ofelia_observe_run_end(job=jobs["a"], run=run)


def test_runs_in_no_notifiers_states_are_not_offered(tmp_path: Path) -> None:
    first, second = Asked("first", FAILED_STATES), Asked("second", SKIPPED_STATES)
    observe(tmp_path, [first, second], [RunState.SUCCESS, RunState.FAILED, RunState.MISSED, RunState.SUCCESS])
    # The gate is the union: a failed or missed run is offered to both (each still decides).
    assert first.asked == second.asked == ["failed", "missed"]


def test_a_notifier_without_states_is_asked_about_every_run(tmp_path: Path) -> None:
    gated, open_ = Asked("gated", FAILED_STATES), Asked("open", None)
    observe(tmp_path, [gated, open_], [RunState.SUCCESS, RunState.FAILED])
    assert open_.asked == gated.asked == ["success", "failed"]


def test_run_states_are_the_cores() -> None:
    assert {str(state) for state in RunState} - {"running"} == RUN_STATES
    assert FAILED_STATES | SKIPPED_STATES < RUN_STATES


@pytest.mark.parametrize("state", sorted(RUN_STATES))
def test_the_core_notifiers_states_cover_every_notice_they_want(state: str) -> None:
    """A notifier's ``states`` must hold every state its ``wants`` accepts (else runs are lost)."""
    from test_notify_units import notice

    sections = {t: {"url": "http://127.0.0.1:9/x", "trigger": t} for t in ("always", "error", "success", "skipped")}
    context = NotifierContext(webhooks=sections, global_settings={}, hostname="box")
    built = [
        *mail.build({"smtp-host": "h", "email-to": "a@b", "mail-only-on-error": True}, context),
        *mail.build({"smtp-host": "h", "email-to": "a@b"}, context),
        *slack.build({"slack-webhook": "http://127.0.0.1:9/s", "slack-only-on-error": True}, context),
        *slack.build({"slack-webhook": "http://127.0.0.1:9/s"}, context),
        *webhook.build({"webhooks": ", ".join(sections)}, context),
    ]
    assert len(built) == 8
    item = notice(state=state)
    for notifier in built:
        assert notifier.wants(item) == (state in notifier.states), (notifier.name, state)
