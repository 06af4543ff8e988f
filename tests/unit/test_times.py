"""The times module: the UTC clock, RFC 3339 rendering, and RFC 3339 parsing (the audit log's `since`)."""

import re
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import artemis
from artemis.times import parse_rfc3339, rfc3339, rfc3339_seconds, utcnow


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-04-20T14:15:22Z", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22.123456Z", datetime(2026, 4, 20, 14, 15, 22, 123456, tzinfo=UTC)),
        ("2026-04-20T14:15:22.1Z", datetime(2026, 4, 20, 14, 15, 22, 100000, tzinfo=UTC)),
        ("2026-04-20T14:15:22.123456789Z", datetime(2026, 4, 20, 14, 15, 22, 123456, tzinfo=UTC)),
        ("2026-04-20T16:15:22+02:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T09:45:22-04:30", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22+00:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2026-04-20T14:15:22-00:00", datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)),
        ("2024-02-29T00:00:00Z", datetime(2024, 2, 29, tzinfo=UTC)),
        ("2026-04-20T14:15:22+23:59", datetime(2026, 4, 19, 14, 16, 22, tzinfo=UTC)),
    ],
)
def test_parse_rfc3339_accepts(value: str, expected: datetime) -> None:
    parsed = parse_rfc3339(value)
    assert parsed is not None
    assert parsed.tzinfo is not None
    assert parsed == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "2026-04-20",
        "2026-04-20T14:15:22",  # no zone
        "2026-04-20 14:15:22Z",  # space separator
        "2026-04-20t14:15:22Z",
        "2026-04-20T14:15:22z",
        "2026-04-20T14:15Z",
        "2026-4-20T14:15:22Z",
        "2026-04-20T14:15:22.Z",
        "2026-04-20T14:15:22 02:00",  # an unencoded + arrives as a space
        "2026-04-20T14:15:22+0200",
        "2026-04-20T14:15:22+02",
        "2026-13-01T00:00:00Z",
        "2026-02-30T00:00:00Z",
        "2025-02-29T00:00:00Z",
        "2026-04-20T24:00:00Z",
        "2026-04-20T14:60:00Z",
        "2026-04-20T14:15:60Z",
        "2026-04-20T14:15:22+24:00",
        "2026-04-20T14:15:22+02:60",
        "0000-01-01T00:00:00Z",
        "2026-04-20T14:15:22Z\n",
        "\uff12026-04-20T14:15:22Z",
        "yesterday",
        "1713622522",
    ],
)
def test_parse_rfc3339_refuses(value: str) -> None:
    assert parse_rfc3339(value) is None


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=st.just(UTC)
    )
)
def test_parse_rfc3339_round_trips_isoformat(when: datetime) -> None:
    text = when.isoformat().replace("+00:00", "Z")
    assert parse_rfc3339(text) == when


@given(st.text(max_size=40))
def test_parse_rfc3339_never_raises(value: str) -> None:
    parsed = parse_rfc3339(value)
    assert parsed is None or parsed.tzinfo is not None


def test_rfc3339_seconds_renders_utc_at_second_precision() -> None:
    plus_two = timezone(timedelta(hours=2))
    at = datetime(2026, 4, 20, 16, 15, 22, 987654, tzinfo=plus_two)
    assert rfc3339_seconds(at) == "2026-04-20T14:15:22Z"


def test_rfc3339_renders_utc_at_full_precision_with_z() -> None:
    at = datetime(2026, 4, 20, 14, 15, 22, 5, tzinfo=UTC)
    assert rfc3339(at) == "2026-04-20T14:15:22.000005Z"
    assert parse_rfc3339(rfc3339(at)) == at


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)


def test_wall_clock_rendering_lives_only_in_the_times_module() -> None:
    package = Path(artemis.__file__).parent
    rendering = re.compile(r"\.strftime\(|\.isoformat\(\)\.replace\(")
    found = [
        str(path.relative_to(package))
        for path in sorted(package.rglob("*.py"))
        if path.name != "times.py" and rendering.search(path.read_text())
    ]
    assert found == []
