"""Ofelia's INI dialect, read into :class:`~.model.Section` objects.

What Ofelia (through go-ini) accepts, and what this reader does with it:

- ``[kind]`` or ``[kind "name"]`` headers; the space may be missing
  (``[job-run"job"]``) and the quotes too (``[job-exec name]``). The kind is
  lower-cased; the name is kept as written.
- ``key = value`` (``key: value`` too, as go-ini allows). Keys are
  case-insensitive and stored lower-cased. A key given again in the same
  section adds a value: the key then holds a list (``environment``,
  ``volume``...). A section header seen twice in one file continues the same
  section.
- Whole-line comments start with ``;`` or ``#``. An inline comment starts
  with ``;`` or ``#`` that follows whitespace and sits outside quotes
  (``schedule = @hourly ; nightly``). Unlike Ofelia, a ``;`` or ``#`` inside a
  word or inside quotes is kept (``sh -c "date; ls"``, ``pa;ss``).
- A value wholly enclosed in one pair of double (or single) quotes is
  unquoted: ``schedule = "*/1 * * * *"``. Anything else is kept exactly,
  escaped quotes included: ``command = echo \\"foo\\"`` stays ``echo \\"foo\\"``.
- As in go-ini, a value that ends with ``\\`` continues on the next line, and
  a value opened with ``\"\"\"`` or a backtick runs, raw, to the matching
  closing delimiter, possibly over several lines.
- ``${VAR}`` and ``${VAR:-default}`` are substituted in values
  (:mod:`.substitute`).

Problems are returned as :class:`~.model.Diagnostic` with file and line; the
reader never raises on bad input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .kinds import is_job_kind
from .model import Diagnostic, Location, Section
from .substitute import substitute_reported

_HEADER = re.compile(r"([A-Za-z0-9_.-]+)\s*(.*)", re.DOTALL)
_RAW_DELIMITERS = ('"""', "`")


def read_ini(text: str, source: str, env: Mapping[str, str] | None = None) -> tuple[list[Section], list[Diagnostic]]:
    """Parse one INI document; sections come back in file order."""
    reader = _Reader(text, source, env if env is not None else {})
    reader.run()
    return list(reader.sections.values()), reader.diagnostics


class _Reader:
    def __init__(self, text: str, source: str, env: Mapping[str, str]) -> None:
        self.lines = text.removeprefix("\ufeff").splitlines()
        self.source = source
        self.env = env
        self.sections: dict[tuple[str, str | None], Section] = {}
        self.diagnostics: list[Diagnostic] = []
        self.current: Section | None = None
        #: After a broken header, its keys are dropped quietly (one error is enough).
        self.skipping = False

    def error(self, line: int, message: str) -> None:
        self.diagnostics.append(Diagnostic("error", Location(self.source, line), message))

    def run(self) -> None:
        index = 0
        while index < len(self.lines):
            stripped = self.lines[index].strip()
            if not stripped or stripped[0] in "#;":
                pass
            elif stripped[0] == "[":
                self.header(stripped, index + 1)
            else:
                index = self.key_value(stripped, index)
            index += 1

    def header(self, text: str, line: int) -> None:
        self.current, self.skipping = None, True
        close = text.rfind("]")
        if close < 0:
            self.error(line, f"section header {text!r} is missing its closing ']'")
            return
        tail = text[close + 1 :].strip()
        if tail and tail[0] not in "#;":
            self.error(line, f"unexpected text {tail!r} after the section header")
            return
        match = _HEADER.fullmatch(text[1:close].strip())
        if not match:
            self.error(line, f'invalid section header {text[: close + 1]!r}; expected [global] or [job-exec "name"]')
            return
        kind, rest = match.group(1).lower(), match.group(2).strip()
        if rest.startswith('"') and (len(rest) < 2 or not rest.endswith('"')):
            self.error(line, f"section name {rest!r} is missing its closing quote")
            return
        # Ofelia trims quotes and blanks around the name the same way.
        name = rest.strip('"\t ') or None
        key = (kind, name)
        section = self.sections.get(key)
        if section is None:
            section = self.sections[key] = Section(kind, name, Location(self.source, line))
        else:
            self.diagnostics.append(
                Diagnostic(
                    "warning",
                    Location(self.source, line),
                    f"section {text[: close + 1]} appears again (first at line {section.location.line}); "
                    "its keys are merged",
                    job=name if is_job_kind(kind) else None,
                )
            )
        self.current, self.skipping = section, False

    def key_value(self, text: str, index: int) -> int:
        """Read one key and its value; returns the index of the value's last line."""
        line = index + 1
        positions = [p for p in (text.find("="), text.find(":")) if p >= 0]
        if not positions:
            if not self.skipping:
                self.error(line, f"expected 'key = value', a [section] header or a comment, got {text!r}")
            return index
        cut = min(positions)
        key = text[:cut].strip().lower()
        value, last = self.value(text[cut + 1 :], index)
        if self.skipping:
            return last
        if not key:
            self.error(line, f"missing key name before {text[cut]!r}")
            return last
        if self.current is None:
            self.error(line, f"key '{key}' is outside any section; put it under [global] or a job section")
            return last
        location = Location(self.source, line)
        job = self.current.name if is_job_kind(self.current.kind) else None
        value = substitute_reported(value, self.env, location, self.diagnostics, job=job, key=key)
        self.current.set(key, value, location)
        return last

    def value(self, text: str, index: int) -> tuple[str, int]:
        value = text.strip()
        for delimiter in _RAW_DELIMITERS:
            if value.startswith(delimiter):
                return self.raw_value(value[len(delimiter) :], delimiter, index)
        last = index
        while value.endswith("\\") and last + 1 < len(self.lines):
            value = value[:-1]
            following = self.lines[last + 1].strip()
            if not following:
                break
            value += following
            last += 1
        return _unquote(_strip_comment(value)), last

    def raw_value(self, body: str, delimiter: str, index: int) -> tuple[str, int]:
        """A ``\"\"\"`` or backtick value: kept verbatim up to the closing delimiter."""
        end = body.rfind(delimiter)
        if end >= 0:
            return body[:end], index
        parts = [body]
        last = index + 1
        while last < len(self.lines):
            line = self.lines[last]
            end = line.find(delimiter)
            if end >= 0:
                parts.append(line[:end])
                return "\n".join(parts), last
            parts.append(line)
            last += 1
        self.error(index + 1, f"value opened with {delimiter} is never closed")
        return "\n".join(parts), last - 1


def _strip_comment(value: str) -> str:
    """Cut an inline comment: ``;`` or ``#`` after whitespace, outside quotes."""
    quote = ""
    escaped = False
    for pos, char in enumerate(value):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "#;" and (pos == 0 or value[pos - 1].isspace()):
            return value[:pos].rstrip()
    return value


def _unquote(value: str) -> str:
    """Remove one pair of quotes wrapping the whole value (none inside)."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" and value[0] not in value[1:-1]:
        return value[1:-1]
    return value
