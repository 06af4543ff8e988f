"""Reconcile repair: operator-run, one site at a time (no schedule repairs; the nightly drift
sweep only reports).

    run_reconcile(rt, "www", apply=False, …)   dry run: the site's drift report, writes nothing
    run_reconcile(rt, "www", apply=True, …)    repair it

1. **Name resolution.** The name may be a dirname or a slug: a known dirname (any row in
   `deploys`, `aliases` or `tombstones`, or a registry slug rendered through the template) is
   used as is; else the name is rendered as a slug and used if that dirname is known; else the
   run is refused (`UnknownSite`) — a reconciler handed an unknown name would look where no
   writer writes and report zero drift.
2. **Snapshot** (read once, without the lock, through the read-only wrappers): every key under
   the site prefix, the active index rows, the alias rows and the alias objects, each as
   name → deploy id (aliased = the union of both stores' targets). No deploy ids while rows
   exist is the empty-listing fault (`EmptyListingFault`, dry and live): that shape is a
   wrong bucket, prefix or template, never a reason to prune.
3. **Plan**: the decision table and the blast cap of artemis.reconcile_plan, and the alias rows
   compared with the alias objects name by name (`alias_row_missing`, `alias_object_missing`,
   `alias_row_stale`). A dry run reports the full plan (the cap only sets `capped`).
4. **Repair** (live only): one SiteLockSession; the alias rows (by name), all reindexes, then
   the capped tombstones, then the capped prunes, in id order. Before each item the deadline
   is checked; then the site lock is taken for that item alone and the item is re-read under
   it:

   | Repair    | Re-read under the lock                | Proceeds only if                       |
   | --------- | ------------------------------------- | -------------------------------------- |
   | alias     | the alias object, then its row        | they still disagree as planned; then   |
   |           |                                       | the row is written from the object, or |
   |           |                                       | (no object) compare-and-deleted        |
   | reindex   | the deploy prefix listing             | bytes present; then the guarded        |
   |           |                                       | reindex (refused while tombstoned)     |
   | tombstone | active row; alias rows, then objects; | unindexed, unaliased, bytes present,   |
   |           | the deploy prefix listing             | marker absent                          |
   | prune     | the deploy prefix; alias rows, then   | no bytes, unaliased, the row still     |
   |           | objects; the row itself               | active and past grace                  |
   | index     | the deploy row and tombstones; its    | orphans: path still unlisted (every    |
   |           | prefix listing; its marker            | row once the deploy left the live set);|
   |           |                                       | restores: marker ETag = listing ETag,  |
   |           |                                       | deploy finalized and live; never while |
   |           |                                       | the deploy is pending                  |

   The index repairs (artemis.reconcile_plan, "the content index") come last, one per deploy
   with orphan or missing `deploy_files` rows, so a deploy just reindexed is judged as live;
   missing rows without a trusted marker digest are only counted (`index_deferred_to_backfill`:
   backfill hashes them). They are not capped: they touch no bytes. Nor are the alias repairs,
   which only make the `aliases` table mirror the alias objects: the bucket is the truth (an
   alias move writes its object, then its row, under the site lock), a row is written as
   `updated_by` `system:reconcile`, and the deploy a row leaves gets its release stamp, as an
   alias move gives it. A name the alias rule refuses is reported, never written.

   A tombstone measures the deploy's bytes, writes the tombstone row (which drops any index
   row), moves the prefix to trash and marks the tombstone moved — row first, bytes second.
   A skipped item is logged with its reason; an alias that appeared is reported as
   aliased-missing. Any error fails the run at that item (`ReconcileFailed`, carrying the
   partial report): earlier repairs stand, and re-running resumes, since every repair is
   guarded by its in-lock read.
5. **Audit** (after each item's lock is released, best effort): `gc.reconcile` for every orphan
   whose tombstone row landed (even if its move then failed), `gc.reconcile.prune` for every
   pruned row, `gc.reconcile.alias` for every alias row written or deleted (detail: the name,
   what row and object named, the class); actor `system:reconcile`; `site` is the slug (an
   unmappable dirname is written raw with `{"site_unmapped": true}`).

Every run writes a `job_runs` row (`reconcile`, dry_run = not apply) with its plan and counts.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, Protocol

import psycopg

from artemis.alias_names import is_alias_name
from artemis.config import JobSettings
from artemis.db import aliases as aliases_db
from artemis.db import audit as audit_db
from artemis.db import content as content_db
from artemis.db import deploys as deploys_db
from artemis.db import sites as sites_db
from artemis.db import tombstones as tombstones_db
from artemis.db.content import FileDigest
from artemis.db.lock import SiteLockSession
from artemis.deadlines import Deadline
from artemis.jobs.common import (
    RunRecord,
    alias_object_targets,
    alias_objects,
    job_run,
    system_audit_entry,
    write_audit,
)
from artemis.keys import (
    Dirname,
    KeyLayout,
    Slug,
    finalize_digests,
    finalize_record,
    recorded_digests,
)
from artemis.observability import logger
from artemis.readonly import ReadOnlyBucket, ReadOnlyDatabase
from artemis.reconcile_plan import (
    AliasDrift,
    BucketDeploy,
    Classification,
    DeployState,
    IndexDrift,
    IndexedDeploy,
    IndexPlan,
    Listed,
    RepairPlan,
    build_plan,
    classify,
    compare_alias,
    compare_aliases,
    deploy_time,
    index_drift,
    listing_fault,
    plan_index,
    trusted_digests,
)
from artemis.runtime import Runtime
from artemis.storage.objects import MoveIncomplete, ObjectInfo

JOB = "reconcile"
ACTOR = "system:reconcile"
# Time one repair may need (an in-lock re-read, a row write and a move of one deploy); the run
# stops cleanly before an item when less than this remains.
ITEM_RESERVE_SECONDS = 10.0

Repair = Literal["alias", "reindex", "tombstone", "prune", "index"]


class BucketReader(Protocol):
    """The reads a snapshot needs (Bucket and ReadOnlyBucket both fit)."""

    def list_pages(self, prefix: str, *, start_after: str = "") -> Iterator[list[ObjectInfo]]: ...

    def get_alias(self, key: str) -> str | None: ...

    def get_aliases(self, prefix: str) -> dict[str, str]: ...

    def get(self, key: str) -> bytes | None: ...


class Transactions(Protocol):
    """Something that opens transactions (Database and ReadOnlyDatabase both fit)."""

    def transaction(self) -> AbstractContextManager[psycopg.Connection]: ...


# --- errors ------------------------------------------------------------------------------


class ReconcileError(Exception):
    """A reconcile run that did not complete; `report` is what it did before it stopped."""

    def __init__(self, message: str, report: ReconcileReport | None = None) -> None:
        super().__init__(message)
        self.report = report


class UnknownSite(ReconcileError):
    """The name is neither a known dirname nor a slug whose dirname is known: refused."""


class EmptyListingFault(ReconcileError):
    """No deploys under the site prefix while the index has active rows (acting on that
    would prune the whole index: it looks like a wrong bucket or prefix, not like drift)."""


class ReconcileFailed(ReconcileError):
    """A second read or a write failed at one item; earlier repairs stand."""


# --- site enumeration and name resolution ---------------------------------------------------


def known_sites(db: Transactions, layout: KeyLayout) -> list[Dirname]:
    """The sorted union of every dirname in `deploys` (any state), `aliases` and
    `tombstones`, and the dirname rendered from every registry slug."""
    with db.transaction() as conn:
        names = set(deploys_db.known_dirnames(conn))
        names.update(layout.dirname(Slug(row.slug)) for row in sites_db.list_all(conn))
    return sorted(names)


def resolve_site(name: str, known: list[Dirname], layout: KeyLayout) -> Dirname | None:
    """A known dirname as given, else the known dirname the name renders to as a slug."""
    if not name:
        return None
    known_set = set(known)
    if name in known_set:
        return Dirname(name)
    rendered = layout.dirname(Slug(name))
    return rendered if rendered in known_set else None


# --- the snapshot ----------------------------------------------------------------------------


def list_site(
    bucket: BucketReader, layout: KeyLayout, site: Dirname, now: datetime
) -> tuple[list[BucketDeploy], int]:
    """One listing of the site prefix → its deploys (first-seen order, with marker flags,
    id-parsed times and byte sizes from the listing) and the number of keys listed."""
    deploys, keys, _ = scan_site(bucket, layout, site, now)
    return deploys, keys


def scan_site(
    bucket: BucketReader, layout: KeyLayout, site: Dirname, now: datetime
) -> tuple[list[BucketDeploy], int, dict[str, dict[str, Listed]]]:
    """`list_site`, plus every listed object per deploy but its marker (relative key → ETag
    and size): what the marker check and the content index are compared with."""
    prefix = layout.site_prefix(site)
    markers: dict[str, bool] = {}
    sizes: dict[str, int] = {}
    files: dict[str, dict[str, Listed]] = {}
    keys = 0
    for page in bucket.list_pages(prefix):
        for obj in page:
            keys += 1
            deploy_id = layout.deploy_id_of(site, obj.key)
            if deploy_id is None:
                continue  # an empty first segment
            sizes[deploy_id] = sizes.get(deploy_id, 0) + obj.size
            is_marker = obj.key == layout.marker_key(site, deploy_id)
            markers[deploy_id] = markers.get(deploy_id, False) or is_marker
            deploy_prefix = layout.deploy_prefix(site, deploy_id)
            if not is_marker and obj.key.startswith(deploy_prefix):
                rel = obj.key[len(deploy_prefix) :]
                files.setdefault(deploy_id, {})[rel] = Listed(obj.etag, obj.size)
    deploys = [
        BucketDeploy(deploy_id, markers[deploy_id], deploy_time(deploy_id, now), sizes[deploy_id])
        for deploy_id in sizes
    ]
    return deploys, keys, files


@dataclass(frozen=True)
class MarkerReads:
    """What the finalized deploys' markers say, read once per marker: the objects each
    finalize did not record, and, for the deploys with missing index rows only (so a large
    site's digests are not all held), the files record and digests."""

    unrecorded: dict[str, list[str]] = field(default_factory=dict)
    # Deploys finalized with the content index in place (their marker has a digests field,
    # if empty): only these are expected to have a row per file.
    indexed_at_finalize: set[str] = field(default_factory=set)
    records: dict[str, dict[str, str] | None] = field(default_factory=dict)
    digests: dict[str, dict[str, str]] = field(default_factory=dict)


def read_markers(
    bucket: BucketReader,
    layout: KeyLayout,
    site: Dirname,
    deploys: list[BucketDeploy],
    files: dict[str, dict[str, Listed]],
    keep: Collection[str] = (),
) -> MarkerReads:
    """One GET of each listed marker. `unrecorded`: finalized deploys holding objects their
    finalize did not record (a new key, or a key whose ETag changed): id → relative keys.
    `keep`: the deploys whose record and digests to return."""
    reads = MarkerReads()
    for deploy in deploys:
        if not deploy.has_marker:
            continue
        body = bucket.get(layout.marker_key(site, deploy.id))
        record, digests = finalize_record(body), recorded_digests(body)
        if digests is not None:
            reads.indexed_at_finalize.add(deploy.id)
        if deploy.id in keep:
            reads.records[deploy.id] = record
            reads.digests[deploy.id] = digests or {}
        if record is None:
            continue
        extra = sorted(
            key for key, obj in files.get(deploy.id, {}).items() if record.get(key) != obj.etag
        )
        if extra:
            reads.unrecorded[deploy.id] = extra
    return reads


@dataclass(frozen=True)
class SiteSnapshot:
    site: Dirname
    prefix: str
    deploys: tuple[BucketDeploy, ...]
    keys_listed: int
    indexed: tuple[IndexedDeploy, ...]
    # Alias name → the deploy id it names, per store (fixed channels and named previews).
    alias_row_targets: dict[str, str]
    alias_object_targets: dict[str, str]
    tombstoned: frozenset[str] = frozenset()  # deploy ids with a tombstone row
    # Finalized deploys holding objects their finalize did not record: id → relative keys.
    unrecorded: dict[str, list[str]] = field(default_factory=dict)
    # The content index against the listing, and its repair (artemis.reconcile_plan).
    index: IndexPlan = field(default_factory=IndexPlan)

    @property
    def alias_rows(self) -> frozenset[str]:
        return frozenset(self.alias_row_targets.values())

    @property
    def alias_objects(self) -> frozenset[str]:
        return frozenset(self.alias_object_targets.values())

    @property
    def aliased(self) -> frozenset[str]:
        """A deploy either store calls live is live, and nothing ever removes a live deploy."""
        return self.alias_rows | self.alias_objects

    @property
    def alias_drift(self) -> AliasDrift:
        """Alias rows against alias objects, name by name (artemis.reconcile_plan)."""
        return compare_aliases(self.alias_row_targets, self.alias_object_targets)

    def fault(self) -> str | None:
        return listing_fault(len(self.deploys), len(self.indexed), self.prefix)

    def classify(self, now: datetime, grace: timedelta) -> Classification:
        return classify(
            self.deploys, self.indexed, self.aliased, now=now, grace=grace,
            tombstoned=self.tombstoned, unrecorded=self.unrecorded,
        )  # fmt: skip


def read_snapshot(
    bucket: BucketReader, db: Transactions, layout: KeyLayout, site: Dirname, now: datetime
) -> SiteSnapshot:
    """The snapshot, in this order: the listing, the active rows, then alias rows and objects; plus
    the tombstones, the content index and the finalized deploys' markers (what each finalize
    recorded)."""
    deploys, keys, files = scan_site(bucket, layout, site, now)
    with db.transaction() as conn:
        rows = deploys_db.active_for_site(conn, site)
        alias_rows = {row.name: row.deploy_id for row in aliases_db.for_site(conn, site)}
        tombstone_ids = {row.id for row in tombstones_db.for_site(conn, site)}
        states = {
            i: DeployState(state, marker)
            for i, (state, marker) in deploys_db.states_for_site(conn, site).items()
        }
        indexed = content_db.indexed_paths(conn, site)
    tombstoned = frozenset(tombstone_ids - {tombstones_db.SITE_PURGE_ID})
    drift = index_drift(
        files,
        {d.id for d in deploys if d.has_marker},
        states,
        indexed,
        tombstoned=tombstoned,
        site_tombstoned=tombstones_db.SITE_PURGE_ID in tombstone_ids,
    )
    markers = read_markers(bucket, layout, site, deploys, files, keep=drift.missing)
    # A deploy finalized before the content index has no rows by design: backfill indexes it.
    drift = IndexDrift(
        drift.orphans,
        {i: p for i, p in drift.missing.items() if i in markers.indexed_at_finalize},
    )
    return SiteSnapshot(
        site=site,
        prefix=layout.site_prefix(site),
        deploys=tuple(deploys),
        keys_listed=keys,
        indexed=tuple(IndexedDeploy(row.id, row.mtime) for row in rows),
        alias_row_targets=alias_rows,
        alias_object_targets=alias_object_targets(bucket, layout, site),
        tombstoned=tombstoned,
        unrecorded=markers.unrecorded,
        index=plan_index(drift, files, markers.records, markers.digests),
    )


# --- the report ------------------------------------------------------------------------------


@dataclass
class ReconcileReport:
    name: str
    site: str
    slug: str | None
    dry_run: bool
    now: datetime
    keys_listed: int = 0
    active_rows: int = 0
    plan: RepairPlan | None = None
    reindexed: list[str] = field(default_factory=list)
    tombstoned: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    index_rows_deleted: int = 0
    index_rows_restored: int = 0
    # Alias rows against alias objects (planned), and the names whose row was written to
    # match its object or deleted for want of one.
    alias_drift: AliasDrift = field(default_factory=AliasDrift)
    alias_rows_written: list[str] = field(default_factory=list)
    alias_rows_deleted: list[str] = field(default_factory=list)
    # Aliased-missing ids: the snapshot's, plus ids whose alias appeared under the lock.
    aliased_missing: set[str] = field(default_factory=set)
    skipped: list[dict[str, str]] = field(default_factory=list)
    complete: bool = True
    stopped: str | None = None  # "deadline" when the run stopped before its last item
    remaining: list[str] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)
    index_plan: IndexPlan = field(default_factory=IndexPlan)

    def skip(self, repair: Repair, item: str, reason: str) -> None:
        """`item`: a deploy id, or an alias name for an alias repair."""
        self.skipped.append({"id": item, "repair": repair, "reason": reason})

    def counts(self) -> dict[str, Any]:
        planned = self.plan.report if self.plan else Classification()
        index = self.index_plan
        return {
            "planned_reindex": len(planned.reindex),
            "planned_tombstone": len(planned.tombstone),
            "planned_prune": len(planned.prune),
            "reindexed": len(self.reindexed),
            "tombstoned": len(self.tombstoned),
            "pruned": len(self.pruned),
            "aliased_missing": len(self.aliased_missing),
            "aliased_tombstoned": len(planned.aliased_tombstoned),
            "written_after_finalize": len(planned.written_after_finalize),
            "deferred": len(planned.deferred),
            "index_orphan_rows": index.drift.orphan_rows,
            "index_missing_rows": index.drift.missing_rows,
            "index_restore_from_marker": index.restore_rows,
            "index_deferred_to_backfill": index.deferred_rows,
            "index_rows_deleted": self.index_rows_deleted,
            "index_rows_restored": self.index_rows_restored,
            **self.alias_drift.counts(),
            "alias_rows_written": len(self.alias_rows_written),
            "alias_rows_deleted": len(self.alias_rows_deleted),
            "skipped": len(self.skipped),
            "capped": bool(self.plan and self.plan.capped),
            "complete": self.complete,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "site": self.site,
            "slug": self.slug,
            "dry_run": self.dry_run,
            "now": self.now.isoformat(),
            "keys_listed": self.keys_listed,
            "active_rows": self.active_rows,
            "planned": (
                {**self.plan.to_json(), **self.index_plan.to_json(), **self.alias_drift.to_json()}
                if self.plan
                else None
            ),
            "done": {
                "reindex": self.reindexed,
                "tombstone": self.tombstoned,
                "prune": self.pruned,
                "index_rows_deleted": self.index_rows_deleted,
                "index_rows_restored": self.index_rows_restored,
                "alias_rows_written": self.alias_rows_written,
                "alias_rows_deleted": self.alias_rows_deleted,
            },
            "aliased_missing": sorted(self.aliased_missing),
            "skipped": self.skipped,
            "complete": self.complete,
            "stopped": self.stopped,
            "remaining": self.remaining,
            "error": self.error,
            "warnings": self.warnings,
        }


