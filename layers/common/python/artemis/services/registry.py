"""The registry routes: list, register, update and remove sites (the registry team's gate),
over the sites table. Authorization reads the snapshot in `artemis.db.registry_snapshot`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from artemis import bodies, site_names
from artemis.db import sites as sites_db
from artemis.db.lock import site_lock
from artemis.errors import (
    AlreadyExists,
    DependencyError,
    InvalidSlug,
    InvalidTeam,
    NotFound,
)
from artemis.keys import Slug
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_team, sees_actors
from artemis.services.context import Caller, RequestContext
from artemis.times import rfc3339

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import SiteRow


def site_json(row: sites_db.SiteRow, *, show_actor: bool) -> SiteRow:
    from artemis.responses import SiteRow

    return SiteRow(
        slug=row.slug,
        teams=list(row.teams),
        createdAt=rfc3339(row.created_at),
        updatedAt=rfc3339(row.updated_at),
        createdBy=row.created_by if show_actor else "",
    )


def _check_slug(rt: Runtime, slug: str) -> Slug:
    if not site_names.is_slug(slug, frozenset()):
        raise InvalidSlug()
    if slug in rt.settings.reserved_slugs:  # it matches the pattern: say why it is refused
        raise InvalidSlug(f"slug {slug!r} is reserved (RESERVED_SLUGS)")
    return Slug(slug)


def _check_teams(teams: list[str]) -> list[str]:
    for team in teams:
        if not site_names.is_team(team):
            raise InvalidTeam(f"invalid team {team!r}")
    return teams


def list_sites(rt: Runtime, caller: Caller) -> list[SiteRow]:
    """Registry-team members see every site; others only sites of teams they belong to."""
    try:
        with rt.db.transaction() as conn:
            rows = sites_db.list_all(conn)
    except Exception as err:
        raise DependencyError("registry_read_failed") from err
    if _is_member(rt, caller, rt.settings.registry_authz_team):
        mine = _my_teams(rt, caller)
    else:
        mine = set(rt.github.teams(caller.token))
        rows = [row for row in rows if mine.intersection(row.teams)]
    auditor = sees_actors(rt, caller)
    return [
        site_json(row, show_actor=auditor or bool(mine.intersection(row.teams))) for row in rows
    ]


def _is_member(rt: Runtime, caller: Caller, team: str) -> bool:
    return rt.github.is_member(caller.login, team, caller.token)


def _my_teams(rt: Runtime, caller: Caller) -> set[str]:
    """The caller's teams for actor visibility only: a failed listing shows no actors."""
    try:
        return set(rt.github.teams(caller.token))
    except Exception:
        logger.warning("team listing failed; hiding actors")
        return set()


def _shows_actor(rt: Runtime, caller: Caller, row: sites_db.SiteRow) -> bool:
    """Actors are visible to the site's team members and the audit team."""
    return sees_actors(rt, caller) or bool(_my_teams(rt, caller).intersection(row.teams))


def register(rt: Runtime, ctx: RequestContext, caller: Caller, raw_body: bytes) -> SiteRow:
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    body = bodies.parse(bodies.RegisterBody, raw_body)
    slug = body.slug
    site = _check_slug(rt, slug)
    chosen = _check_teams(list(body.teams) if body.teams else [rt.settings.registry_authz_team])
    try:
        with rt.db.transaction() as conn:
            row = sites_db.insert(conn, site, chosen, caller.login)
    except sites_db.SiteExists:
        raise AlreadyExists(f"site {slug!r} is already registered") from None
    except Exception as err:
        raise DependencyError("registry_write_failed") from err
    rt.snapshot.invalidate()
    audit.record(
        rt, ctx, "site.register", site=site, detail={"teams": chosen, "createdBy": caller.login}
    )
    return site_json(row, show_actor=True)


def update(rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_body: bytes) -> SiteRow:
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    site = _check_slug(rt, slug)
    teams = bodies.parse(bodies.TeamsBody, raw_body).teams
    if not teams:
        raise InvalidTeam("teams must list at least one team")
    chosen = _check_teams(list(teams))
    with site_lock(rt.db.conninfo, rt.settings.key_layout.dirname(site)):
        # A failed read only makes the audit "before" unknown. It runs in its
        # own transaction: a failed statement would abort a shared one, and the update with it.
        before: Any = "unknown"
        try:
            with rt.db.transaction() as conn:
                current = sites_db.get(conn, site)
            if current is not None:
                before = list(current.teams)
        except Exception:
            logger.exception("site.update: reading the current teams failed; before is unknown")
        try:
            with rt.db.transaction() as conn:
                row = sites_db.update_teams(conn, site, chosen)
        except Exception as err:
            raise DependencyError("registry_write_failed") from err
    if row is None:
        raise NotFound(f"site {slug!r} is not registered")
    rt.snapshot.invalidate()
    audit.record(rt, ctx, "site.update", site=site, detail={"before": before, "after": chosen})
    return site_json(row, show_actor=_shows_actor(rt, caller, row))
