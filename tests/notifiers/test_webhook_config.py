"""``[webhook "NAME"]`` sections in INI, YAML and Docker labels: parsed, validated with the
file, section and key named, never with a secret in a message."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ofelia_core import jobtypes
from ofelia_core.cli import cli
from ofelia_core.config.loader import load_config
from ofelia_core.config.model import Config, Diagnostic
from ofelia_core.config.validate import validate_config
from ofelia_core.labels.merge import merge_labels
from ofelia_core.labels.parse import LabelledContainer, parse_containers
from ofelia_core.notifiers.webhook.settings import parse_webhook

JOB_TYPES = {spec.name: spec for spec in jobtypes.ofelia_register_job_types()}
EXTRA = jobtypes.ofelia_add_config_keys()
SECRET_URL = "https://hooks.example.com/T000/B000/TOPSECRETTOKEN"


def load(tmp_path: Path, text: str, name: str) -> tuple[Config, list[Diagnostic]]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    config, diagnostics = load_config([str(path)], env={})
    assert diagnostics == []
    return config, validate_config(config, JOB_TYPES, EXTRA, strict=False)


INI = f"""
[webhook "ops"]
preset = slack
url = {SECRET_URL}
trigger = always
retry-count = 1

[webhook "hc"]
preset = healthchecks
id = 0f2d-uuid

[job-local "backup"]
schedule = @daily
command = true
webhooks = ops, hc
"""

YAML = f"""
webhook:
  ops:
    preset: slack
    url: {SECRET_URL}
    trigger: always
    retry-count: 1
  hc:
    preset: healthchecks
    id: 0f2d-uuid
job-local:
  backup:
    schedule: "@daily"
    command: "true"
    webhooks: [ops, hc]