# --- the run ---------------------------------------------------------------------------------


def run_reconcile(
    rt: Runtime[JobSettings], name: str, *, apply: bool, now: datetime, deadline: Deadline
) -> ReconcileReport:
    """Reconcile one site (module docstring). Raises UnknownSite, EmptyListingFault or
    ReconcileFailed (each carrying the report so far) after recording the failed run."""
    layout = rt.settings.key_layout
    ro_db, ro_bucket = ReadOnlyDatabase(rt.db), ReadOnlyBucket(rt.bucket)
    site = resolve_site(name, known_sites(ro_db, layout), layout)
    with job_run(rt.db, JOB, site=site or name, dry_run=not apply) as record:
        if site is None:
            logger.error("reconcile.unknown_site", extra={"requested": name})
            raise UnknownSite(
                f"{name!r} is neither a known dirname nor a registered slug whose dirname is"
                " known; refusing to reconcile"
            )
        report = ReconcileReport(name, site, layout.slug_for(site), not apply, now)
        try:
            _plan_and_repair(rt, report, ro_bucket, ro_db, record, deadline)
        except ReconcileError:
            raise
        except Exception as err:  # a snapshot read, the lock session …: fail with the report
            report.complete = False
            report.error = report.error or f"{type(err).__name__}: {err}"
            raise ReconcileFailed(report.error, report) from err
        finally:
            record.counts.update(report.counts())
    logger.info("reconcile.site.done", extra={"site": site, "counts": report.counts()})
    return report


