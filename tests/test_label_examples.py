"""The examples: the compose file's labels read through the daemon's label parser and
validated, and the INI/YAML examples covering every job type."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from ofelia_core.config.kinds import BUILTIN_JOB_TYPES
from ofelia_core.config.model import Config
from ofelia_core.jobs import build_jobs
from ofelia_core.labels.merge import merge_labels
from ofelia_core.labels.parse import LabelConfig
from ofelia_core.labels.source import label_parser
from ofelia_core.plugins import OfeliaHooks, build_plugin_manager
from ofelia_core.runtime import load_and_validate

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.fixture(scope="module")
def hooks() -> OfeliaHooks:
    return OfeliaHooks(build_plugin_manager(load_entrypoints=False))


def compose_containers(path: Path) -> list[dict[str, Any]]:
    """Each service as the engine would list its container (compose's own labels included)."""
    document = yaml.safe_load(path.read_text())
    project = document["name"]
    records = []
    for created, (service, spec) in enumerate(document["services"].items()):
        labels = spec.get("labels") or {}
        if isinstance(labels, list):
            labels = dict(item.split("=", 1) for item in labels)
        labels = {str(k): str(v) for k, v in labels.items()}
        labels |= {"com.docker.compose.project": project, "com.docker.compose.service": service}
        name = spec.get("container_name") or f"{project}-{service}-1"
        records.append({"Id": f"{created:064x}", "Names": [f"/{name}"], "Labels": labels, "Created": created})
    return records


def read_compose(hooks: OfeliaHooks) -> LabelConfig:
    parsed: LabelConfig = label_parser(hooks)(compose_containers(EXAMPLES / "docker-compose.yml"))
    return parsed


def test_the_compose_example_labels_validate(hooks: OfeliaHooks) -> None:
    labels = read_compose(hooks)
    assert labels.diagnostics == []
    assert labels.containers == ["shop-ofelia-1", "shop-db-1"]  # web has no ofelia.enabled
    merged = merge_labels(Config(), labels, hooks.job_types(), hooks.config_keys(), strict=True)
    assert [str(d) for d in merged.diagnostics] == []
    assert sorted(merged.label_jobs) == ["db-backup", "db-size", "heartbeat"]
    assert merged.config.global_.values == {
        "save-folder": "/var/lib/ofelia/runs", "save-only-on-error": "true", "max-concurrent-runs": "4"}
    jobs = build_jobs(merged.config, hooks.job_types(), hooks.config_keys())
    assert {name: job.type for name, job in jobs.items()} == {
        "heartbeat": "job-local", "db-size": "job-run", "db-backup": "job-exec"}
    backup = jobs["db-backup"]
    assert backup.get("container") == "shop-db-1"
    assert backup.get("environment") == ["PGHOST=/var/run/postgresql", "PGCONNECT_TIMEOUT=10"]
    assert backup.no_overlap and backup.max_runtime == 3600.0
    assert jobs["db-size"].get("volume") == ["shop_db-data:/data:ro"]


def test_the_compose_example_filter_selects_the_project() -> None:
    from ofelia_core.labels.parse import engine_filters

    document = yaml.safe_load((EXAMPLES / "docker-compose.yml").read_text())
    command = document["services"]["ofelia"]["command"].split()
    assert command[:2] == ["daemon", "--docker"]
    assert engine_filters([command[command.index("--docker-filter") + 1]]) == {
        "label": ["ofelia.enabled=true", "com.docker.compose.project=shop"]}


@pytest.mark.parametrize("name", ["config.ini", "config.yaml"])
def test_the_file_examples_use_every_job_type_and_validate(name: str) -> None:
    loaded = load_and_validate(str(EXAMPLES / name), {})
    assert [str(d) for d in loaded.errors] == []
    assert {job.kind for job in loaded.config.jobs.values()} >= set(BUILTIN_JOB_TYPES)