"""


@pytest.mark.parametrize(("text", "name"), [(INI, "c.ini"), (YAML, "c.yaml")])
def test_ini_and_yaml_sections_read_the_same(tmp_path: Path, text: str, name: str) -> None:
    config, findings = load(tmp_path, text, name)
    assert findings == []
    ops = parse_webhook("ops", config.webhooks["ops"].values)
    assert (ops.preset.name, ops.trigger, ops.retry_count, ops.settings.url) == ("slack", "always", 1, SECRET_URL)
    hc = parse_webhook("hc", config.webhooks["hc"].values)
    assert hc.preset.build_url(hc.settings) == "https://hc-ping.com/0f2d-uuid"


def test_an_ini_json_template_is_read_verbatim(tmp_path: Path) -> None:
    config, findings = load(tmp_path, '[webhook "chat"]\nurl = https://chat.example.com/h\n'
                            'template = {"text": "{job} {status}: {error}"}\n', "c.ini")
    assert findings == []
    template = parse_webhook("chat", config.webhooks["chat"].values).template
    assert template is not None and template.is_json
    assert template.render({"job": "b", "status": "failed", "error": 'x "y"'}) == b'{"text": "b failed: x \\"y\\""}'


@pytest.mark.parametrize(
    ("body", "key", "message"),
    [
        ("preset = slackk\nurl = https://h/x", "preset", "unknown preset 'slackk'; known: json-post, slack,"),
        ("trigger = sometimes\nurl = https://h/x", "trigger", "must be one of always, error, success, skipped"),
        ("url = ftp://h/TOPSECRETTOKEN", "url", "must be an http:// or https:// URL"),
        ("preset = slack", "url", "is required by this preset unless id and secret are set"),
        ("preset = gotify\nurl = https://g.example.com", "secret", "is required by this preset"),
        ("url = https://h/x\ntimeout = soon", "timeout", "invalid duration"),
        ("url = https://h/x\ntemplate = {job} {bogus}", "template", "unknown placeholder"),
    ],
)
def test_a_bad_section_is_an_error_naming_file_line_section_and_key(
    tmp_path: Path, body: str, key: str, message: str
) -> None:
    _, findings = load(tmp_path, f'[webhook "ops"]\n{body}\n', "c.ini")
    errors = [f for f in findings if f.level == "error"]
    assert len(errors) == 1, [str(f) for f in findings]
    text = str(errors[0])
    assert errors[0].key == key
    assert text.startswith(f"error: {tmp_path / 'c.ini'}:")  # file and line
    assert message in text
    assert '[webhook "ops"]' in text
    assert "TOPSECRETTOKEN" not in text


def test_yaml_errors_name_the_path(tmp_path: Path) -> None:
    _, findings = load(tmp_path, "webhook:\n  ops:\n    preset: gotify\n    url: https://g.example.com\n", "c.yml")
    (error,) = [f for f in findings if f.level == "error"]
    assert error.key == "secret" and "c.yml" in str(error)


def test_ofelia_validate_reports_it_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "c.ini"
    path.write_text(f'[webhook "ops"]\npreset = discord\nurl = {SECRET_URL}\ntrigger = never\n', encoding="utf-8")
    result = CliRunner().invoke(cli, ["validate", "--config", str(path)])
    assert result.exit_code != 0
    assert "key 'trigger'" in result.output
    assert "TOPSECRETTOKEN" not in result.output


# --- Docker labels --------------------------------------------------------------------------------


def service(**labels: str) -> LabelledContainer:
    return LabelledContainer("s1", "ofelia", {"ofelia.enabled": "true", "ofelia.service": "true", **labels}, 1.0)


def app(**labels: str) -> LabelledContainer:
    return LabelledContainer("a1", "shop-db", {"ofelia.enabled": "true", **labels}, 2.0)


def test_webhook_labels_on_the_service_container_define_a_section() -> None:
    labels = parse_containers([service(**{
        "ofelia.webhook.ops.url": SECRET_URL,
        "ofelia.webhook.ops.preset": "slack",
        "ofelia.webhook.ops.TRIGGER": "always",
    })])
    assert labels.diagnostics == []
    section = labels.webhooks["ops"]
    assert section.values == {"url": SECRET_URL, "preset": "slack", "trigger": "always"}
    assert str(section.where("url")) == "label ofelia.webhook.ops.url on container 'ofelia'"


def test_webhook_labels_on_another_container_are_an_error_naming_container_and_label() -> None:
    labels = parse_containers([service(), app(**{"ofelia.webhook.evil.url": "https://attacker.example/x"})])
    assert labels.webhooks == {}
    (finding,) = labels.diagnostics
    assert finding.level == "error"
    text = str(finding)
    assert "label ofelia.webhook.evil.url on container 'shop-db'" in text
    assert "read only from the scheduler's own container" in text
    assert "attacker.example" not in text


def test_a_dotted_webhook_label_is_refused() -> None:
    labels = parse_containers([service(**{"ofelia.webhook.a.b.url": "https://h/x"})])
    assert labels.webhooks == {}
    assert "ofelia.webhook.<name>.<key>" in str(labels.diagnostics[0])


def merged(files: Config, *containers: LabelledContainer) -> tuple[Config, list[str]]:
    out = merge_labels(files, parse_containers(containers), JOB_TYPES, EXTRA, strict=False)
    return out.config, [str(d) for d in out.diagnostics]


def test_label_webhooks_reach_the_config_and_a_job_label_may_use_them() -> None:
    config, findings = merged(
        Config(),
        service(**{"ofelia.webhook.ops.url": "https://hooks.example.com/x"}),
        app(**{"ofelia.job-exec.dump.schedule": "@daily", "ofelia.job-exec.dump.command": "true",
               "ofelia.job-exec.dump.webhooks": "ops"}),
    )
    assert findings == []
    assert set(config.webhooks) == {"ops"}
    assert "dump" in config.jobs


def test_the_files_webhook_wins_over_a_label_one(tmp_path: Path) -> None:
    files, _ = load(tmp_path, '[webhook "ops"]\nurl = https://files.example.com/x\n', "c.ini")
    config, findings = merged(files, service(**{"ofelia.webhook.ops.url": "https://labels.example.com/x"}))
    assert config.webhooks["ops"].values["url"] == "https://files.example.com/x"
    assert any("the file's webhook is used" in f for f in findings)
    assert files.webhooks["ops"] is config.webhooks["ops"]  # the files' config is not changed


def test_a_bad_label_webhook_is_left_out_and_the_rest_kept() -> None:
    config, findings = merged(
        Config(),
        service(**{"ofelia.webhook.bad.preset": "gotify", "ofelia.webhook.bad.url": "https://g.example.com",
                   "ofelia.webhook.good.url": "https://h.example.com/x"}),
    )
    assert set(config.webhooks) == {"good"}
    assert any("key 'secret'" in f and "ofelia.webhook.bad" in f for f in findings)
    assert any('webhook "bad" has an error and is not used' in f for f in findings)