def _plan_and_repair(
    rt: Runtime[JobSettings],
    report: ReconcileReport,
    bucket: ReadOnlyBucket,
    db: ReadOnlyDatabase,
    record: RunRecord,
    deadline: Deadline,
) -> None:
    layout, site, now = rt.settings.key_layout, Dirname(report.site), report.now
    snap = read_snapshot(bucket, db, layout, site, now)
    report.keys_listed, report.active_rows = snap.keys_listed, len(snap.indexed)
    fault = snap.fault()
    if fault is not None:
        logger.error("reconcile.empty_listing", extra={"site": site, "fault": fault})
        raise EmptyListingFault(fault, report)
    grace = timedelta(seconds=rt.settings.cleanup_grace)
    plan = build_plan(
        snap.classify(now, grace), rt.settings.cleanup_blast_cap, dry_run=report.dry_run
    )
    report.plan = plan
    report.index_plan = snap.index
    report.alias_drift = snap.alias_drift
    report.aliased_missing.update(plan.classification.aliased_missing)
    if len(plan.classification.prune) * 2 > len(snap.indexed):
        # The sweep's self-check 4, scoped to this site: a warning for the operator to weigh
        # (the blast cap still bounds a live run).
        report.warnings.append(
            f"{len(plan.classification.prune)} planned prunes would drop more than half of"
            f" the site's {len(snap.indexed)} active rows"
        )
    _log_plan(site, snap, plan)
    record.record_plan({**plan.to_json(), **snap.index.to_json(), **snap.alias_drift.to_json()})
    if not report.dry_run:
        _repair(rt, snap, plan, report, now, deadline)


