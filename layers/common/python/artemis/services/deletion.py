"""Deletion and recovery: deploy delete, restore, trash listing, bare site delete and site
purge.

A tombstone row is written before any byte moves, and marked `moved` only once the move
completed, so a failed or partial move is always visible to the jobs that re-drive it.
Moves are parallel and resumable; repeating a delete or purge resumes the move and keeps the
tombstone's original `trashed_at`, so a retry never extends the recovery window.

The content index (`deploy_files`) follows: a delete or purge drops the rows of what it
removes in the transaction that records the tombstone (no copy is ever offered from trash),
and a restore writes the deploy's rows back from its completion marker.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from psycopg import Connection

from artemis import deploy_ids, hook_events, site_names
from artemis.db import aliases as aliases_db
from artemis.db import content as content_db
from artemis.db import deploy_lock
from artemis.db import deploys as deploys_db
from artemis.db import hooks as hooks_db
from artemis.db import sites as sites_db
from artemis.db import tombstones as tombstones_db
from artemis.db.content import FileDigest
from artemis.db.lock import site_lock
from artemis.errors import (
    AlreadyPurged,
    ArtemisError,
    BadRequest,
    DependencyError,
    DeployAliased,
    DeployNotFound,
    InvalidSlug,
    NotFound,
    RestoreTargetOccupied,
    SiteGone,
    StorageError,
)
from artemis.keys import (
    ALIAS_NAMES,
    MARKER_NAME,
    Dirname,
    Slug,
    finalize_digests,
    finalize_record,
)
from artemis.observability import logger
from artemis.reconcile_plan import Listed, trusted_digests
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_site_member, require_team
from artemis.services.context import Caller, RequestContext
from artemis.storage.objects import MoveIncomplete, ObjectInfo
from artemis.times import rfc3339_seconds, utcnow

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import DeployDeleted, DeployRestored, SitePurged, TrashEntry


def _deploy_target(rt: Runtime, caller: Caller, slug: str, deploy_id: str) -> Dirname:
    require_site_member(rt, caller, slug)
    if not deploy_ids.is_deploy_id(deploy_id):
        raise BadRequest("deployId must match ^\\d{8}-\\d{6}-[A-Za-z0-9-]{1,64}$")
    return rt.settings.key_layout.dirname(Slug(slug))


def _mark_moved(rt: Runtime, site: Dirname, deploy_id: str) -> None:
    try:
        with rt.db.transaction() as conn:
            tombstones_db.mark_moved(conn, site, deploy_id)
    except Exception:  # the move is done; a pending mark only means a later no-op re-drive
        logger.exception("tombstone mark_moved failed", extra={"site": site, "id": deploy_id})


def delete_deploy(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, deploy_id: str
) -> DeployDeleted:
    from artemis.responses import DeployDeleted

    site = _deploy_target(rt, caller, slug, deploy_id)
    try:
        with rt.db.transaction() as lock_conn:
            # The deploy lock (exclusive, before the site lock, as finalize takes them): the
            # uploads in flight finish before the tombstone lands, and every later upload,
            # presign or finalize of the deploy finds the tombstone and is refused.
            deploy_lock.hold(lock_conn, site, deploy_id)
            moved = _delete_locked(rt, slug, site, deploy_id, caller.login)
    except ArtemisError:
        raise
    except Exception as err:  # the lock connection failed after the delete ran
        raise DependencyError("deploy_lock_failed") from err
    audit.record(
        rt, ctx, "site.deploy.delete", site=slug, deploy_id=deploy_id, detail={"moved": moved}
    )
    return DeployDeleted(site=slug, deployId=deploy_id, status="tombstoned", moved=moved)


def _delete_locked(rt: Runtime, slug: str, site: Dirname, deploy_id: str, actor: str) -> int:
    layout = rt.settings.key_layout
    with site_lock(rt.db.conninfo, site):
        _refuse_alias_objects(rt, slug, site, deploy_id)
        prefix = layout.deploy_prefix(site, deploy_id)
        try:  # one listing both measures the deploy and tells whether it exists at all
            listing = rt.bucket.list_keys(prefix)
            size, present = sum(obj.size for obj in listing), bool(listing)
        except StorageError:
            size, present = 0, True  # measuring is not a gate; the move below decides
        try:
            with rt.db.transaction() as conn:
                prior = tombstones_db.get(conn, site, deploy_id)
                if not present and prior is None:
                    raise DeployNotFound()  # never tombstone a deploy that never existed
                tombstones_db.tombstone_deploy(conn, site, deploy_id, size)
                dropped = content_db.drop_deploys(conn, site, [deploy_id])
                if prior is None:  # a repeated delete resumes the move; it was announced
                    data = {"deployId": deploy_id, "actor": actor}
                    hooks_db.announce(conn, layout, site, hook_events.DEPLOY_DELETED, data,
                                      utcnow())  # fmt: skip
        except ArtemisError:
            raise
        except Exception as err:
            raise DependencyError("tombstone_record_failed") from err
        logger.info(
            "deploy.delete: index rows dropped",
            extra={"site": site, "id": deploy_id, "index_rows_dropped": dropped},
        )
        moved = rt.bucket.move_prefix(prefix, layout.deploy_trash_prefix(site, deploy_id))
        _mark_moved(rt, site, deploy_id)
    return moved


def restore(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, deploy_id: str
) -> DeployRestored:
    from artemis.responses import DeployRestored

    site = _deploy_target(rt, caller, slug, deploy_id)
    layout = rt.settings.key_layout
    live = layout.deploy_prefix(site, deploy_id)
    trash = layout.deploy_trash_prefix(site, deploy_id)
    with site_lock(rt.db.conninfo, site):
        try:
            with rt.db.transaction() as conn:
                registered = sites_db.get(conn, Slug(slug))
                tombstone = tombstones_db.get(conn, site, deploy_id)
        except Exception as err:
            raise DependencyError("registry_read_failed") from err
        if registered is None:
            raise SiteGone()
        if tombstone is None:  # nothing to restore; answer from the live bytes
            if not _has(rt, live):
                raise AlreadyPurged()
            listing = _listing(rt, live)
            size = 0 if listing is None else sum(obj.size for obj in listing)
            audit.record(rt, ctx, "site.deploy.restore", site=slug, deploy_id=deploy_id,
                         outcome="idempotent", detail={"moved": 0})  # fmt: skip
            return DeployRestored(
                site=slug, deployId=deploy_id, status="restored", moved=0, bytes=size
            )
        _refuse_aliased(rt, slug, site, deploy_id)
        if tombstone.move_state == "restoring":
            # A restore cut off part-way: what sits at the live prefix is what it moved back.
            if not _has(rt, trash) and not _has(rt, live):
                raise AlreadyPurged()
        else:
            # Never write over live objects: they are not this deploy's trashed copy (a
            # delete's unfinished move, or bytes written after the delete).
            if _has(rt, live):
                raise RestoreTargetOccupied()
            if not _has(rt, trash):
                raise AlreadyPurged()
            try:
                with rt.db.transaction() as conn:
                    tombstones_db.mark_restoring(conn, site, deploy_id)
            except Exception as err:
                raise DependencyError("tombstone_record_failed") from err
        moved = rt.bucket.move_prefix(trash, live)
        listing = _listing(rt, live)
        size, has_marker = _measure(rt, live, listing)
        rows = _index_rows(rt, live, listing) if has_marker else []
        try:
            with rt.db.transaction() as conn:
                deploys_db.upsert_finalized(
                    conn, site, deploy_id, utcnow(), size, has_marker=has_marker
                )
                deploys_db.restore_metadata(conn, site, deploy_id)  # from the tombstone
                tombstones_db.clear(conn, site, deploy_id)
                # Rewritten, not merged: whatever rows the deploy had are replaced by what
                # its marker vouches for now.
                content_db.drop_deploys(conn, site, [deploy_id])
                content_db.record(conn, site, deploy_id, rows)
                data = {"deployId": deploy_id, "actor": caller.login}
                hooks_db.announce(conn, layout, site, hook_events.DEPLOY_RESTORED, data,
                                  utcnow())  # fmt: skip
        except Exception as err:
            raise DependencyError("restore_failed") from err
    audit.record(rt, ctx, "site.deploy.restore", site=slug, deploy_id=deploy_id,
                 detail={"moved": moved, "bytes": size})  # fmt: skip
    return DeployRestored(site=slug, deployId=deploy_id, status="restored", moved=moved, bytes=size)


def _refuse_aliased(rt: Runtime, slug: str, site: Dirname, deploy_id: str) -> None:
    """An alias (object or row, fixed or named) naming a trashed deploy is drift; restoring
    under it would change what it serves without an alias move."""
    _refuse_alias_objects(rt, slug, site, deploy_id)
    try:
        with rt.db.transaction() as conn:
            rows = aliases_db.for_site(conn, site)
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    for row in rows:
        if row.deploy_id == deploy_id:
            raise DeployAliased(site=slug, deployId=deploy_id, alias=row.name)


def _refuse_alias_objects(rt: Runtime, slug: str, site: Dirname, deploy_id: str) -> None:
    """409 deploy_aliased, naming the alias, when an alias OBJECT names the deploy: the fixed
    channels first, then the named previews by name (one listing of their folder)."""
    layout = rt.settings.key_layout
    for fixed in ALIAS_NAMES:
        if rt.bucket.get_alias(layout.alias_key(site, fixed)) == deploy_id:
            raise DeployAliased(site=slug, deployId=deploy_id, alias=fixed)
    named = rt.bucket.get_aliases(layout.named_alias_prefix(site))
    for name in sorted(named):
        if named[name] == deploy_id:
            raise DeployAliased(site=slug, deployId=deploy_id, alias=name)


def _listing(rt: Runtime, live: str) -> list[ObjectInfo] | None:
    """The live deploy's objects, or None when listing fails: measuring is not a gate
    (the restore has already happened), a failure records 0 bytes."""
    try:
        return rt.bucket.list_keys(live)
    except StorageError:
        logger.warning("restore: measuring the live deploy failed; recording 0 bytes",
                       extra={"prefix": live})  # fmt: skip
        return None


def _measure(rt: Runtime, live: str, listing: list[ObjectInfo] | None) -> tuple[int, bool]:
    """The restored deploy's size and whether its completion marker is present: a
    restored deploy counts as finished only if its marker says so.

    Without a listing the marker is probed directly; a failing probe fails the restore
    (the tombstone stays, so a repeat finishes it) rather than guessing.
    """
    if listing is None:
        return 0, rt.bucket.head(live + MARKER_NAME) is not None
    return sum(obj.size for obj in listing), any(obj.key == live + MARKER_NAME for obj in listing)


def _index_rows(rt: Runtime, live: str, listing: list[ObjectInfo] | None) -> list[FileDigest]:
    """The content index rows of a restored deploy, from the digests its completion marker
    recorded at finalize: only for a path the listing shows with the ETag the marker recorded
    for it (an object a presigned POST overwrote after finalize is not what was hashed; the
    move to trash and back copies single-part objects, which keeps their ETag), with the
    listing's size.

    A marker without digests (finalized before the index existed), an unreadable marker or a
    failed listing restores the deploy with no rows: it is then simply never a copy source
    until backfill rebuilds its rows from its objects. Never a reason to fail the restore.
    """
    if listing is None:
        return []
    try:
        marker = rt.bucket.get(live + MARKER_NAME)
    except StorageError:
        logger.warning("restore: reading the marker failed; no content index rows",
                       extra={"prefix": live})  # fmt: skip
        return []
    listed = {
        obj.key[len(live) :]: Listed(obj.etag, obj.size)
        for obj in listing
        if obj.key != live + MARKER_NAME
    }
    trusted = trusted_digests(finalize_record(marker), finalize_digests(marker), listed, listed)
    return [FileDigest(p, bytes.fromhex(d), listed[p].size) for p, d in trusted.items()]


def _has(rt: Runtime, prefix: str) -> bool:
    try:
        return rt.bucket.has_prefix(prefix)
    except StorageError as err:
        raise StorageError("r2_has_prefix_failed") from err


def trash(rt: Runtime, caller: Caller, slug: str) -> list[TrashEntry]:
    from artemis.responses import TrashEntry

    require_site_member(rt, caller, slug)
    site = rt.settings.key_layout.dirname(Slug(slug))
    try:
        with rt.db.transaction() as conn:
            rows = tombstones_db.for_site(conn, site)
    except Exception as err:
        raise DependencyError("pg_read_failed") from err
    recovery = timedelta(days=rt.settings.cleanup_recovery_days)
    return [
        TrashEntry(
            deployId=row.id,
            trashedAt=rfc3339_seconds(row.trashed_at),
            expiresAt=rfc3339_seconds(row.trashed_at + recovery),
            bytes=row.bytes,
        )
        for row in rows
    ]


def remove_site(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, purge: str | None
) -> SitePurged | None:
    """`DELETE /api/site/{slug}`: the bare delete (None → 204) or, with purge=true, the purge."""
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    if parse_purge(purge):
        return purge_site(rt, ctx, caller, slug)
    delete_site(rt, ctx, caller, slug)
    return None


def parse_purge(raw: str | None) -> bool:
    """Absent, `true` or `false` (any case); anything else is a 400, never a silent "no"."""
    if raw is None:
        return False
    value = raw.lower()
    if value not in ("true", "false"):
        raise BadRequest("purge must be true or false")
    return value == "true"


def _registry_slug(rt: Runtime, caller: Caller, slug: str) -> Slug:
    require_team(rt.github, caller, rt.settings.registry_authz_team)
    if not site_names.is_slug(slug, frozenset()):  # an existing reserved name may still be removed
        raise InvalidSlug()
    return Slug(slug)


def _unpublish(rt: Runtime, site: Dirname) -> int:
    """Move every alias object (both channels and each named preview) to trash, so the site
    and its previews stop serving within one cache TTL.

    Returns how many moved; a failure raises MoveIncomplete carrying the count so far.
    """
    layout = rt.settings.key_layout
    moved = 0
    try:  # every key in the folder, empty ones too: an empty alias object is still moved away
        listed = rt.bucket.list_keys(layout.named_alias_prefix(site))
    except StorageError as err:
        raise MoveIncomplete(moved) from err
    named = sorted({n for obj in listed if (n := layout.named_alias_of(site, obj.key))})
    for name in [*ALIAS_NAMES, *named]:
        src, dst = layout.alias_key(site, name), layout.alias_trash_key(site, name)
        try:
            if rt.bucket.move_object(src, dst):  # False: no such alias, nothing to move
                moved += 1
        except StorageError as err:
            raise MoveIncomplete(moved) from err
    return moved


def delete_site(rt: Runtime, ctx: RequestContext, caller: Caller, slug: str) -> None:
    """Take the lock, unpublish (the site stops serving), drop the registry row; deploy bytes
    stay, so registering the slug again and promoting brings the site back. Their deploy rows
    and content index rows stay with them: no deploy leaves, so nothing leaves the index."""
    site_slug = _registry_slug(rt, caller, slug)
    site = rt.settings.key_layout.dirname(site_slug)
    with site_lock(rt.db.conninfo, site):  # so no finalize can republish it meanwhile
        try:
            with rt.db.transaction() as conn:
                exists = sites_db.get(conn, site_slug) is not None
        except Exception as err:
            raise DependencyError("registry_read_failed") from err
        if not exists:
            raise NotFound(f"site {slug!r} is not registered")
        _unpublish(rt, site)  # a failure aborts the delete: never deregister a serving site
        try:
            with rt.db.transaction() as conn:
                aliases_db.delete_for_site(conn, site)
                _announce_site_deleted(rt, conn, site_slug, caller.login, purged=False)
                sites_db.delete(conn, site_slug)  # its trust rules cascade with it (sql/0013)
        except Exception as err:
            raise DependencyError("registry_write_failed") from err
    rt.snapshot.invalidate()
    audit.record(rt, ctx, "site.delete", site=slug)


class _PurgeFailed(Exception):
    """A purge stage failed after `moved` objects moved; `error` is what the client gets."""

    def __init__(self, stage: str, error: ArtemisError, moved: int) -> None:
        super().__init__(stage)
        self.stage, self.error, self.moved = stage, error, moved


def purge_site(rt: Runtime, ctx: RequestContext, caller: Caller, slug: str) -> SitePurged:
    """Tombstone, unpublish, move the whole tree to trash, verify, deregister.
    Every failing stage writes one `site.purge` failure row; a repeat resumes the move."""
    from artemis.responses import SitePurged

    site_slug = _registry_slug(rt, caller, slug)
    site = rt.settings.key_layout.dirname(site_slug)
    try:
        with site_lock(rt.db.conninfo, site):
            moved = _purge_locked(rt, site_slug, site, caller.login)
    except _PurgeFailed as failed:
        audit.record(rt, ctx, "site.purge", site=slug, outcome="failure",
                     detail={"stage": failed.stage, "moved": failed.moved})  # fmt: skip
        raise failed.error from failed
    rt.snapshot.invalidate()
    audit.record(rt, ctx, "site.purge", site=slug, detail={"moved": moved})
    return SitePurged(slug=slug, status="purged", moved=moved)


def _purge_locked(rt: Runtime, slug: Slug, site: Dirname, actor: str) -> int:
    layout = rt.settings.key_layout
    tree = f"{site}/"
    moved = 0
    try:
        with rt.db.transaction() as conn:
            tombstones_db.record_site_purge(conn, site)
            dropped = content_db.drop_site(conn, site)
    except Exception as err:
        raise _PurgeFailed("tombstone", DependencyError("tombstone_record_failed"), moved) from err
    logger.info(
        "site.purge: index rows dropped", extra={"site": site, "index_rows_dropped": dropped}
    )
    # `moved` counts every object this attempt moved, the alias objects included.
    try:
        moved = _unpublish(rt, site)
    except MoveIncomplete as err:
        raise _PurgeFailed("unpublish", StorageError("r2_move_failed"), err.moved) from err
    try:
        moved += rt.bucket.move_prefix(tree, layout.site_trash_prefix(site))
    except MoveIncomplete as err:
        raise _PurgeFailed("move", StorageError("r2_move_failed"), moved + err.moved) from err
    try:
        remaining = rt.bucket.has_prefix(tree)
    except StorageError as err:
        raise _PurgeFailed("verify", StorageError("r2_verify_failed"), moved) from err
    if remaining:
        incomplete = StorageError("r2_move_incomplete", "objects remain; repeat the purge")
        raise _PurgeFailed("incomplete", incomplete, moved)
    _mark_moved(rt, site, tombstones_db.SITE_PURGE_ID)
    try:
        with rt.db.transaction() as conn:
            if sites_db.get(conn, slug) is not None:  # not yet deregistered: announce it
                _announce_site_deleted(rt, conn, slug, actor, purged=True)
            sites_db.delete(conn, slug)  # an already-absent row counts as success
    except Exception as err:
        raise _PurgeFailed("registry", DependencyError("registry_write_failed"), moved) from err
    return moved


def _announce_site_deleted(
    rt: Runtime, conn: Connection, slug: Slug, actor: str, *, purged: bool
) -> None:
    """`site.deleted` to the site's webhooks, which then get nothing more (in the transaction
    that deregisters the site, before its row goes)."""
    dirname = rt.settings.key_layout.dirname(slug)
    data = {"actor": actor, "purged": purged}
    hooks_db.notify(conn, slug, dirname, hook_events.SITE_DELETED, data, utcnow())
    hooks_db.retire_site(conn, slug)
