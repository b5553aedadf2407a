import textwrap

from ofelia_core.config.ini import read_ini
from ofelia_core.config.model import Diagnostic, Location, Section


def parse(
    text: str, env: dict[str, str] | None = None
) -> tuple[dict[tuple[str, str | None], Section], list[Diagnostic]]:
    sections, diagnostics = read_ini(textwrap.dedent(text), "t.ini", env or {})
    return {(s.kind, s.name): s for s in sections}, diagnostics


def test_sections_keys_and_locations() -> None:
    sections, diagnostics = parse(
        """\
        ; a comment
        # another
        [global]
        save-folder = /tmp/x

        [job-exec "backup"]
        schedule = @hourly
        """
    )
    assert diagnostics == []
    assert sections[("global", None)].values == {"save-folder": "/tmp/x"}
    job = sections[("job-exec", "backup")]
    assert job.values == {"schedule": "@hourly"}
    assert job.location == Location("t.ini", 6)
    assert job.where("schedule") == Location("t.ini", 7)


def test_header_without_space_and_without_quotes() -> None:
    sections, diagnostics = parse('[job-run"job"]\nschedule = @daily\n[job-local plain]\nschedule = @daily\n')
    assert diagnostics == []
    assert ("job-run", "job") in sections
    assert ("job-local", "plain") in sections


def test_kind_is_case_insensitive_but_name_is_kept() -> None:
    sections, _ = parse('[Job-Exec "MyJob"]\nschedule = @daily\n')
    assert ("job-exec", "MyJob") in sections


def test_quoted_value_is_unquoted() -> None:
    sections, _ = parse('[global]\na = "*/1 * * * *"\nb = \'single\'\nc = ""\n')
    assert sections[("global", None)].values == {"a": "*/1 * * * *", "b": "single", "c": ""}


def test_escaped_quotes_are_kept() -> None:
    sections, _ = parse('[global]\ncommand = echo \\"foo\\"\n')
    assert sections[("global", None)].values["command"] == 'echo \\"foo\\"'


def test_inner_quotes_are_not_stripped() -> None:
    sections, _ = parse('[global]\ncommand = "a" "b"\n')
    assert sections[("global", None)].values["command"] == '"a" "b"'


def test_repeated_keys_become_lists() -> None:
    sections, _ = parse('[job-run "r"]\nenvironment = A=1\nENVIRONMENT = B=2\nenvironment = C=3\n')
    job = sections[("job-run", "r")]
    assert job.values["environment"] == ["A=1", "B=2", "C=3"]
    assert job.where("environment") == Location("t.ini", 2)


def test_keys_are_case_insensitive() -> None:
    sections, _ = parse("[global]\nSave-Folder = /x\n")
    assert sections[("global", None)].values == {"save-folder": "/x"}


def test_colon_delimiter_is_accepted() -> None:
    sections, _ = parse("[global]\nsave-folder: /x\nweb-address = :8081\n")
    assert sections[("global", None)].values == {"save-folder": "/x", "web-address": ":8081"}


def test_inline_comments_after_whitespace_only() -> None:
    sections, _ = parse(
        """\
        [global]
        a = @hourly ; every hour
        b = @daily # nightly
        c = sh -c "date; ls # not a comment"
        d = pa;ss#word
        e = https://example.com/x#frag
        """
    )
    assert sections[("global", None)].values == {
        "a": "@hourly",
        "b": "@daily",
        "c": 'sh -c "date; ls # not a comment"',
        "d": "pa;ss#word",
        "e": "https://example.com/x#frag",
    }


def test_continuation_and_raw_values() -> None:
    sections, diagnostics = parse('[global]\na = one \\\n  two\nb = """x ; y\nz"""\nc = `p # q`\nd = after\n')
    assert diagnostics == []
    values = sections[("global", None)].values
    assert values == {"a": "one two", "b": "x ; y\nz", "c": "p # q", "d": "after"}
    assert sections[("global", None)].where("d") == Location("t.ini", 7)


def test_substitution_in_values() -> None:
    sections, diagnostics = parse(
        '[job-local "j"]\ncommand = echo ${WHO:-world} ${UNSET}\ndir = ${HOME}\n', {"HOME": "/home/me"}
    )
    assert sections[("job-local", "j")].values == {"command": "echo world ", "dir": "/home/me"}
    assert len(diagnostics) == 1
    warning = diagnostics[0]
    assert (warning.level, warning.location, warning.job, warning.key) == (
        "warning",
        Location("t.ini", 2),
        "j",
        "command",
    )
    assert "UNSET" in warning.message


def test_syntax_errors_are_diagnostics_with_lines() -> None:
    sections, diagnostics = parse(
        """\
        orphan = 1
        [global]
        not a key line
        [broken
        hidden = 1
        [global] trailing
        """
    )
    errors = [(d.location.line, d.level) for d in diagnostics]
    assert errors == [(1, "error"), (3, "error"), (4, "error"), (6, "error")]
    assert "outside any section" in diagnostics[0].message
    assert "closing ']'" in diagnostics[2].message
    # keys under a broken header are dropped without further noise
    assert "hidden" not in sections[("global", None)].values


def test_repeated_section_merges_with_warning() -> None:
    sections, diagnostics = parse('[job-exec "a"]\nschedule = @daily\n[job-exec "a"]\ncontainer = c\n')
    assert sections[("job-exec", "a")].values == {"schedule": "@daily", "container": "c"}
    assert [d.level for d in diagnostics] == ["warning"]
    assert diagnostics[0].location.line == 3


def test_unterminated_raw_value_is_an_error() -> None:
    _, diagnostics = parse('[global]\na = """never closed\nmore\n')
    assert [(d.level, d.location.line) for d in diagnostics] == [("error", 2)]


def test_bom_and_crlf() -> None:
    sections, diagnostics = read_ini("\ufeff[global]\r\nsave-folder = /x\r\n", "t.ini")
    assert diagnostics == []
    assert sections[0].values == {"save-folder": "/x"}
