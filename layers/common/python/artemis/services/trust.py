"""Trust rules per site (issue 15): list, add and remove the rules that will let GitHub
Actions workflow runs publish without a person's token (the rules: artemis.trust_rules).

Writes are the registry team's (`REGISTRY_AUTHZ_TEAM`), like registering a site: a rule
grants publishing, so a site's own teams cannot widen it. Reading is also open to the
site's teams, who need to see why a run was or was not trusted.
"""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from artemis import bodies, site_names, trust_rules
from artemis.db import sites as sites_db
from artemis.db import trust_rules as trust_db
from artemis.errors import (
    AlreadyExists,
    DependencyError,
    InvalidSlug,
    InvalidTrustRule,
    NotFound,
    TrustRuleLimit,
    TrustRuleNotFound,
)
from artemis.keys import Slug
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_site_member, require_team
from artemis.services.context import Caller, RequestContext
from artemis.times import rfc3339

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import TrustRule


def rule_json(row: trust_db.TrustRuleRow) -> TrustRule:
    from artemis.responses import TrustRule

    rule = row.rule
    return TrustRule(
        id=rule.id, site=row.site, repository=rule.repository, repositoryId=rule.repository_id,
        workflow=rule.workflow, environment=rule.environment, ref=rule.ref,
        aliases=list(rule.aliases), createdAt=rfc3339(row.created_at), createdBy=row.created_by,
    )  # fmt: skip


def _slug(slug: str) -> Slug:
    # Reserved names are not refused: an existing site may carry one (as DELETE allows).
    if not site_names.is_slug(slug, frozenset()):
        raise InvalidSlug()
    return Slug(slug)


def list_rules(rt: Runtime, caller: Caller, slug: str) -> list[TrustRule]:
    """Registry-team members, or members of one of the site's teams (the per-site gate, so an
    unregistered slug is `403 site_unauthorized` for them; `404 not_found` for the registry
    team, as on the registry routes). Authorized before anything is read."""
    site = _slug(slug)
    if not rt.github.is_member(caller.login, rt.settings.registry_authz_team, caller.token):
        require_site_member(rt, caller, site)
    try:
        with rt.db.transaction() as conn:
            registered = sites_db.get(conn, site) is not None
            rows = trust_db.for_site(conn, site) if registered else []
    except Exception as err:
        raise DependencyError("registry_read_failed") from err
    if not registered:
        raise NotFound(f"site {slug!r} is not registered")
    return [rule_json(row) for row in rows]


def add_rule(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_body: bytes
) -> TrustRule:
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    site = _slug(slug)
    body = bodies.parse(bodies.TrustRuleBody, raw_body)
    try:
        spec = trust_rules.check_rule(
            repository=body.repository, repository_id=body.repository_id,
            workflow=body.workflow, environment=body.environment, ref=body.ref,
            aliases=body.aliases,
        )  # fmt: skip
    except trust_rules.InvalidRuleField as err:
        raise InvalidTrustRule(str(err), detail={"field": err.field}) from None
    rule_id = "tr_" + secrets.token_hex(10)
    try:
        with rt.db.transaction() as conn:
            row = trust_db.insert(conn, site, rule_id, spec, caller.login,
                                  limit=trust_rules.MAX_RULES_PER_SITE)  # fmt: skip
    except trust_db.SiteMissing:
        raise NotFound(f"site {slug!r} is not registered") from None
    except trust_db.RuleLimit:
        raise TrustRuleLimit(
            f"site {slug!r} holds {trust_rules.MAX_RULES_PER_SITE} trust rules; remove one first"
        ) from None
    except trust_db.RuleDuplicate as dup:
        raise AlreadyExists(f"an identical trust rule exists: {dup.rule_id}") from None
    except Exception as err:
        raise DependencyError("registry_write_failed") from err
    answer = rule_json(row)
    audit.record(rt, ctx, "site.trust.add", site=site, detail=_detail(answer))
    return answer


def remove_rule(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, rule_id: str
) -> TrustRule:
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    site = _slug(slug)
    if not trust_rules.is_rule_id(rule_id):
        raise TrustRuleNotFound()  # never a valid id, so never a rule
    try:
        with rt.db.transaction() as conn:
            registered = sites_db.get(conn, site) is not None
            row = trust_db.delete(conn, site, rule_id) if registered else None
    except Exception as err:
        raise DependencyError("registry_write_failed") from err
    if not registered:
        raise NotFound(f"site {slug!r} is not registered")
    if row is None:
        raise TrustRuleNotFound()
    answer = rule_json(row)
    audit.record(rt, ctx, "site.trust.remove", site=site, detail=_detail(answer))
    return answer


def _detail(answer: TrustRule) -> dict[str, object]:
    return answer.model_dump(mode="json", exclude_none=True, exclude={"site"})
