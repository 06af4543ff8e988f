"""Named previews: list, read and remove the per-branch and per-pull-request aliases a finalize
with `alias` publishes. Each is an alias object (the truth a visitor is served from) mirrored
by an alias row (who moved it, and when: what the listing and expiry read)."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from artemis.db import aliases as aliases_db
from artemis.db.aliases import AliasRow
from artemis.db.lock import site_lock
from artemis.errors import DependencyError, NoAlias
from artemis.keys import Slug
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.aliases import parse_named_alias, record_alias_removal
from artemis.services.auth import require_site_member
from artemis.services.context import Caller, RequestContext
from artemis.times import rfc3339_seconds, utcnow

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import Preview, PreviewRemoved


def _entry(rt: Runtime, slug: Slug, name: str, deploy_id: str, row: AliasRow | None) -> Preview:
    from artemis.responses import Preview

    ttl = timedelta(seconds=rt.settings.preview_ttl)
    return Preview(
        name=name,
        deployId=deploy_id,
        url=rt.settings.key_layout.public_url(slug, name),
        updatedAt=rfc3339_seconds(row.updated_at) if row else None,
        updatedBy=(row.updated_by or None) if row else None,
        expiresAt=rfc3339_seconds(row.updated_at + ttl) if row else None,
    )


def list_previews(rt: Runtime, caller: Caller, slug: str) -> list[Preview]:
    """The site's named previews by name, from the index (one query): what moved them last and
    when they expire are recorded there."""
    require_site_member(rt, caller, slug)
    site = rt.settings.key_layout.dirname(Slug(slug))
    try:
        with rt.db.transaction() as conn:
            rows = aliases_db.named_for_site(conn, site)
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    return [_entry(rt, Slug(slug), row.name, row.deploy_id, row) for row in rows]


def read_preview(rt: Runtime, caller: Caller, slug: str, raw_name: str) -> Preview:
    """One named preview: the deploy its alias object names (what visitors are served), with
    its row's history when the index has it."""
    name = parse_named_alias(raw_name)  # before authorization, as the alias read does
    require_site_member(rt, caller, slug)
    layout = rt.settings.key_layout
    site = layout.dirname(Slug(slug))
    target = rt.bucket.get_alias(layout.alias_key(site, name))
    if target is None:
        raise NoAlias()
    try:
        with rt.db.transaction() as conn:
            row = aliases_db.get(conn, site, name)
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    return _entry(rt, Slug(slug), name, target, row if row and row.deploy_id == target else None)


def remove_preview(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_name: str
) -> PreviewRemoved:
    """Unpublish: the alias object, then its row (with the release stamp that keeps the deploy
    through the serve caches' lifetime). The deploy itself stays, under normal retention."""
    from artemis.responses import PreviewRemoved

    name = parse_named_alias(raw_name)
    require_site_member(rt, caller, slug)
    layout = rt.settings.key_layout
    site = layout.dirname(Slug(slug))
    key = layout.alias_key(site, name)
    with site_lock(rt.db.conninfo, site):
        target = rt.bucket.get_alias(key)
        if target is None:
            try:  # a row left by a removal whose index write failed: finish it
                with rt.db.transaction() as conn:
                    row = aliases_db.get(conn, site, name)
            except Exception as err:
                raise DependencyError("pg_read_failed") from err
            if row is None:
                raise NoAlias()
            target = row.deploy_id
        else:
            rt.bucket.delete_object(key)
        record_alias_removal(rt, site, name, target, utcnow(), by=caller.login)
    audit.record(rt, ctx, "site.preview.remove", site=slug, deploy_id=target, detail={"name": name})
    return PreviewRemoved(name=name, deployId=target, status="removed")
