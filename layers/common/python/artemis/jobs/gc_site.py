"""`gc-site`: event-driven retention for one site.

1. Re-drive the site's incomplete moves (tombstones whose `move_state` is still `pending`).
2. Read the active rows, alias rows and expired pending rows; build the plan (artemis.retention).
3. Record the plan in the run's `job_runs` row before executing anything.
4. Dry run: stop there (no lock, no bucket).
5. Live run, per expired named preview (the plan's `expired_previews`), first: under the site
   lock, re-read its row and object (a preview moved since planning is kept), delete the alias
   object, then in one transaction compare-and-delete the row, stamp the release on the deploy
   it named and enqueue `site.changed`; audit `site.preview.expire`.
6. Live run, per planned deploy: check the time budget, take the site lock, re-read the alias
   OBJECTS and the current rows and re-evaluate the whole keep predicate (a deploy restored or
   promoted since planning is kept), write the tombstone row and drop the deploy's content
   index rows (one transaction), move the bytes to trash, mark the move done, release, audit
   `gc.tombstone`.

Expiry runs first because the plan was built as if it had happened (retention.build_plan judges
an expired preview's deploy as released at `now`): the release stamp then keeps that deploy
through the serve cache TTL, in the plan and in the re-check alike; a later run judges it by
the ordinary rules.

Nothing here deletes deploy bytes: a deploy only ever moves to trash; the purge destroys it
later. The one object deleted is an expired preview's alias object: it is a pointer, not
content, and no tombstone would ever purge it from trash (the audit row keeps what it named).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection

from artemis import hook_events, retention
from artemis.config import JobSettings, RepoSettings
from artemis.db import aliases as aliases_db
from artemis.db import content as content_db
from artemis.db import deploys as deploys_db
from artemis.db import hooks as hooks_db
from artemis.db import outbox as outbox_db
from artemis.db import tombstones as tombstones_db
from artemis.db.lock import SiteLockSession
from artemis.deadlines import Deadline
from artemis.jobs.common import (
    RunRecord,
    alias_objects,
    job_run,
    system_audit_entry,
    write_audit,
)
from artemis.keys import Dirname
from artemis.observability import logger, metrics
from artemis.retention import ExpiredPreview, Plan, Policy
from artemis.runtime import Runtime
from artemis.storage.objects import MoveIncomplete

JOB = "gc-site"
GC_ACTOR = "system:gc"
# Seconds one more deploy (lock, re-check, row, move of a typical deploy) may need; below
# this the run stops cleanly, inside Lambda's time limit, and the next trigger resumes.
ITEM_SECONDS = 30.0

AfterPlan = Callable[[Plan], None]


@dataclass
class GcResult:
    site: Dirname
    dry_run: bool
    run_id: int = 0
    planned: list[str] = field(default_factory=list)
    tombstoned: list[str] = field(default_factory=list)
    skipped_aliased: list[str] = field(default_factory=list)
    skipped_kept: list[str] = field(default_factory=list)  # a keep condition holds now
    skipped_gone: list[str] = field(default_factory=list)  # row gone since planning
    redriven: list[str] = field(default_factory=list)  # incomplete moves finished this run
    redrive_blocked: list[str] = field(default_factory=list)
    previews_expired: list[str] = field(default_factory=list)  # named previews unpublished
    previews_kept: list[str] = field(default_factory=list)  # moved or drifted since planning
    incomplete_moves: int = 0  # tombstones of the site with move_state 'pending' at start
    bytes: int = 0  # plan bytes of the tombstoned deploys
    index_rows_dropped: int = 0  # content index rows of the tombstoned deploys
    capped: bool = False
    reason: str = ""
    incomplete: bool = False  # stopped for lack of time; the next run resumes
    plan: Plan | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "run_id": self.run_id,
            "dry_run": self.dry_run,
            "planned": self.planned,
            "tombstoned": self.tombstoned,
            "skipped_aliased": self.skipped_aliased,
            "skipped_kept": self.skipped_kept,
            "skipped_gone": self.skipped_gone,
            "redriven": self.redriven,
            "redrive_blocked": self.redrive_blocked,
            "previews_expired": self.previews_expired,
            "previews_kept": self.previews_kept,
            "incomplete_moves": self.incomplete_moves,
            "bytes": self.bytes,
            "index_rows_dropped": self.index_rows_dropped,
            "capped": self.capped,
            "reason": self.reason,
            "incomplete": self.incomplete,
        }

    def counts(self) -> dict[str, Any]:
        return {
            "planned": len(self.planned),
            "tombstoned": len(self.tombstoned),
            "skipped_aliased": len(self.skipped_aliased),
            "skipped_kept": len(self.skipped_kept),
            "skipped_gone": len(self.skipped_gone),
            "redriven": len(self.redriven),
            "redrive_blocked": len(self.redrive_blocked),
            "previews_expired": len(self.previews_expired),
            "previews_kept": len(self.previews_kept),
            "incomplete_moves": self.incomplete_moves,
            "bytes_trashed": self.bytes,
            "index_rows_dropped": self.index_rows_dropped,
            "capped": int(self.capped),
            "incomplete": int(self.incomplete),
        }


# --- shared helpers (also used by the purge) -----------------------------------------------


def emit(name: str, value: float, unit: str = "Count") -> None:
    """Add one EMF metric; never let bookkeeping break a run (outside Lambda too)."""
    try:
        metrics.add_metric(name=name, unit=unit, value=value)
    except Exception:
        logger.debug("metric dropped", extra={"metric": name})


def system_audit(
    rt: Runtime[JobSettings], action: str, site: Dirname, deploy_id: str,
    detail: dict[str, Any] | None = None,
) -> None:  # fmt: skip
    """A `system:gc` audit row; best effort."""
    entry = system_audit_entry(rt.settings.key_layout, GC_ACTOR, action, site, deploy_id, detail)
    write_audit(rt.db, entry)


def read_alias_objects(rt: Runtime[JobSettings], site: Dirname) -> frozenset[str]:
    return alias_objects(rt.bucket, rt.settings.key_layout, site)


# --- the job -----------------------------------------------------------------------------


def run_gc_site(
    rt: Runtime[JobSettings],
    site: Dirname,
    *,
    now: datetime,
    deadline: Deadline,
    dry_run: bool | None = None,
    after_plan: AfterPlan | None = None,
) -> GcResult:
    """Run retention for one site (dirname). `after_plan` is called with the recorded plan just
    before a live run executes it (an observation point: whatever it changes in the stores is
    what the under-lock re-check sees). Raises on a failed read, tombstone write or move,
    after recording the counts in `job_runs`."""
    dry = rt.settings.cleanup_dry_run if dry_run is None else dry_run
    with job_run(rt.db, JOB, site or None, dry_run=dry) as record:
        result = GcResult(site=site, dry_run=dry, run_id=record.id)
        try:
            _run(rt, site, now, deadline, record, result, after_plan)
        except Exception:
            emit("gc.run_failed", 1)
            raise
        finally:
            record.counts.update(result.counts())
            _signals(result)
        return result


def _run(
    rt: Runtime[JobSettings],
    site: Dirname,
    now: datetime,
    deadline: Deadline,
    record: RunRecord,
    result: GcResult,
    after_plan: AfterPlan | None,
) -> None:
    if not site:
        raise ValueError("gc-site needs a site (dirname)")
    policy = Policy.from_settings(rt.settings)
    with rt.db.transaction() as conn:
        pending_moves = [t for t in tombstones_db.for_site(conn, site) if t.move_state == "pending"]
    result.incomplete_moves = len(pending_moves)
    session: SiteLockSession | None = None
    try:
        if not result.dry_run and pending_moves:
            session = SiteLockSession(rt.db.conninfo)
            if not _redrive(rt, site, [t.id for t in pending_moves], session, deadline, result):
                return
        plan = plan_for(rt, site, now, policy)
        result.plan = plan
        result.planned = plan.planned_ids
        result.capped, result.reason = plan.capped, plan.reason
        record.record_plan(plan.to_json())
        if plan.capped:
            logger.warning(
                "gc.site.capped",
                extra={"site": site, "candidates": len(plan.candidates), "reason": plan.reason},
            )
        if result.dry_run:
            logger.info(
                "gc.site.dry-run",
                extra={
                    "site": site,
                    "planned": result.planned,
                    "capped": plan.capped,
                    "previews_expired": [p.name for p in plan.expired_previews],
                },
            )
            return
        if after_plan is not None:
            after_plan(plan)
        if (plan.planned or plan.expired_previews) and session is None:
            session = SiteLockSession(rt.db.conninfo)
        # Previews first (see the module doc). The blast cap does not count them: it bounds how
        # many deploys one run moves to trash, and an expiry moves no deploy bytes (the deploy it
        # frees is planned, and capped, by the ordinary rules in a later run).
        for preview in plan.expired_previews:
            if not deadline.has(ITEM_SECONDS):
                result.incomplete = True
                logger.warning("gc.site.out_of_time", extra={"site": site, "preview": preview.name})
                return
            assert session is not None
            _expire(rt, site, preview, policy, now, session, result)
        for deploy_id in plan.planned_ids:
            if not deadline.has(ITEM_SECONDS):
                result.incomplete = True
                logger.warning("gc.site.out_of_time", extra={"site": site, "next": deploy_id})
                return
            assert session is not None
            _collect(rt, site, deploy_id, plan, policy, now, session, result)
    finally:
        if session is not None:
            session.close()
        logger.info("gc.site.done", extra={"site": site, **result.counts()})


def plan_for(rt: Runtime[JobSettings], site: Dirname, now: datetime, policy: Policy) -> Plan:
    """Read the site's active rows, alias rows and expired pending rows and build the pure
    plan. Autocommit reads: under READ COMMITTED each statement takes its own
    snapshot anyway, so a transaction around them would only add two round trips."""
    with rt.db.session() as conn:
        return plan_on(conn, site, now, policy)


def plan_on(conn: Connection, site: Dirname, now: datetime, policy: Policy) -> Plan:
    """`plan_for` on a connection the caller holds."""
    rows, alias_rows, expired = deploys_db.plan_inputs(conn, site, now - policy.grace)
    return retention.site_plan(rows, alias_rows, expired, now, policy)


FLEET_BATCH = 200  # sites per read round trip in plan_fleet


def plan_fleet(
    rt: Runtime[JobSettings],
    sites: Sequence[Dirname],
    now: datetime,
    policy: Policy,
    *,
    batch: int = FLEET_BATCH,
) -> Iterator[tuple[Dirname, Plan]]:
    """Dry-run plans for many sites (the operator's fleet GC report), `batch` sites per read
    round trip, in `sites` order. Each plan is the one `plan_for` builds for that site from the
    same rows; nothing is recorded, locked or moved.

    One thread reads the next batch while this one plans it: Postgres answers on one core
    while the plans are built on another, rather than each waiting for the other."""
    cutoff = now - policy.grace
    chunks = [sites[start : start + batch] for start in range(0, len(sites), batch)]

    def read(chunk: Sequence[Dirname]) -> dict[Dirname, deploys_db.PlanInputs]:
        with rt.db.session() as conn:
            return deploys_db.plan_inputs_for_sites(conn, chunk, cutoff)

    with ThreadPoolExecutor(1) as reader:
        ahead = [reader.submit(read, chunk) for chunk in chunks[:1]]
        for later in [*chunks[1:], None]:
            inputs = ahead.pop().result()
            if later is not None:
                ahead.append(reader.submit(read, later))
            for site, (rows, alias_rows, expired) in inputs.items():
                yield site, retention.site_plan(rows, alias_rows, expired, now, policy)


def _redrive(
    rt: Runtime[JobSettings],
    site: Dirname,
    ids: list[str],
    session: SiteLockSession,
    deadline: Deadline,
    result: GcResult,
) -> bool:
    """Finish the moves of tombstones whose move never completed, so no split deploy stays
    half at its live prefix. False: out of time."""
    layout = rt.settings.key_layout
    for deploy_id in ids:
        if not deadline.has(ITEM_SECONDS):
            result.incomplete = True
            logger.warning("gc.site.out_of_time", extra={"site": site, "redrive": deploy_id})
            return False
        site_level = deploy_id == tombstones_db.SITE_PURGE_ID
        with session.hold(site):
            with rt.db.transaction() as conn:
                row = tombstones_db.get(conn, site, deploy_id)
                reused = site_level and (
                    deploys_db.exists_for_site(conn, site) or bool(aliases_db.for_site(conn, site))
                )
            if row is None or row.move_state != "pending":
                continue  # restored, purged or finished by someone else meanwhile
            live = read_alias_objects(rt, site)
            if site_level:
                # Re-driving a site purge moves the whole tree: only while the site is still
                # absent from the index and unpublished; a site brought back since is left alone.
                blocked = reused or bool(live)
                src, dst = f"{site}/", layout.site_trash_prefix(site)
            else:
                blocked = deploy_id in live  # never move a deploy an alias object names
                src = layout.deploy_prefix(site, deploy_id)
                dst = layout.deploy_trash_prefix(site, deploy_id)
            if blocked:
                result.redrive_blocked.append(deploy_id)
                logger.error("gc.site.redrive_blocked", extra={"site": site, "id": deploy_id})
                continue
            try:
                rt.bucket.move_prefix(src, dst)
            except MoveIncomplete:
                logger.error("gc.site.tombstone_move_deferred", extra={"site": site, "trash": dst})
                raise
            with rt.db.transaction() as conn:
                tombstones_db.mark_moved(conn, site, deploy_id)
        result.redriven.append(deploy_id)
    return True


def _expire(
    rt: Runtime[JobSettings],
    site: Dirname,
    preview: ExpiredPreview,
    policy: Policy,
    now: datetime,
    session: SiteLockSession,
    result: GcResult,
) -> None:
    """One expired named preview: lock → re-check row and object → delete the object → row,
    release stamp and event (one transaction) → unlock → audit.

    The object goes first: a crash after it leaves the expired row, which the next run
    removes (the delete is idempotent); the other order could leave a live preview with no
    row, which nothing would ever expire. Finalize moves a preview under the same lock, so
    the compare-and-delete cannot lose to it; it still guards against a row rewritten by a
    path that takes no lock (backfill, reconcile)."""
    key = rt.settings.key_layout.alias_key(site, preview.name)
    with session.hold(site):
        with rt.db.transaction() as conn:
            row = aliases_db.get(conn, site, preview.name)
        target = rt.bucket.get_alias(key)
        moved = (
            row is None
            or row.deploy_id != preview.deploy_id
            or not retention.preview_expired(row.updated_at, now, policy.preview_ttl)
        )
        # An object naming another deploy than the row: the row lags a move (drift), and the
        # object is what serves; reconcile mends the row, with a fresh updated_at.
        drifted = target is not None and target != preview.deploy_id
        if moved or drifted:
            result.previews_kept.append(preview.name)
            logger.info(
                "gc.site.preview_kept",
                extra={"site": site, "preview": preview.name, "moved": moved, "drifted": drifted},
            )
            return
        if target is not None:
            rt.bucket.delete_object(key)
        with rt.db.transaction() as conn:
            removed = deploys_db.release_alias(
                conn, site, preview.name, preview.deploy_id, now, only_while_named=True
            )
            if removed:
                outbox_db.enqueue_site_changed(conn, site)
                layout = rt.settings.key_layout
                slug = layout.slug_for(site)
                url = None if slug is None else layout.public_url(slug, preview.name)
                data = {"deployId": None, "alias": preview.name, "url": url,
                        "actor": GC_ACTOR, "previousDeployId": preview.deploy_id,
                        "reason": "expired"}  # fmt: skip
                github = (
                    isinstance(rt.settings, RepoSettings)
                    and rt.settings.repo_feature_enabled
                    and bool(rt.settings.notifications_queue_url)
                )
                hooks_db.announce(conn, layout, site, hook_events.ALIAS_MOVED, data, now,
                                  github=github)  # fmt: skip
    if not removed:  # cannot happen under the lock; never audit what did not happen
        result.previews_kept.append(preview.name)
        return
    result.previews_expired.append(preview.name)
    system_audit(rt, "site.preview.expire", site, preview.deploy_id, {
        "name": preview.name,
        "deployId": preview.deploy_id,
        "updatedAt": preview.updated_at.isoformat(),
    })  # fmt: skip


def _collect(
    rt: Runtime[JobSettings],
    site: Dirname,
    deploy_id: str,
    plan: Plan,
    policy: Policy,
    now: datetime,
    session: SiteLockSession,
    result: GcResult,
) -> None:
    """One planned deploy: lock → re-check → tombstone row → move → mark → unlock → audit."""
    layout = rt.settings.key_layout
    trash = layout.deploy_trash_prefix(site, deploy_id)
    with session.hold(site):
        live = read_alias_objects(rt, site)
        with rt.db.transaction() as conn:
            current = deploys_db.get(conn, site, deploy_id)
            active = deploys_db.active_for_site(conn, site)
        verdict = retention.recheck(current, active, live, now, policy)
        if not verdict.collect:
            if verdict.aliased:
                result.skipped_aliased.append(deploy_id)
            elif verdict.reason == "gone":
                result.skipped_gone.append(deploy_id)
            else:
                result.skipped_kept.append(deploy_id)
            logger.info(
                "gc.site.skipped", extra={"site": site, "id": deploy_id, "why": verdict.reason}
            )
            return
        size = plan.bytes_of(deploy_id)
        with rt.db.transaction() as conn:  # row first: the intent is durable before bytes move
            tombstones_db.tombstone_deploy(conn, site, deploy_id, size)
            # With the tombstone, in its transaction: the index never offers a copy from a
            # deploy on its way to trash, whatever happens to the move below.
            dropped = content_db.drop_deploys(conn, site, [deploy_id])
        result.index_rows_dropped += dropped
        try:
            rt.bucket.move_prefix(layout.deploy_prefix(site, deploy_id), trash)
        except MoveIncomplete:
            logger.error(
                "gc.site.tombstone_move_deferred",
                extra={"site": site, "id": deploy_id, "trash": trash},
            )
            raise
        try:
            with rt.db.transaction() as conn:
                tombstones_db.mark_moved(conn, site, deploy_id)
        except Exception:  # the move is done; a pending mark only costs a no-op re-drive
            logger.exception("gc.site.mark_moved_failed", extra={"site": site, "id": deploy_id})
    result.tombstoned.append(deploy_id)
    result.bytes += size
    system_audit(rt, "gc.tombstone", site, deploy_id)


def _signals(result: GcResult) -> None:
    emit("gc.planned", len(result.planned))
    emit("gc.tombstoned", len(result.tombstoned))
    emit("gc.skipped_aliased", len(result.skipped_aliased))
    emit("gc.previews_expired", len(result.previews_expired))
    emit("gc.capped", int(result.capped))
    emit("gc.bytes_trashed", result.bytes, "Bytes")
    emit("gc.index_rows_dropped", result.index_rows_dropped)
    emit("gc.incomplete_moves", result.incomplete_moves)
