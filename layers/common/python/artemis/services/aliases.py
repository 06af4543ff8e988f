"""Aliases: read, promote, rollback, and the one index transaction every alias move or removal
commits (the release stamp on the deploy the alias leaves, so retention keeps it for the serve
cache's lifetime, + the alias row + the outbox event).

Only a finished deploy goes live: a target needs its root `index.html` and its completion
marker. A body-less promote (what the published CLI still sends) takes the preview alias's
deploy."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from psycopg import Connection

from artemis import alias_names, bodies, deploy_ids, hook_events
from artemis.db import aliases as aliases_db
from artemis.db import deploys as deploys_db
from artemis.db import hooks as hooks_db
from artemis.db import outbox
from artemis.db.lock import site_lock
from artemis.errors import (
    AliasDrift,
    BadRequest,
    DependencyError,
    DeployIncomplete,
    DeployMissing,
    InvalidAlias,
    MissingIndex,
    NoAlias,
    NoPreview,
    PreviewMoved,
)
from artemis.keys import AliasName, Dirname, KeyLayout, Slug
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services import audit
from artemis.services.auth import require_site_member
from artemis.services.context import Caller, RequestContext
from artemis.times import utcnow

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import AliasMove, AliasResponse

INDEX_WRITE_ATTEMPTS = 3


def _index_write(rt: Runtime, site: Dirname, write: Callable[[Connection], None]) -> None:
    """Mirror an alias object's change into the index, with its `site.changed` event, in one
    transaction.

    The alias object already changed (the bucket is the truth), so a failure is retried and
    then answered as 502 index_write_failed: the index lags and reconcile repairs it.
    """
    for attempt in range(1, INDEX_WRITE_ATTEMPTS + 1):
        try:
            with rt.db.transaction() as conn:
                write(conn)
                outbox.enqueue_site_changed(conn, site)
            return
        except Exception as err:
            logger.exception("index write failed", extra={"site": site, "attempt": attempt})
            if attempt == INDEX_WRITE_ATTEMPTS:
                raise DependencyError(
                    "index_write_failed",
                    "the alias changed; the index lags and will be repaired by reconcile",
                ) from err
            time.sleep(0.2 * attempt)


def record_alias_move(
    rt: Runtime, site: Dirname, name: str, deploy_id: str, at: datetime,
    *, finalized_bytes: int | None = None, finalized_files: int | None = None,
    by: str | None = None, reason: str = "",
) -> None:  # fmt: skip
    """An alias PUT: the alias row (and, at finalize, the deploy's row), the release stamp
    on the deploy it left, and the webhook event: `deploy.finalized` at finalize (with the
    deploy's recorded context), else `alias.moved` (`reason`: promote, rollback)."""
    layout = rt.settings.key_layout

    def write(conn: Connection) -> None:
        if finalized_bytes is not None:
            deploys_db.upsert_finalized(
                conn, site, deploy_id, at, finalized_bytes,
                finalized_at=at, files=finalized_files,
            )  # fmt: skip
        previous = aliases_db.upsert(conn, site, name, deploy_id, at, by)
        deploys_db.stamp_release(conn, site, previous, deploy_id, at)
        url = _alias_url(layout, site, name)
        data: dict[str, object] = {"deployId": deploy_id, "alias": name, "url": url, "actor": by,
                                   "previousDeployId": previous}  # fmt: skip
        if finalized_bytes is not None:
            event = hook_events.DEPLOY_FINALIZED
            data["deploy"] = deploys_db.context(conn, site, deploy_id)
        else:
            event = hook_events.ALIAS_MOVED
            data["reason"] = reason
        hooks_db.announce(conn, layout, site, event, data, at,
                          github=_tells_github(rt))  # fmt: skip

    _index_write(rt, site, write)


def record_alias_removal(
    rt: Runtime, site: Dirname, name: str, deploy_id: str, at: datetime, *, by: str
) -> None:
    """An alias object removed: its row goes, and the deploy it named is stamped released, so
    retention keeps it while serve caches may still answer from it; `alias.moved` with no
    deploy tells the webhooks."""
    layout = rt.settings.key_layout

    def write(conn: Connection) -> None:
        deploys_db.release_alias(conn, site, name, deploy_id, at, only_while_named=False)
        data = {"deployId": None, "alias": name, "url": _alias_url(layout, site, name),
                "actor": by, "previousDeployId": deploy_id, "reason": "removed"}  # fmt: skip
        hooks_db.announce(conn, layout, site, hook_events.ALIAS_MOVED, data, at,
                          github=_tells_github(rt))  # fmt: skip

    _index_write(rt, site, write)


def _tells_github(rt: Runtime) -> bool:
    """GitHub's deployments are kept when the App is configured and there is a notifications
    queue to carry them."""
    return rt.settings.repo_feature_enabled and bool(rt.settings.notifications_queue_url)


def _alias_url(layout: KeyLayout, site: Dirname, name: str) -> str | None:
    slug = layout.slug_for(site)
    return None if slug is None else layout.public_url(slug, name)


def parse_named_alias(raw: str) -> str:
    """A named preview's name, as given: no trimming or case folding, since the name is also a
    host label and a key segment and must have one spelling."""
    if not alias_names.is_named_alias(raw):
        raise InvalidAlias()
    return raw


def parse_alias_name(raw: str) -> AliasName:
    name = raw.strip().lower()
    if name == "production":
        return "production"
    if name == "preview":
        return "preview"
    raise BadRequest("mode must be preview or production")


def read(rt: Runtime, caller: Caller, slug: str, mode_raw: str) -> AliasResponse:
    from artemis.responses import AliasResponse

    name = parse_alias_name(mode_raw)  # checked before authorization, as the reference does
    require_site_member(rt, caller, slug)
    layout = rt.settings.key_layout
    target = rt.bucket.get_alias(layout.alias_key(layout.dirname(Slug(slug)), name))
    if target is None:
        raise NoAlias()
    return AliasResponse(
        site=slug, mode=name, deployId=target, url=layout.public_url(Slug(slug), name)
    )


def _check_guard(rt: Runtime, site: Dirname, slug: str, expected: str, expect_none: bool) -> None:
    """The expectedCurrent compare-and-swap (or expectNoCurrent: no production alias yet),
    under the site lock, so the read and the write it guards cannot interleave with another."""
    if not expected and not expect_none:
        return
    current = rt.bucket.get_alias(rt.settings.key_layout.alias_key(site, "production")) or ""
    if (expect_none and current) or (expected and current != expected):
        raise AliasDrift(site=slug, current=current)


def _check_deployable(rt: Runtime, site: Dirname, deploy_id: str) -> None:
    """Root index.html, then the completion marker (proof the deploy was finalized)."""
    layout = rt.settings.key_layout
    if rt.bucket.head(layout.deploy_prefix(site, deploy_id) + "index.html") is None:
        raise MissingIndex()
    if rt.bucket.head(layout.marker_key(site, deploy_id)) is None:
        raise DeployIncomplete()


def promote(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_body: bytes
) -> AliasMove:
    from artemis.responses import AliasMove

    require_site_member(rt, caller, slug)
    body = bodies.parse(bodies.PromoteBody, raw_body, required=False)
    deploy_id, expected = body.deploy_id.strip(), body.expected_current.strip()
    expect_none = body.expect_no_current
    if deploy_id and not deploy_ids.is_deploy_id(deploy_id):
        raise BadRequest("deployId must match ^\\d{8}-\\d{6}-[A-Za-z0-9-]{1,64}$")
    preview = parse_named_alias(body.preview) if body.preview else ""
    if not deploy_id and not preview and not expected and not expect_none:
        logger.warning(
            "legacy bare promote (no deployId, no expectedCurrent)", extra={"site": slug}
        )
    layout = rt.settings.key_layout
    site = layout.dirname(Slug(slug))
    with site_lock(rt.db.conninfo, site):
        _check_guard(rt, site, slug, expected, expect_none)
        target = deploy_id
        if preview:  # the deploy the named preview serves now, read under the lock
            target = rt.bucket.get_alias(layout.alias_key(site, preview)) or ""
            if not deploy_ids.is_deploy_id(target):
                raise NoAlias()
            # With deployId too, the preview must still name it: "promote what I reviewed".
            if deploy_id and target != deploy_id:
                raise PreviewMoved(preview=preview, current=target)
        elif not target:  # the legacy bare promote takes the preview alias
            target = rt.bucket.get_alias(layout.alias_key(site, "preview")) or ""
            if not deploy_ids.is_deploy_id(target):  # a malformed preview body never goes live
                raise NoPreview()
        _check_deployable(rt, site, target)
        rt.bucket.put_alias(layout.alias_key(site, "production"), target)
        record_alias_move(rt, site, "production", target, utcnow(), by=caller.login,
                          reason="promote")  # fmt: skip
    detail = {"preview": preview} if preview else None
    audit.record(rt, ctx, "site.promote", site=slug, deploy_id=target, detail=detail)
    return AliasMove(url=layout.public_url(Slug(slug), "production"), deployId=target)


def rollback(
    rt: Runtime, ctx: RequestContext, caller: Caller, slug: str, raw_body: bytes
) -> AliasMove:
    from artemis.responses import AliasMove

    require_site_member(rt, caller, slug)
    body = bodies.parse(bodies.RollbackBody, raw_body)
    to, expected = body.to.strip(), body.expected_current.strip()
    expect_none = body.expect_no_current
    if not to or not deploy_ids.is_deploy_id(to):
        raise BadRequest("to must match ^\\d{8}-\\d{6}-[A-Za-z0-9-]{1,64}$")
    layout = rt.settings.key_layout
    site = layout.dirname(Slug(slug))
    with site_lock(rt.db.conninfo, site):
        if not rt.bucket.has_prefix(layout.deploy_prefix(site, to)):
            raise DeployMissing()
        _check_deployable(rt, site, to)
        _check_guard(rt, site, slug, expected, expect_none)
        rt.bucket.put_alias(layout.alias_key(site, "production"), to)
        record_alias_move(rt, site, "production", to, utcnow(), by=caller.login,
                          reason="rollback")  # fmt: skip
    audit.record(rt, ctx, "site.rollback", site=slug, deploy_id=to, detail={"to": to})
    return AliasMove(url=layout.public_url(Slug(slug), "production"), deployId=to)
