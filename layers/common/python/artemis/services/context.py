"""Who is asking and for which request: what every service needs besides its dependencies."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime


@dataclass(frozen=True)
class Caller:
    """A GitHub-authenticated caller. The token stays in request memory for team probes."""

    login: str
    token: str


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    caller: Caller | None = None


def utcnow() -> datetime:
    return datetime.now(UTC)


def rfc3339_seconds(at: datetime) -> str:
    """`2026-04-20T14:15:22Z`: second precision, UTC."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(at: datetime) -> str:
    """Full precision UTC with `Z` (registry and audit rows)."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")
