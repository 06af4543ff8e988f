import pytest
from hypothesis import given
from hypothesis import strategies as st

from artemis.durations import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0.0),
        ("15s", 15.0),
        ("72h", 259200.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1.5h", 5400.0),
        ("2m3s", 123.0),
        ("100us", 1e-4),
        ("100µs", 1e-4),
        ("-5s", -5.0),
        ("+5s", 5.0),
        (".5s", 0.5),
        ("1h1h", 7200.0),
    ],
)
def test_parses_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text", ["", "15", "abc", "1d", "1 h", " 1h", "h", "1h 30m", "-", "5S", "1.2.3s"]
)
def test_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(DurationError):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**7))
def test_format_then_parse_round_trips(seconds: int) -> None:
    assert parse_duration(format_duration(seconds)) == seconds


def test_format_is_compact() -> None:
    assert format_duration(5400) == "1h30m"
    assert format_duration(15) == "15s"
    assert format_duration(0) == "0s"