def _log_plan(site: Dirname, snap: SiteSnapshot, plan: RepairPlan) -> None:
    full = plan.classification
    for deploy_id in full.reindex:
        if deploy_id in snap.aliased:  # class 1: self-heals by reindex; a warning, no page
            logger.warning("reconcile.aliased_unindexed", extra={"site": site, "id": deploy_id})
    if full.aliased_missing:
        logger.error(
            "reconcile.aliased_bytes_missing",
            extra={"site": site, "ids": list(full.aliased_missing)},
        )
    if full.aliased_tombstoned:  # report-only: an operator decides (restore or re-point)
        logger.error(
            "reconcile.aliased_tombstoned",
            extra={"site": site, "ids": list(full.aliased_tombstoned)},
        )
    if full.written_after_finalize:
        logger.error(
            "reconcile.written_after_finalize",
            extra={"site": site, "objects": {i: snap.unrecorded.get(i, []) for i in
                                              full.written_after_finalize}},
        )  # fmt: skip
    aliases = snap.alias_drift
    if not aliases.is_clean():  # the index lags the bucket: a warning, repaired by --apply
        logger.warning("reconcile.alias_drift", extra={"site": site, **aliases.to_json()})
    if full.deferred:
        logger.info("reconcile.prune_deferred", extra={"site": site, "ids": list(full.deferred)})
    index = snap.index
    if index.deploys:
        logger.warning(
            "reconcile.index_drift",
            extra={"site": site, **index.to_json()},
        )
    if plan.capped:
        logger.warning("reconcile.capped", extra={"site": site, "reason": plan.reason})


