"""Identity and the authorization gates.

Bearer routes: the GitHub token is validated first, then the route's gate. A GitHub Actions
OIDC token (any JWS: a GitHub token never is one) is taken by init alone, which verifies it and
matches it against the site's trust rules (`require_workflow`); every other bearer route refuses
it. Session routes: the deploy-session JWT is verified, the token's site must still have teams,
and what granted the session must still stand: the team must still be one of the site's, the
trust rule must still exist (so removing either ends its sessions at once, not when they
expire).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from artemis import request_headers, session, trust_rules
from artemis.db import trust_rules as trust_db
from artemis.errors import (
    ArtemisError,
    DependencyError,
    JwtWrongDeploy,
    Misconfigured,
    MissingBearer,
    OidcWrongRoute,
    SiteUnauthorized,
    TrustAlias,
    TrustEnvironment,
    TrustNoRules,
    TrustPullRequest,
    TrustRef,
    TrustRepository,
    TrustRepositoryId,
    TrustRuleRemoved,
    TrustWorkflow,
    UserUnauthorized,
)
from artemis.keys import Slug
from artemis.observability import logger
from artemis.oidc_claims import OidcClaims, looks_like_oidc
from artemis.runtime import Runtime
from artemis.services.context import Caller, WorkflowToken

if TYPE_CHECKING:
    from artemis.github import GitHubClient


def authenticate(github: GitHubClient, authorization: str | None) -> Caller:
    """A GitHub-token caller; an OIDC token is refused (only init takes one)."""
    caller = authenticate_publisher(github, authorization)
    if isinstance(caller, WorkflowToken):
        raise OidcWrongRoute()
    return caller


def authenticate_publisher(
    github: GitHubClient, authorization: str | None
) -> Caller | WorkflowToken:
    """Init's caller: a GitHub-token caller, or a workflow's OIDC token, verified later by
    `require_workflow` (which needs the site the body names)."""
    token = request_headers.bearer_token(authorization)
    if token is None:
        raise MissingBearer()
    if looks_like_oidc(token):
        return WorkflowToken(token)
    return Caller(login=github.identity(token), token=token)


# trust_rules.mismatch's reasons, as the API's codes.
_MISMATCH: dict[str, type[ArtemisError]] = {
    "no_rules": TrustNoRules,
    "repository": TrustRepository,
    "repository_id": TrustRepositoryId,
    "workflow": TrustWorkflow,
    "environment": TrustEnvironment,
    "ref": TrustRef,
}


def require_workflow(
    rt: Runtime, workflow: WorkflowToken, site: Slug
) -> tuple[OidcClaims, trust_rules.TrustRule]:
    """Verify a workflow's token and match it against `site`'s trust rules: the run's identity
    and the rule that admits it. The token is spent only when a rule admits it, and the
    site's rules are read only once the token's signature verified."""

    def admit(claims: OidcClaims) -> trust_rules.TrustRule:
        try:
            with rt.db.transaction() as conn:
                rules = [row.rule for row in trust_db.for_site(conn, site)]
        except Exception as err:
            raise DependencyError("pg_read_failed") from err
        rule = trust_rules.match(rules, claims.claims)
        if rule is None:
            reason = trust_rules.mismatch(rules, claims.claims)
            raise _MISMATCH[reason](detail={"repository": claims.repository})
        if not trust_rules.publishes_anywhere(rule.aliases, claims.event_name):
            raise TrustPullRequest(f"rule {rule.id} lists production alone")
        return rule

    return rt.oidc.verify(workflow.token, lambda claims: (claims, admit(claims)))


def require_publish(claims: session.SessionClaims, alias: str) -> None:
    """A workflow's session publishes only to the aliases its trust rule lists, never to
    production from a pull request's run; a person's session is not limited here."""
    grant = claims.workflow
    if grant is None:
        return
    if alias == "production" and grant.event in trust_rules.PULL_REQUEST_EVENTS:
        raise TrustPullRequest()
    if not trust_rules.allows_aliases(grant.aliases, alias, grant.event):
        raise TrustAlias(
            f"trust rule {grant.rule} publishes to {', '.join(grant.aliases)}, not {alias}",
            detail={"alias": alias, "allowed": list(grant.aliases)},
        )


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
    if claims.workflow is not None:
        _require_rule(rt, Slug(claims.site), claims.workflow.rule)
        if deploy_id != claims.deploy_id:
            raise JwtWrongDeploy()
        return claims
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


def _require_rule(rt: Runtime, site: Slug, rule_id: str) -> None:
    """The trust rule that granted a workflow's session must still exist (its rows go with
    the site's registration, so a deregistered site ends them too)."""
    try:
        with rt.db.transaction() as conn:
            held = trust_db.exists(conn, site, rule_id)
    except Exception as err:
        raise DependencyError("registry_read_failed") from err
    if not held:
        raise TrustRuleRemoved()
