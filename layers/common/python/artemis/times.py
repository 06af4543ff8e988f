"""Wall-clock time on the wire: the current UTC instant, RFC 3339 rendering (the two forms the
API answers with) and RFC 3339 parsing (the audit log's `since`). Pure: stdlib only, no I/O."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339_seconds(at: datetime) -> str:
    """`2026-04-20T14:15:22Z`: second precision, UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(at: datetime) -> str:
    """Full precision UTC with `Z` (registry and audit rows)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def parse_rfc3339(value: str) -> datetime | None:
    """`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` → an aware datetime, else None.

    As Go's time.RFC3339 parses it: upper-case `T` and `Z` only, any number of fraction
    digits (kept to microseconds), second 60 refused, offsets below 24:00. Year 0000 is
    refused because datetime cannot hold it.
    """
    match = _RFC3339_RE.fullmatch(value)
    if match is None:
        return None
    year, month, day, hour, minute, second = (int(match.group(i)) for i in range(1, 7))
    fraction, zulu, sign, off_hour, off_minute = match.group(7, 8, 9, 10, 11)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    if zulu:
        tz = UTC
    else:
        oh, om = int(off_hour), int(off_minute)
        if oh > 23 or om > 59:
            return None
        offset = timedelta(hours=oh, minutes=om)
        tz = timezone(-offset if sign == "-" else offset)
    try:
        return datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None
