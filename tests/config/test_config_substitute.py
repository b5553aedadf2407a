from ofelia_core.config.model import Diagnostic, Location
from ofelia_core.config.substitute import substitute, substitute_reported


def test_defined_variable() -> None:
    assert substitute("db-${NAME}", {"NAME": "prod"}) == ("db-prod", [])


def test_default_used_when_unset_or_empty() -> None:
    assert substitute("${A:-x y}", {}) == ("x y", [])
    assert substitute("${A:-x}", {"A": ""}) == ("x", [])
    assert substitute("${A:-x}", {"A": "set"}) == ("set", [])
    assert substitute("${A:-}", {}) == ("", [])


def test_undefined_without_default_is_empty_and_reported() -> None:
    assert substitute("a${B}c${C}", {"C": "3"}) == ("ac3", ["B"])


def test_escape_and_other_dollars_left_alone() -> None:
    assert substitute("$${HOME}", {"HOME": "/root"}) == ("${HOME}", [])
    assert substitute("$HOME $$ ${1} $(date)", {"HOME": "/root"}) == ("$HOME $$ ${1} $(date)", [])


def test_reported_variant_warns_with_location() -> None:
    found: list[Diagnostic] = []
    where = Location("f.ini", 7)
    assert substitute_reported("${MISSING}", {}, where, found, job="j", key="command") == ""
    assert len(found) == 1
    assert found[0].level == "warning"
    assert found[0].location == where
    assert "MISSING" in found[0].message
    assert (found[0].job, found[0].key) == ("j", "command")
