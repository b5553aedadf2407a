from pathlib import Path
from typing import Any

import pytest

from ofelia_core import jobtypes
from ofelia_core.config.loader import load_config
from ofelia_core.config.model import Config
from ofelia_core.config.validate import global_keys, job_keys, validate_config
from ofelia_core.config.values import coerce

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
JOB_TYPES = {spec.name: spec for spec in jobtypes.JOB_TYPES}
EXTRA = jobtypes.ofelia_add_config_keys()


def load(name: str) -> Config:
    config, diagnostics = load_config([str(EXAMPLES / name)], env={})
    assert diagnostics == []
    return config


def normalised(config: Config) -> dict[str, Any]:
    """Jobs and globals with every value converted to its key's kind."""
    jobs = {}
    for name, job in config.jobs.items():
        table = job_keys(JOB_TYPES[job.kind], EXTRA)
        jobs[name] = (job.kind, {key: coerce(table[key], value) for key, value in job.values.items()})
    table = global_keys(EXTRA)
    return {"jobs": jobs, "global": {k: coerce(table[k], v) for k, v in config.global_.values.items()}}


@pytest.mark.parametrize("name", ["config.ini", "config.yaml"])
def test_example_is_valid_in_strict_mode(name: str) -> None:
    assert validate_config(load(name), JOB_TYPES, EXTRA, strict=True) == []


def test_ini_and_yaml_examples_define_the_same_jobs() -> None:
    ini, yaml = normalised(load("config.ini")), normalised(load("config.yaml"))
    assert sorted(ini["jobs"]) == sorted(yaml["jobs"])
    assert ini == yaml
    kinds = {kind for kind, _ in ini["jobs"].values()}
    assert kinds == {"job-local", "job-exec", "job-run", "job-service-run"}
