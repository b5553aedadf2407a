"""YAML configuration, read into the same :class:`~.model.Section` objects as INI.

Schema (every top-level key is optional)::

    global:        {save-folder: /var/log/ofelia, ...}
    drivers:       {docker-client: pooled, ...}
    docker-client: {...}            # also token-manager, buffer-pool, metrics
    job-exec:                        # any job type, plugins' included
      backup: {schedule: "@hourly", container: db, command: pg_dump app}
    webhook:
      ops: {url: https://example.com/hook}

Keys are case-insensitive. A value is a scalar or a list of scalars
(``environment: [A=1, B=2]``); booleans and numbers keep their YAML type.
A null value is read as an empty string. Merge keys (``<<: *anchor``) work,
and top-level keys starting with ``x-`` are ignored, a place for anchors;
a key repeated in one mapping is an error. Every value records
``Location(file, line, path="job-exec.backup.schedule")``.

The node tree is composed once with the C loader when PyYAML has it, and
values are built from the nodes so their line numbers are kept.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from .kinds import KNOWN_KINDS, SINGLE_KINDS, WEBHOOK, is_job_kind
from .model import Diagnostic, Location, Section
from .substitute import substitute_reported
from .suggest import nearest

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SCALAR_TYPES = (str, bool, int, float)


def read_yaml(text: str, source: str, env: Mapping[str, str] | None = None) -> tuple[list[Section], list[Diagnostic]]:
    """Parse one YAML document; sections come back in document order."""
    reader = _Reader(source, env if env is not None else {})
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        if root is not None:
            reader.document(loader, root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        reader.diagnostics.append(Diagnostic("error", Location(source, line), f"YAML syntax error: {problem}"))
    except yaml.YAMLError as exc:
        reader.diagnostics.append(Diagnostic("error", Location(source), f"YAML error: {exc}"))
    finally:
        loader.dispose()
    return reader.sections, reader.diagnostics


class _Reader:
    def __init__(self, source: str, env: Mapping[str, str]) -> None:
        self.source = source
        self.env = env
        self.sections: list[Section] = []
        self.diagnostics: list[Diagnostic] = []
        self.loader: yaml.SafeLoader | None = None

    def location(self, node: yaml.Node, path: str) -> Location:
        return Location(self.source, node.start_mark.line + 1, path)

    def error(self, node: yaml.Node, path: str, message: str, **extra: Any) -> None:
        self.diagnostics.append(Diagnostic("error", self.location(node, path), message, **extra))

    def document(self, loader: yaml.SafeLoader, root: yaml.Node) -> None:
        self.loader = loader
        items = self.mapping(root, "", "the top level of a configuration file")
        for key, key_node, node in items:
            if key.startswith("x-"):
                continue  # extension fields, a home for YAML anchors (as in Compose files)
            if key in SINGLE_KINDS:
                self.section(key, None, node, key, key_node)
            elif key == WEBHOOK or is_job_kind(key):
                what = "webhook" if key == WEBHOOK else "job"
                expected = f"a mapping of {what} name to its keys"
                for name, name_node, body in self.mapping(node, key, expected, fold_case=False):
                    self.section(key, name, body, f"{key}.{name}", name_node)
            else:
                self.error(
                    key_node,
                    key,
                    f"unknown top-level key '{key}'; expected one of: {', '.join(KNOWN_KINDS)} or another job-<type>",
                    suggestion=nearest(key, KNOWN_KINDS),
                )

    def mapping(
        self, node: yaml.Node, path: str, expected: str, *, fold_case: bool = True
    ) -> list[tuple[str, yaml.Node, yaml.Node]]:
        """The (key, key node, value node) triples of a mapping node.

        Keys are lower-cased when ``fold_case`` (section kinds and keys are
        case-insensitive; job and webhook names are not).
        """
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null"):
            return []
        if not isinstance(node, yaml.MappingNode):
            self.error(node, path, f"expected {expected}, got {_describe(node)}")
            return []
        seen: dict[str, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag.endswith(":merge"):
                continue
            key = _key_text(key_node, fold_case)
            if key in seen:
                first = seen[key].start_mark.line + 1
                self.error(
                    key_node,
                    _join(path, key),
                    f"'{key}' is given twice in one mapping (first at line {first})",
                )
            seen[key] = key_node
        assert self.loader is not None
        self.loader.flatten_mapping(node)  # resolves << merge keys; the mapping's own keys win
        triples: dict[str, tuple[str, yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = _key_text(key_node, fold_case)
            triples[key] = (key, key_node, value_node)
        return list(triples.values())

    def section(self, kind: str, name: str | None, node: yaml.Node, path: str, at: yaml.Node | None = None) -> None:
        section = Section(kind, name, self.location(at or node, path))
        job = name if is_job_kind(kind) else None
        for key, _, value_node in self.mapping(node, path, "a mapping of keys to values"):
            key_path = f"{path}.{key}"
            value = self.value(value_node, key_path, job, key)
            if value is not None:
                section.values[key] = value
                section.locations[key] = self.location(value_node, key_path)
        self.sections.append(section)

    def value(self, node: yaml.Node, path: str, job: str | None, key: str) -> Any:
        if isinstance(node, yaml.SequenceNode):
            items = [self.scalar(item, f"{path}[{i}]", job, key) for i, item in enumerate(node.value)]
            return None if any(item is None for item in items) else items
        return self.scalar(node, path, job, key)

    def scalar(self, node: yaml.Node, path: str, job: str | None, key: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.error(node, path, f"expected a value or a list of values, got {_describe(node)}", job=job, key=key)
            return None
        assert self.loader is not None
        value = self.loader.construct_object(node)
        if value is None:
            return ""
        if not isinstance(value, _SCALAR_TYPES):
            value = node.value  # dates and the like: keep the text as written
        if isinstance(value, str):
            value = substitute_reported(value, self.env, self.location(node, path), self.diagnostics, job=job, key=key)
        return value


def _key_text(node: yaml.Node, fold_case: bool) -> str:
    # The raw text, so a key such as ``on`` or ``1`` is not turned into a bool or an int.
    text = str(node.value) if isinstance(node, yaml.ScalarNode) else "<complex key>"
    return text.lower() if fold_case else text


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _describe(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return f"{node.value!r}"
