import pytest
from ofelia_hookspecs.settings import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2h45m30.5s", 9930.5),
        ("300us", 0.0003),
        ("300\u00b5s", 0.0003),
        ("300\u03bcs", 0.0003),
        ("10ns", 1e-8),
        ("0", 0.0),
        (".5s", 0.5),
        ("-1m", -60.0),
        (" 30s ", 30.0),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


def test_bare_integer_is_an_error_suggesting_seconds() -> None:
    with pytest.raises(DurationError, match=r"did you mean '300s'"):
        parse_duration("300")


@pytest.mark.parametrize("text", ["", "+", "1x", "h", "1h 30m", "1h30", "1.2.3s", "s"])
def test_rejects_malformed(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (5400, "1h30m0s"), (90, "1m30s"), (1.5, "1.5s"), (0.5, "500ms"), (0.0015, "1.5ms"), (86400, "24h0m0s")],
)
def test_formats_like_go(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_round_trips() -> None:
    for text in ("1h30m0s", "2h45m30.5s", "500ms", "1m0s"):
        assert format_duration(parse_duration(text)) == text
