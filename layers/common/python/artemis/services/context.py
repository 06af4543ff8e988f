"""Who is asking and for which request: what every service needs besides its dependencies."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Caller:
    """A GitHub-authenticated caller. The token stays in request memory for team probes."""

    login: str
    token: str


@dataclass(frozen=True)
class WorkflowToken:
    """A bearer token shaped as a GitHub Actions OIDC token, not yet verified: only init takes
    one, and verifies it against the trust rules of the site its body names."""

    token: str


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    caller: Caller | None = None
