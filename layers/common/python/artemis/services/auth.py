"""Identity and the authorization gates.

Bearer routes: the GitHub token is validated first, then the route's gate. Session routes:
the deploy-session JWT is verified, the token's site must still have teams, and the
team that granted the session must still be one of them (so removing a team from a site ends
its sessions at once, not when they expire).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from artemis import request_headers, session
from artemis.errors import (
    JwtWrongDeploy,
    Misconfigured,
    MissingBearer,
    SiteUnauthorized,
    UserUnauthorized,
)
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services.context import Caller

if TYPE_CHECKING:
    from artemis.github import GitHubClient


def authenticate(github: GitHubClient, authorization: str | None) -> Caller:
    token = request_headers.bearer_token(authorization)
    if token is None:
        raise MissingBearer()
    return Caller(login=github.identity(token), token=token)


def require_team(github: GitHubClient, caller: Caller, team: str) -> None:
    if not team.strip():
        raise Misconfigured()
    if not github.is_member(caller.login, team, caller.token):
        raise UserUnauthorized()


def require_site_member(rt: Runtime, caller: Caller, slug: str) -> str:
    """The registry team that grants `caller` this site (first match in registry order).

    The snapshot may lag another environment's registry change, so before refusing, the slug
    is read through to Postgres (bounded; see RegistrySnapshot.read_through)."""
    teams = rt.snapshot.teams(slug)
    if teams:
        granted = rt.github.first_team_member_of(caller.login, teams, caller.token)
        if granted is not None:
            return granted
    fresh = rt.snapshot.read_through(slug)
    if not fresh:
        raise SiteUnauthorized()
    granted = (
        rt.github.first_team_member_of(caller.login, fresh, caller.token)
        if fresh != teams
        else None
    )
    if granted is None:
        raise UserUnauthorized()
    return granted


def sees_actors(rt: Runtime, caller: Caller) -> bool:
    """Actor names are shown to audit-team members only; any failure hides them (fail closed)."""
    try:
        return rt.repo_github.is_member(
            caller.login, rt.settings.audit_read_authz_team, caller.token
        )
    except Exception:
        logger.warning("actor visibility probe failed; hiding actors")
        return False


def authenticate_session(
    rt: Runtime, authorization: str | None, deploy_id: str, *, now: float
) -> session.SessionClaims:
    token = request_headers.bearer_token(authorization)
    if token is None:
        raise MissingBearer()
    claims = session.verify(token, rt.settings.jwt_signing_key.encode(), now=now)
    teams: Sequence[str] = rt.snapshot.teams(claims.site)
    if claims.team not in teams:  # the snapshot may lag: ask Postgres before refusing
        teams = rt.snapshot.read_through(claims.site)
    if not teams:
        raise SiteUnauthorized()
    if claims.team not in teams:  # the granting team was removed from the site
        raise UserUnauthorized("the team that granted this session no longer owns the site")
    if deploy_id != claims.deploy_id:
        raise JwtWrongDeploy()
    return claims
