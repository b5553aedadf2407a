"""Find the configuration files, read each one and merge them into one :class:`~.model.Config`.

- Paths may be globs (``/etc/ofelia/conf.d/*.ini``); matches are read in
  sorted order. A pattern that matches nothing, or a missing file, is an error.
- The reader is chosen by extension: ``.yaml``/``.yml`` are YAML; ``.ini``,
  ``.conf``, ``.cfg`` and anything else are INI.
- ``[global]``, ``[drivers]`` and the concern sections merge key by key; a
  later file overrides an earlier one's key.
- Job names are unique across all files and job types; so are webhook names.
  A second definition is an error naming both places, and the first is kept.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Mapping, Sequence

from .ini import read_ini
from .kinds import CONCERNS, KNOWN_KINDS, WEBHOOK, is_job_kind
from .model import Config, Diagnostic, Location, Section
from .suggest import nearest

DEFAULT_CONFIG_PATH = "/etc/ofelia/config.ini"
CONFIG_ENV_VAR = "OFELIA_CONFIG"
YAML_EXTENSIONS = (".yaml", ".yml")


def config_paths(cli_value: str | None, env: Mapping[str, str] | None = None) -> list[str]:
    """Where to read the configuration: ``--config``, else ``$OFELIA_CONFIG``, else the default path.

    The value is one path or one glob pattern, kept whole (a comma may be part
    of a file name).
    """
    if cli_value and cli_value.strip():
        return [cli_value.strip()]
    env = os.environ if env is None else env
    from_env = env.get(CONFIG_ENV_VAR, "").strip()
    return [from_env] if from_env else [DEFAULT_CONFIG_PATH]


def load_config(paths: Sequence[str], *, env: Mapping[str, str] | None = None) -> tuple[Config, list[Diagnostic]]:
    """Read and merge every file named by ``paths``; ``env`` feeds ``${VAR}`` substitution."""
    env = os.environ if env is None else env
    config = Config()
    diagnostics: list[Diagnostic] = []
    for path in expand_paths(paths, diagnostics):
        text = _read(path, diagnostics)
        if text is None:
            continue
        config.sources.append(path)
        sections, found = parse_text(text, path, env)
        diagnostics.extend(found)
        for section in sections:
            merge_section(config, section, diagnostics)
    return config, diagnostics


def parse_text(text: str, source: str, env: Mapping[str, str]) -> tuple[list[Section], list[Diagnostic]]:
    """Parse one document, choosing YAML or INI by the name's extension."""
    if source.lower().endswith(YAML_EXTENSIONS):
        from .yaml_source import read_yaml  # PyYAML is only imported when a YAML file is read

        return read_yaml(text, source, env)
    return read_ini(text, source, env)


def expand_paths(paths: Sequence[str], diagnostics: list[Diagnostic]) -> list[str]:
    """Files named by ``paths`` (globs expanded, sorted, duplicates dropped)."""
    files: list[str] = []
    for raw in paths:
        path = os.path.expanduser(raw)
        if glob.has_magic(path):
            matches = sorted(m for m in glob.glob(path) if os.path.isfile(m))
            if not matches:
                diagnostics.append(Diagnostic("error", Location(raw), "no configuration file matches this pattern"))
            files.extend(matches)
        elif os.path.isdir(path):
            diagnostics.append(
                Diagnostic("error", Location(raw), f"is a directory; name the files, e.g. {raw.rstrip('/')}/*.ini")
            )
        elif not os.path.exists(path):
            diagnostics.append(Diagnostic("error", Location(raw), "configuration file not found"))
        else:
            files.append(path)
    seen: set[str] = set()
    unique = []
    for file in files:
        real = os.path.realpath(file)
        if real not in seen:
            seen.add(real)
            unique.append(file)
    return unique


def _read(path: str, diagnostics: list[Diagnostic]) -> str | None:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except UnicodeDecodeError as exc:
        diagnostics.append(Diagnostic("error", Location(path), f"not UTF-8 text ({exc.reason} at byte {exc.start})"))
    except OSError as exc:
        diagnostics.append(Diagnostic("error", Location(path), f"cannot read the file: {exc.strerror or exc}"))
    return None


def merge_section(config: Config, section: Section, diagnostics: list[Diagnostic]) -> None:
    """Add one parsed section to ``config``, reporting conflicts."""
    kind = section.kind
    if kind in ("global", "drivers", *CONCERNS):
        if section.name is not None:
            diagnostics.append(
                Diagnostic("error", section.location, f'section [{kind}] takes no name (got "{section.name}")')
            )
        _merge_keys(_single_section(config, kind, section.location), section)
    elif kind == WEBHOOK or is_job_kind(kind):
        _add_named(config, section, diagnostics)
    else:
        diagnostics.append(
            Diagnostic(
                "warning",
                section.location,
                f"unknown section [{kind}] is ignored",
                suggestion=nearest(kind, KNOWN_KINDS),
            )
        )


def _single_section(config: Config, kind: str, location: Location) -> Section:
    if kind == "global":
        target = config.global_
    elif kind == "drivers":
        target = config.drivers
    else:
        target = config.concerns.setdefault(kind, Section(kind, None, location))
    if target.location.source == "<defaults>":
        target.location = location
    return target


def _merge_keys(target: Section, source: Section) -> None:
    for key, value in source.values.items():
        target.values[key] = value
        target.locations[key] = source.where(key)


def _add_named(config: Config, section: Section, diagnostics: list[Diagnostic]) -> None:
    what = "webhook" if section.kind == WEBHOOK else "job"
    if not section.name:
        diagnostics.append(
            Diagnostic("error", section.location, f'[{section.kind}] needs a {what} name: [{section.kind} "name"]')
        )
        return
    table = config.webhooks if section.kind == WEBHOOK else config.jobs
    first = table.get(section.name)
    if first is None:
        table[section.name] = section
        return
    diagnostics.append(
        Diagnostic(
            "error",
            section.location,
            f'{what} "{section.name}" is defined twice: as [{first.kind}] at {first.location} '
            f"and as [{section.kind}] at {section.location}; the first is kept",
            job=section.name if what == "job" else None,
        )
    )