def _repair(
    rt: Runtime[JobSettings],
    snap: SiteSnapshot,
    plan: RepairPlan,
    report: ReconcileReport,
    now: datetime,
    deadline: Deadline,
) -> None:
    work = _Repairer(rt, snap, report, now)
    queue: list[tuple[Repair, str]] = [
        # The alias rows first: they touch no bytes and decide nothing below (the plan took
        # the union of rows and objects), so they need not wait behind slow moves.
        *(("alias", m.name) for m in snap.alias_drift.mismatches),
        *(("reindex", i) for i in plan.reindex),
        *(("tombstone", i) for i in plan.tombstone),
        *(("prune", i) for i in plan.prune),
        # After the deploy repairs, so a reindexed deploy's rows are judged as live.
        *(("index", i) for i in snap.index.deploys),
    ]
    steps: dict[Repair, Callable[[str], None]] = {
        "alias": work.alias,
        "reindex": work.reindex,
        "tombstone": work.tombstone,
        "prune": work.prune,
        "index": work.index,
    }
    with SiteLockSession(rt.db.conninfo) as session:
        for position, (repair, deploy_id) in enumerate(queue):
            if not deadline.has(ITEM_RESERVE_SECONDS):
                report.complete, report.stopped = False, "deadline"
                report.remaining = [i for _, i in queue[position:]]
                logger.warning(
                    "reconcile.deadline",
                    extra={"site": snap.site, "remaining": len(report.remaining)},
                )
                return
            try:
                with session.hold(snap.site):
                    steps[repair](deploy_id)
            except Exception as err:
                report.complete = False
                report.error = f"{repair} {deploy_id}: {type(err).__name__}: {err}"
                raise ReconcileFailed(report.error, report) from err
            finally:
                work.flush_audits()  # outside the lock


