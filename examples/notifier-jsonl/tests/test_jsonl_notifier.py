"""The JSON-lines notifier on its own: settings, the filter, the line it writes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ofelia_example_jsonl_notifier import KEYS, JsonlNotifier, build, check, ofelia_register_notifiers
from ofelia_hookspecs.types import Notice, NotifierContext


def notice(state: str = "failed", **changes: Any) -> Notice:
    values: dict[str, Any] = {
        "job_name": "backup", "job_type": "job-local", "run_id": "0123456789ab", "state": state,
        "trigger": "schedule", "attempt": 1, "scheduled_at": 1_700_000_000.0, "started_at": 1_700_000_000.25,
        "ended_at": 1_700_000_002.75, "exit_code": 2 if state == "failed" else 0,
        "error": "exit code 2" if state == "failed" else None, "stdout": b"dumping\n",
        "stderr": "caf\u00e9".encode() + b" \xff", "document": {}, "hostname": "host-1",
    }
    values.update(changes)
    return Notice(**values)


def make(tmp_path: Path, **settings: Any) -> JsonlNotifier:
    built = build({"jsonl-file": str(tmp_path / "runs.jsonl"), **settings}, NotifierContext())
    assert len(built) == 1 and isinstance(built[0], JsonlNotifier)
    return built[0]


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def test_it_registers_one_notifier_with_its_keys() -> None:
    (spec,) = ofelia_register_notifiers()
    assert spec.name == "jsonl"
    assert [key.name for key in spec.keys] == [
        "jsonl-file", "jsonl-only-on-error", "jsonl-include-output", "jsonl-retry-count", "jsonl-retry-delay",
    ]
    assert spec.keys is KEYS and spec.build is build and spec.check is check


def test_each_notice_is_appended_as_one_line_with_exact_fields(tmp_path: Path) -> None:
    notifier = make(tmp_path)
    notifier.send(notice("failed"))
    notifier.send(notice("success", run_id="ba9876543210", suppressed=3))
    first, second = lines(tmp_path / "runs.jsonl")
    assert first == {
        "job": "backup", "job_type": "job-local", "run_id": "0123456789ab", "state": "failed", "failed": True,
        "trigger": "schedule", "attempt": 1, "scheduled_at": 1_700_000_000.0, "started_at": 1_700_000_000.25,
        "ended_at": 1_700_000_002.75, "duration": 2.5, "exit_code": 2, "error": "exit code 2",
        "hostname": "host-1", "suppressed": 0,
    }
    assert (second["run_id"], second["state"], second["failed"], second["error"], second["suppressed"]) == (
        "ba9876543210", "success", False, None, 3)
    assert "stdout" not in first


def test_include_output_adds_the_newest_output_decoded(tmp_path: Path) -> None:
    notifier = make(tmp_path, **{"jsonl-include-output": True})
    notifier.send(notice(stdout=b"x" * 5000 + b"END"))
    (line,) = lines(tmp_path / "runs.jsonl")
    assert len(line["stdout"]) == 4000 and line["stdout"].endswith("xEND")
    assert line["stderr"] == "caf\u00e9 \ufffd"  # bytes that are not UTF-8 become U+FFFD


def test_only_on_error_wants_failed_timed_out_and_cancelled(tmp_path: Path) -> None:
    notifier = make(tmp_path, **{"jsonl-only-on-error": "true"})
    wanted = {state: notifier.wants(notice(state)) for state in
              ("success", "failed", "timed_out", "cancelled", "skipped", "missed")}
    assert wanted == {"success": False, "failed": True, "timed_out": True, "cancelled": True,
                      "skipped": False, "missed": False}
    assert make(tmp_path).wants(notice("success")) is True


def test_no_file_means_no_notifier_and_a_warning_for_keys_that_write_nothing() -> None:
    assert build({"jsonl-file": None}, NotifierContext()) == []
    assert build({"jsonl-file": "  "}, NotifierContext()) == []
    assert check({"jsonl-file": None, "jsonl-only-on-error": True}) == [
        "jsonl-only-on-error is set but jsonl-file is not: nothing is written"]
    assert check({"jsonl-file": "/var/log/runs.jsonl", "jsonl-only-on-error": True}) == []


def test_settings_it_cannot_use_are_value_errors_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"jsonl-file must be an absolute path, got 'runs\.jsonl'"):
        build({"jsonl-file": "runs.jsonl"}, NotifierContext())
    with pytest.raises(ValueError, match="jsonl-retry-count: must not be negative"):
        build({"jsonl-file": "/x.jsonl", "jsonl-retry-count": -1}, NotifierContext())
    with pytest.raises(ValueError, match="missing unit"):
        build({"jsonl-file": "/x.jsonl", "jsonl-retry-delay": "5"}, NotifierContext())


def test_retries_come_from_the_keys_typed_or_raw(tmp_path: Path) -> None:
    typed = make(tmp_path, **{"jsonl-retry-count": 5, "jsonl-retry-delay": 0.25})
    raw = make(tmp_path, **{"jsonl-retry-count": "5", "jsonl-retry-delay": "250ms"})
    defaults = make(tmp_path)
    assert (typed.retry_count, typed.retry_delay) == (raw.retry_count, raw.retry_delay) == (5, 0.25)
    assert (defaults.retry_count, defaults.retry_delay) == (2, 1.0)


def test_a_file_that_cannot_be_written_raises_so_the_core_retries_and_records_it(tmp_path: Path) -> None:
    notifier = build({"jsonl-file": str(tmp_path / "missing" / "runs.jsonl")}, NotifierContext())[0]
    with pytest.raises(FileNotFoundError):
        notifier.send(notice())
