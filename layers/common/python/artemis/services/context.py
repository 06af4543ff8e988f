"""Who is asking and for which request: what every service needs besides its dependencies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A GitHub-authenticated caller. The token stays in request memory for team probes."""

    login: str
    token: str


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    caller: Caller | None = None
