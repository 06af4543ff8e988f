"""The nightly cleanup: the tombstone purge (the only hard delete), then the outbox purge, then
the gc-site backstop (a daily enqueue of gc-site for every site with a pending tombstone move or
an expired pending deploy, since no event may come for those sites). Each part writes its own
`job_runs` row; a failing part never stops the later ones, and the night fails if any did.

Tombstone purge, per expired tombstone and under that site's lock: re-read the row, delete the
bytes (trash, plus the live remainder of a move that never completed), then clear the row, with
any content index rows the deploy still has (one transaction). A crash between the two leaves
the row, so the next run deletes again (a no-op) and clears it. A site-level tombstone is
refused while younger deploy-level tombstones of the same dirname exist, because its trash
subtree holds their bytes too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from artemis.config import JobSettings
from artemis.db import content as content_db
from artemis.db import deploys as deploys_db
from artemis.db import job_runs
from artemis.db import outbox as outbox_db
from artemis.db import tombstones as tombstones_db
from artemis.db.lock import site_lock
from artemis.db.tombstones import TombstoneRow
from artemis.deadlines import Deadline
from artemis.jobs.common import alias_objects, job_run
from artemis.jobs.gc_site import emit, system_audit
from artemis.keys import Dirname
from artemis.observability import logger
from artemis.retention import oldest_n
from artemis.runtime import Runtime

PURGE_JOB = "tombstone-purge"
OUTBOX_JOB = "outbox-purge"
BACKSTOP_JOB = "gc-backstop"
ITEM_SECONDS = 60.0  # stop when less than this remains of Lambda's time limit
EXPIRED_READ_LIMIT = 100_000  # one night's read; a larger backlog is reported, never hidden
BACKSTOP_LIMIT = 500

DEFER_YOUNGER_DEPLOY_TRASH = "younger deploy-level tombstones of this dirname exist"
DEFER_SITE_MOVE_PENDING = "the site purge's move has not completed"
DEFER_ALIASED = "an alias object names the deploy, whose move has not completed"


def tombstone_key(row: TombstoneRow) -> str:
    """`<dirname>/<id>` (a site-level tombstone reads `<dirname>/`)."""
    return f"{row.site}/{row.id}"


def _overdue_key(row: TombstoneRow) -> tuple[datetime, str, str]:
    """ "Older" for tombstones: smaller trashed_at, then dirname, then id."""
    return (row.trashed_at, row.site, row.id)


@dataclass
class PurgeResult:
    dry_run: bool
    cutoff: datetime
    run_id: int = 0
    expired: list[str] = field(default_factory=list)  # every expired tombstone (dry: the report)
    selected: list[str] = field(default_factory=list)
    purged: list[str] = field(default_factory=list)
    deferred: dict[str, str] = field(default_factory=dict)  # key → why it waits
    failed: dict[str, str] = field(default_factory=dict)  # key → error
    bytes: int = 0
    index_rows_dropped: int = 0  # content index rows a purged deploy still had
    capped: bool = False
    reason: str = ""
    incomplete: bool = False  # stopped for lack of time

    def counts(self) -> dict[str, Any]:
        return {
            "expired": len(self.expired),
            "selected": len(self.selected),
            "purged": len(self.purged),
            "deferred": len(self.deferred),
            "failed": len(self.failed),
            "bytes": self.bytes,
            "index_rows_dropped": self.index_rows_dropped,
            "capped": int(self.capped),
            "incomplete": int(self.incomplete),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "cutoff": self.cutoff.isoformat(),
            "expired": self.expired,
            "selected": self.selected,
            "purged": self.purged,
            "deferred": self.deferred,
            "failed": self.failed,
            "bytes": self.bytes,
            "index_rows_dropped": self.index_rows_dropped,
            "capped": self.capped,
            "reason": self.reason,
            "incomplete": self.incomplete,
        }


class PurgeFailed(Exception):
    """Some tombstones failed; the others were processed. `result` holds what happened."""

    def __init__(self, result: PurgeResult) -> None:
        joined = "; ".join(f"{key}: {err}" for key, err in result.failed.items())
        super().__init__(f"{len(result.failed)} tombstone(s) failed: {joined}")
        self.result = result


@dataclass
class NightlyResult:
    purge: PurgeResult | None = None
    outbox_purged: int | None = None
    backstop: list[Dirname] | None = None
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "purge": self.purge.to_json() if self.purge is not None else None,
            "outbox_purged": self.outbox_purged,
            "backstop": self.backstop,
            "errors": self.errors,
        }


class NightlyFailed(Exception):
    """At least one part of the night failed (the others still ran)."""

    def __init__(self, result: NightlyResult, errors: list[Exception]) -> None:
        super().__init__("; ".join(result.errors))
        self.result = result
        self.errors = errors


# --- tombstone purge -----------------------------------------------------------------------


def run_tombstone_purge(
    rt: Runtime[JobSettings], *, now: datetime, deadline: Deadline, dry_run: bool | None = None
) -> PurgeResult:
    """Hard-delete the trash of tombstones older than the recovery window (≤ cap per run,
    the most overdue first). Raises PurgeFailed after processing all others when any failed."""
    dry = rt.settings.cleanup_dry_run if dry_run is None else dry_run
    cutoff = now - timedelta(days=rt.settings.cleanup_recovery_days)
    with job_run(rt.db, PURGE_JOB, dry_run=dry) as record:
        result = PurgeResult(dry_run=dry, cutoff=cutoff, run_id=record.id)
        try:
            _purge(rt, cutoff, deadline, result, record.record_plan)
        finally:
            record.counts.update(result.counts())
            emit("purge.expired", len(result.expired))
            emit("purge.selected", len(result.selected))
            emit("purge.purged", len(result.purged))
            emit("purge.bytes", result.bytes, "Bytes")
            emit("purge.index_rows_dropped", result.index_rows_dropped)
            emit("purge.failed", len(result.failed))
            emit("purge.capped", int(result.capped))
            logger.info("gc.tombstone-purge.done", extra=result.counts())
        if result.failed:
            raise PurgeFailed(result)
        return result


def _purge(
    rt: Runtime[JobSettings],
    cutoff: datetime,
    deadline: Deadline,
    result: PurgeResult,
    record_plan: Callable[[Any], None],
) -> None:
    with rt.db.transaction() as conn:
        expired = tombstones_db.expired(conn, cutoff, EXPIRED_READ_LIMIT)
    if len(expired) >= EXPIRED_READ_LIMIT:
        logger.warning("gc.tombstone-purge.backlog", extra={"read": len(expired)})
    result.expired = [tombstone_key(t) for t in expired]
    cap = rt.settings.cleanup_blast_cap
    if result.dry_run:  # the cap bounds destruction, never visibility: the report lists all
        record_plan({"cutoff": cutoff.isoformat(), "expired": result.expired, "cap": cap})
        logger.info("gc.tombstone-purge.dry-run", extra={"expired": result.expired})
        return
    if expired and cap <= 0:
        selected: list[TombstoneRow] = []
        result.capped, result.reason = True, "cap 0 refuses every purge"
    elif len(expired) > cap:
        selected = oldest_n(expired, cap, _overdue_key)
        result.capped = True
        result.reason = f"{len(expired)} expired exceed cap {cap}; taking the oldest {cap}"
    else:
        selected = expired
    if result.capped:
        logger.warning("gc.tombstone-purge.capped", extra={"reason": result.reason})
    result.selected = [tombstone_key(t) for t in selected]
    record_plan(
        {
            "cutoff": cutoff.isoformat(),
            "expired": len(expired),
            "selected": result.selected,
            "capped": result.capped,
            "reason": result.reason,
        }
    )
    for row in selected:
        if not deadline.has(ITEM_SECONDS):
            result.incomplete = True
            logger.warning("gc.tombstone-purge.out_of_time", extra={"next": tombstone_key(row)})
            return
        try:
            _purge_one(rt, row, cutoff, result)
        except Exception as err:
            result.failed[tombstone_key(row)] = f"{type(err).__name__}: {err}"
            logger.exception(
                "gc.tombstone-purge.site_failed", extra={"site": row.site, "id": row.id}
            )


def _purge_one(
    rt: Runtime[JobSettings], row: TombstoneRow, cutoff: datetime, result: PurgeResult
) -> None:
    site = Dirname(row.site)
    key = tombstone_key(row)
    layout = rt.settings.key_layout
    site_level = row.id == tombstones_db.SITE_PURGE_ID
    with site_lock(rt.db.conninfo, site):
        with rt.db.transaction() as conn:
            current = tombstones_db.get(conn, site, row.id)
            younger = site_level and any(
                t.id != tombstones_db.SITE_PURGE_ID and t.trashed_at >= cutoff
                for t in tombstones_db.for_site(conn, site)
            )
        if current is None or current.trashed_at >= cutoff:
            return  # restored or purged meanwhile: nothing to account for
        if site_level:
            if younger:
                result.deferred[key] = DEFER_YOUNGER_DEPLOY_TRASH
            elif current.move_state == "pending":
                result.deferred[key] = DEFER_SITE_MOVE_PENDING
            if key in result.deferred:
                logger.warning(
                    "gc.tombstone-purge.deferred", extra={"site": site, "why": result.deferred[key]}
                )
                return
            rt.bucket.delete_prefix(layout.site_trash_prefix(site))
        else:
            # A move that never completed left bytes at the live prefix; while any alias
            # object (a channel or a named preview) names the deploy they may be serving:
            # drift for reconcile, never bytes to delete (GC's re-drive refuses them alike).
            if current.move_state != "moved" and row.id in alias_objects(rt.bucket, layout, site):
                result.deferred[key] = DEFER_ALIASED
                why = {"site": site, "id": row.id, "why": DEFER_ALIASED}
                logger.error("gc.tombstone-purge.deferred", extra=why)
                return
            rt.bucket.delete_prefix(layout.deploy_trash_prefix(site, row.id))
            if current.move_state != "moved":
                # The move (a delete's, or a restore's cut off part-way) never completed: the
                # id is retired, so what it left at the live prefix is trash too.
                rt.bucket.delete_prefix(layout.deploy_prefix(site, row.id))
        with rt.db.transaction() as conn:  # bytes first, then the row
            cleared = tombstones_db.clear(conn, site, row.id)
            # The delete or GC that tombstoned it dropped its rows; one an upload recorded
            # meanwhile (GC collects an abandoned deploy without its deploy lock) goes now, so
            # no row outlives the deploy's bytes. A site-level tombstone drops none: the site
            # purge dropped the site's rows, and a site registered again since holds live ones.
            dropped = 0 if site_level else content_db.drop_deploys(conn, site, [row.id])
    result.index_rows_dropped += dropped
    if not cleared:
        return
    result.purged.append(key)
    result.bytes += current.bytes
    system_audit(rt, "gc.purge", site, row.id)


# --- outbox purge --------------------------------------------------------------------------


def run_outbox_purge(
    rt: Runtime[JobSettings], *, dry_run: bool | None = None, limit: int = outbox_db.PURGE_LIMIT
) -> int:
    """Delete (dry: count) up to `limit` published rows older than the outbox retention.
    Unpublished rows are never touched. Returns the number of rows."""
    dry = rt.settings.cleanup_dry_run if dry_run is None else dry_run
    with job_run(rt.db, OUTBOX_JOB, dry_run=dry) as record:
        try:
            with rt.db.transaction() as conn:
                rows = outbox_db.purge_published(
                    conn, rt.settings.cleanup_outbox_retention_days, limit, dry_run=dry
                )
                # Run records age out on the same window as the events that caused them.
                if not dry:
                    record.count(
                        "job_runs_purged",
                        job_runs.purge_finished(conn, rt.settings.cleanup_outbox_retention_days),
                    )
        except Exception:
            emit("outbox.purge_failed", 1)
            raise
        capped = limit > 0 and rows >= limit
        record.count("purged", rows)
        record.count("capped", int(capped))
        emit("outbox.purged", rows)
        emit("outbox.purge_capped", int(capped))
        if capped and not dry:
            logger.warning("outbox.purge.capped", extra={"rows": rows, "limit": limit})
        logger.info("outbox.purged", extra={"rows": rows, "dry_run": dry})
        return rows


# --- gc-site backstop ----------------------------------------------------------------------


def run_backstop(
    rt: Runtime[JobSettings], *, now: datetime, limit: int = BACKSTOP_LIMIT
) -> list[Dirname]:
    """Enqueue one `site.changed` per site with an incomplete tombstone move or an expired
    pending deploy, at most `limit` per run, in one transaction; the relay publishes them and
    gc-site does the work. Beyond the limit a daily rotation reaches every site in turn."""
    with job_run(rt.db, BACKSTOP_JOB) as record:
        cutoff = now - timedelta(seconds=rt.settings.cleanup_grace)
        with rt.db.transaction() as conn:
            moves = tombstones_db.sites_with_pending_moves(conn)
            pending = deploys_db.sites_with_expired_pending(conn, cutoff)
        needing = sorted(set(moves) | set(pending))
        chosen = _rotation(needing, limit, now)
        with rt.db.transaction() as conn:
            for site in chosen:
                outbox_db.enqueue_site_changed(conn, site)
        record.count("needing", len(needing))
        record.count("enqueued", len(chosen))
        emit("gc.backstop_enqueued", len(chosen))
        if len(chosen) < len(needing):
            logger.warning("gc.backstop.capped", extra={"needing": len(needing), "limit": limit})
        return chosen


def _rotation(sites: list[Dirname], limit: int, now: datetime) -> list[Dirname]:
    if limit <= 0:
        return []
    if len(sites) <= limit:
        return sites
    start = (now.toordinal() * limit) % len(sites)
    return (sites[start:] + sites[:start])[:limit]


# --- the night -----------------------------------------------------------------------------


def run_nightly(
    rt: Runtime[JobSettings], *, now: datetime, deadline: Deadline, dry_run: bool | None = None
) -> NightlyResult:
    """Tombstone purge, then outbox purge (even if the purge failed), then the backstop.
    Raises NightlyFailed (carrying the result) when any part failed."""
    started = time.monotonic()
    emit("purge.run_started", 1)
    result = NightlyResult()
    errors: list[Exception] = []

    def failed(part: str, err: Exception) -> None:
        errors.append(err)
        result.errors.append(f"{part}: {type(err).__name__}: {err}")

    try:
        result.purge = run_tombstone_purge(rt, now=now, deadline=deadline, dry_run=dry_run)
    except PurgeFailed as err:
        result.purge = err.result
        failed(PURGE_JOB, err)
    except Exception as err:
        failed(PURGE_JOB, err)
    try:
        result.outbox_purged = run_outbox_purge(rt, dry_run=dry_run)
    except Exception as err:
        failed(OUTBOX_JOB, err)
    try:
        result.backstop = run_backstop(rt, now=now)
    except Exception as err:
        failed(BACKSTOP_JOB, err)
    emit("purge.run_duration_s", time.monotonic() - started, "Seconds")
    if errors:
        emit("purge.run_failed", 1)
        logger.error("tombstone.purge", extra={"errors": result.errors})
        raise NightlyFailed(result, errors)
    emit("purge.run_succeeded", 1)
    return result