class _Repairer:
    """The repairs, each run under the site lock with its own second read."""

    def __init__(
        self, rt: Runtime[JobSettings], snap: SiteSnapshot, report: ReconcileReport, now: datetime
    ) -> None:
        self.rt, self.snap, self.report, self.now = rt, snap, report, now
        self.site = snap.site
        self.layout = rt.settings.key_layout
        self.grace = timedelta(seconds=rt.settings.cleanup_grace)
        self.audits: list[audit_db.AuditEntry] = []

    # --- second reads ---------------------------------------------------------------------
    def _alias_appeared(self, deploy_id: str) -> str | None:
        """Which store (rows first, then objects) now calls the deploy live, if any."""
        with self.rt.db.transaction() as conn:
            rows = {row.deploy_id for row in aliases_db.for_site(conn, self.site)}
        if deploy_id in rows:
            return "alias row"
        if deploy_id in alias_objects(self.rt.bucket, self.layout, self.site):
            return "alias object"
        return None

    def _skip(self, repair: Repair, deploy_id: str, reason: str, *, aliased: bool = False) -> None:
        event = {
            "alias": "reconcile.alias_skipped",
            "reindex": "reconcile.reindex_refused",
            "tombstone": "reconcile.tombstone_skipped",
            "prune": "reconcile.prune_skipped",
            "index": "reconcile.index_skipped",
        }[repair]
        logger.warning(event, extra={"site": self.site, "id": deploy_id, "reason": reason})
        self.report.skip(repair, deploy_id, reason)
        if aliased:
            self.report.aliased_missing.add(deploy_id)

    # --- repairs ----------------------------------------------------------------------------
    def alias(self, name: str) -> None:
        """Make one alias row agree with its alias object (the bucket is the truth). Both are
        re-read under the lock and the repair proceeds only while they still disagree exactly
        as the snapshot saw: an alias move in between (object, then row, under this lock)
        is the truth now, never undone. A row is written naming the object's deploy, or,
        without an object, deleted only while it still names the deploy it named."""
        planned = self.snap.alias_drift.by_name()[name]
        target = self.rt.bucket.get_alias(self.layout.alias_key(self.site, name))
        with self.rt.db.transaction() as conn:
            row = aliases_db.get(conn, self.site, name)
            current = compare_alias(name, row.deploy_id if row else None, target)
            if current != planned:
                reason = "alias agrees now" if current is None else "alias changed"
            elif planned.object is None:
                # Compare-and-delete ("" matches no row: a mismatch always names one).
                deleted = aliases_db.delete(conn, self.site, name, planned.row or "")
                if deleted:  # as an alias move does: the deploy it left keeps its grace
                    deploys_db.stamp_release(conn, self.site, planned.row, "", self.now)
                reason = "" if deleted else "alias changed"
            elif not is_alias_name(name):  # the table's name rule would refuse the row
                reason = "not an alias name"
            else:
                deploys_db.stamp_release(conn, self.site, planned.row, planned.object, self.now)
                aliases_db.upsert(conn, self.site, name, planned.object, self.now, by=ACTOR)
                reason = ""
        if reason:
            self._skip("alias", name, reason)
            return
        if planned.object is None:
            self.report.alias_rows_deleted.append(name)
        else:
            self.report.alias_rows_written.append(name)
        logger.info(
            "reconcile.alias_repaired",
            extra={"site": self.site, "alias": name, "row": planned.row,
                   "object": planned.object, "class": planned.kind},
        )  # fmt: skip
        self._audit(
            "gc.reconcile.alias",
            planned.object or planned.row or "",
            {**planned.to_json(), "class": planned.kind},
        )

    def reindex(self, deploy_id: str) -> None:
        listing = self.rt.bucket.list_keys(self.layout.deploy_prefix(self.site, deploy_id))
        was_aliased = deploy_id in self.snap.aliased
        if not listing:
            self._skip("reindex", deploy_id, "bytes vanished", aliased=was_aliased)
            return
        marker = self.layout.marker_key(self.site, deploy_id)
        has_marker = any(obj.key == marker for obj in listing)
        with self.rt.db.transaction() as conn:
            written = deploys_db.reindex(
                conn, self.site, deploy_id, deploy_time(deploy_id, self.now), has_marker
            )
        if not written:
            self._skip("reindex", deploy_id, "tombstoned", aliased=was_aliased)
            return
        self.report.reindexed.append(deploy_id)
        if was_aliased:
            logger.warning(
                "reconcile.aliased_unindexed_reindexed", extra={"site": self.site, "id": deploy_id}
            )

    def tombstone(self, deploy_id: str) -> None:
        with self.rt.db.transaction() as conn:
            row = deploys_db.get(conn, self.site, deploy_id)
        if row is not None and row.state == "active":
            self._skip("tombstone", deploy_id, "gained a row")
            return
        appeared = self._alias_appeared(deploy_id)
        if appeared is not None:
            self._skip("tombstone", deploy_id, f"{appeared} appeared", aliased=True)
            return
        prefix = self.layout.deploy_prefix(self.site, deploy_id)
        listing = self.rt.bucket.list_keys(prefix)
        if not listing:
            self._skip("tombstone", deploy_id, "bytes gone")
            return
        if any(obj.key == self.layout.marker_key(self.site, deploy_id) for obj in listing):
            self._skip("tombstone", deploy_id, "marker appeared")
            return
        size = sum(obj.size for obj in listing)
        with self.rt.db.transaction() as conn:  # row first …
            tombstones_db.tombstone_deploy(conn, self.site, deploy_id, size)
            # As GC does: the rows its uploads recorded go with the tombstone.
            content_db.drop_deploys(conn, self.site, [deploy_id])
        try:  # … bytes second
            moved = self.rt.bucket.move_prefix(
                prefix, self.layout.deploy_trash_prefix(self.site, deploy_id)
            )
        except MoveIncomplete as err:
            self._audit("gc.reconcile", deploy_id, {"bytes": size, "moved": False})
            logger.error(
                "reconcile.tombstone_move_deferred",
                extra={"site": self.site, "id": deploy_id, "moved": err.moved},
            )
            raise
        self._audit("gc.reconcile", deploy_id, {"bytes": size, "moved": True, "objects": moved})
        try:
            with self.rt.db.transaction() as conn:
                tombstones_db.mark_moved(conn, self.site, deploy_id)
        except Exception:  # the move is done; a pending mark only means a no-op re-drive
            logger.exception(
                "reconcile.mark_moved_failed", extra={"site": self.site, "id": deploy_id}
            )
        self.report.tombstoned.append(deploy_id)

    def prune(self, deploy_id: str) -> None:
        if self.rt.bucket.has_prefix(self.layout.deploy_prefix(self.site, deploy_id)):
            self._skip("prune", deploy_id, "bytes present")
            return
        appeared = self._alias_appeared(deploy_id)
        if appeared is not None:
            self._skip("prune", deploy_id, f"{appeared} appeared", aliased=True)
            return
        with self.rt.db.transaction() as conn:
            row = deploys_db.get(conn, self.site, deploy_id)
            if row is None or row.state != "active":
                deleted = False
                reason = "row gone" if row is None else "row is pending"
            elif self.now - row.mtime < self.grace:
                deleted, reason = False, "row is inside grace"
            else:
                deleted, reason = deploys_db.delete(conn, self.site, deploy_id), "row gone"
        if not deleted:
            self._skip("prune", deploy_id, reason)
            return
        self.report.pruned.append(deploy_id)
        logger.info("reconcile.pruned", extra={"site": self.site, "id": deploy_id})
        self._audit("gc.reconcile.prune", deploy_id, {})

    def index(self, deploy_id: str) -> None:
        """Delete the deploy's orphan rows and restore its missing ones from its marker, after
        re-reading (under the lock) its row, its prefix listing and its marker: a row is
        deleted only if its path is still not listed (all of them when the deploy left the
        live set), a digest restored only if the marker's ETag is still the listing's, and
        only into a deploy still finalized and live."""
        item = self.snap.index.deploys[deploy_id]
        with self.rt.db.transaction() as conn:
            row = deploys_db.get(conn, self.site, deploy_id)
            tombstoned = any(
                t.id in (deploy_id, tombstones_db.SITE_PURGE_ID)
                for t in tombstones_db.for_site(conn, self.site)
            )
        if row is not None and row.state != "active" and not tombstoned:
            self._skip("index", deploy_id, "deploy in flight")
            return
        prefix = self.layout.deploy_prefix(self.site, deploy_id)
        marker_key = self.layout.marker_key(self.site, deploy_id)
        listed = {
            obj.key[len(prefix) :]: Listed(obj.etag, obj.size)
            for obj in self.rt.bucket.list_keys(prefix)
            if obj.key != marker_key
        }
        live = row is not None and not tombstoned
        orphans = [p for p in item.orphans if not live or p not in listed]
        restore: list[FileDigest] = []
        if live and item.restore:
            body = self.rt.bucket.get(marker_key)
            trusted = trusted_digests(
                finalize_record(body), finalize_digests(body), listed, item.restore
            )
            restore = [FileDigest(p, bytes.fromhex(d), listed[p].size) for p, d in trusted.items()]
        with self.rt.db.transaction() as conn:
            if live:
                deleted = content_db.forget(conn, self.site, deploy_id, orphans)
            else:  # out of the live set: every row it has points at nothing
                deleted = content_db.drop_deploys(conn, self.site, [deploy_id])
            restored = content_db.fill_finalized(conn, self.site, deploy_id, restore) or 0
        self.report.index_rows_deleted += deleted
        self.report.index_rows_restored += restored
        logger.info(
            "reconcile.index_repaired",
            extra={"site": self.site, "id": deploy_id, "deleted": deleted, "restored": restored},
        )

    # --- audit --------------------------------------------------------------------------------
    def _audit(self, action: str, deploy_id: str, detail: dict[str, Any]) -> None:
        self.audits.append(
            system_audit_entry(self.layout, ACTOR, action, self.site, deploy_id, detail)
        )

    def flush_audits(self) -> None:
        """Write the pending audit rows; best effort (a failure logs and never aborts)."""
        pending, self.audits = self.audits, []
        for entry in pending:
            write_audit(self.rt.db, entry)
