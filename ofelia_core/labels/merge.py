"""The files' config plus the labels' jobs and global keys, validated together.

The one place both sources meet, used at start-up, on a file reload (the
labels are kept) and on a label change (the files are kept):

- a job name defined in a file and by labels: the file's job is used, and a
  warning names both;
- a ``[global]`` key set in a file and by a label: the file's value is used;
- a webhook defined in a file and by labels: the file's is used, and a warning
  says so (labels cannot take over a webhook's URL); a label webhook with an
  error is left out, never the rest;
- the result is validated with the files' rules (:func:`validate_config`);
  a label job with an error is left out, and so is a label global key with
  an error, never the rest. A ``depends-on`` cycle through label jobs drops
  a label job of the cycle. Findings about the files are not repeated here:
  loading the files reported them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ofelia_hookspecs.types import ConfigKeys, JobTypeSpec

from ..config.model import Config, Diagnostic, Section
from ..config.validate import _dependency_cycle, validate_config, validate_webhook
from .parse import LabelConfig

LABEL_SOURCE = "docker labels"


@dataclass
class MergedConfig:
    config: Config
    #: Findings about labels: the parse's and validation's. An error naming a job means it is not scheduled.
    diagnostics: list[Diagnostic] = field(default_factory=list)
    #: Label jobs in ``config``.
    label_jobs: list[str] = field(default_factory=list)
    #: Label jobs left out because of an error.
    rejected: list[str] = field(default_factory=list)


def merge_labels(
    files: Config,
    labels: LabelConfig | None,
    job_types: Mapping[str, JobTypeSpec],
    extra_keys: Sequence[ConfigKeys],
    *,
    strict: bool,
) -> MergedConfig:
    """``files`` with the label jobs and global keys added; ``files`` itself is not changed."""
    config = Config(
        sources=list(files.sources),
        global_=_copy(files.global_),
        drivers=files.drivers,
        concerns=files.concerns,
        jobs=dict(files.jobs),
        webhooks=dict(files.webhooks),
    )
    if labels is None:
        return MergedConfig(config)
    config.sources.append(LABEL_SOURCE)
    out = MergedConfig(config, list(labels.diagnostics), rejected=list(labels.rejected))
    label_globals = _add_globals(config, labels, out.diagnostics)
    _add_webhooks(config, files, labels, out.diagnostics, strict)
    for name, section in labels.jobs.items():
        first = files.jobs.get(name)
        if first is not None:
            out.diagnostics.append(
                Diagnostic(
                    "warning",
                    section.location,
                    f"a job with this name is defined at {first.location} too: the file's job is used",
                    job=name,
                )
            )
            continue
        config.jobs[name] = section
        out.label_jobs.append(name)
    _validate(config, out, label_globals, job_types, extra_keys, strict)
    _break_cycles(config, out)
    return out


def _copy(section: Section) -> Section:
    return Section(section.kind, section.name, section.location, dict(section.values), dict(section.locations))


def _add_webhooks(
    config: Config, files: Config, labels: LabelConfig, diagnostics: list[Diagnostic], strict: bool
) -> None:
    for name, section in labels.webhooks.items():
        first = files.webhooks.get(name)
        if first is not None:
            diagnostics.append(
                Diagnostic(
                    "warning",
                    section.location,
                    f'a [webhook "{name}"] is defined at {first.location} too: the file\'s webhook is used',
                )
            )
            continue
        findings = validate_webhook(section, strict=strict)
        diagnostics.extend(findings)
        if any(finding.level == "error" for finding in findings):
            diagnostics.append(
                Diagnostic("error", section.location, f'webhook "{name}" has an error and is not used')
            )
            continue
        config.webhooks[name] = section


def _add_globals(config: Config, labels: LabelConfig, diagnostics: list[Diagnostic]) -> set[str]:
    added: set[str] = set()
    target = config.global_
    for key, value in labels.global_.values.items():
        where = labels.global_.where(key)
        if key in target.values:
            if str(target.values[key]) != str(value):
                diagnostics.append(
                    Diagnostic("warning", where, f"is set at {target.where(key)} too: the file's value is used",
                               key=key)
                )
            continue
        target.set(key, value, where, repeatable=False)
        added.add(key)
    return added


def _validate(
    config: Config,
    out: MergedConfig,
    label_globals: set[str],
    job_types: Mapping[str, JobTypeSpec],
    extra_keys: Sequence[ConfigKeys],
    strict: bool,
) -> None:
    label_jobs = set(out.label_jobs)
    for finding in validate_config(config, job_types, extra_keys, strict=strict):
        if finding.job in label_jobs:
            out.diagnostics.append(finding)
            if finding.level == "error":
                label_jobs.discard(finding.job)
        elif finding.job is None and finding.key in label_globals and _from_label(finding):
            out.diagnostics.append(finding)
            if finding.level == "error":
                config.global_.values.pop(finding.key, None)
                config.global_.locations.pop(finding.key, None)
    _drop(config, out, set(out.label_jobs) - label_jobs)


def _break_cycles(config: Config, out: MergedConfig) -> None:
    # The files alone have no cycle (they validated), so each cycle has a label job to drop.
    while (cycle := _dependency_cycle(config)) is not None:
        victim = next((name for name in cycle if name in out.label_jobs), None)
        if victim is None:
            return
        section = config.jobs[victim]
        out.diagnostics.append(
            Diagnostic(
                "error",
                section.where("depends-on"),
                "depends-on forms a cycle: " + " -> ".join([*cycle, cycle[0]]),
                job=victim,
                key="depends-on",
            )
        )
        _drop(config, out, {victim})


def _drop(config: Config, out: MergedConfig, names: set[str]) -> None:
    for name in names:
        config.jobs.pop(name, None)
    out.label_jobs = [name for name in out.label_jobs if name not in names]
    out.rejected = sorted({*out.rejected, *names})


def _from_label(finding: Diagnostic) -> bool:
    return finding.location.source.startswith("label ")
