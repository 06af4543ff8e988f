"""drift-detect: the nightly, read-only fleet sweep.

**Read-only by construction.** Every site is read through `ReadOnlyBucket` and
`ReadOnlyDatabase` (artemis.readonly): their write methods raise `ReadOnlyViolation` and the
database transactions are `READ ONLY`, so Postgres itself refuses a write. The sweep takes no
site lock and writes no audit row; it repairs nothing (every repair is started by an operator,
who reviews it first — `artemis-admin reconcile <site> [--apply]`). Its only writes are its own
bookkeeping — the `job_runs` row of each invocation and the `drift_runs`/`drift_site_results`
rows of the sweep (artemis.db.drift_runs) — which never touch a domain table. (In production
the function's role should mirror this: list/get on the bucket, SELECT on the domain tables.)

**One site**: the reconciler's snapshot and classification (artemis.jobs.reconcile,
artemis.reconcile_plan) in dry-run mode — reindex, tombstone, prune and aliased-missing lists,
the deferred ids, and whether a live repair would be capped — plus the content index against
the same listing: `index_orphan_rows` (rows of `deploy_files` whose deploy left the live set,
or whose path that deploy's listing does not show) and `index_missing_rows` (objects of a
finalized live deploy without a row), each a count with a bounded sample of examples; plus
the alias rows against the alias objects, name by name, fixed and named alike
(`alias_row_missing`, `alias_object_missing`, `alias_row_stale`: artemis.drift_report). No
HEAD per file: the one listing, the one GET of each marker and the alias reads (a listing of
the named previews' folder and one GET per alias object) are all it reads. A site whose
listing is empty while it has active rows is not classified (the reconciler's empty-listing
fault); a site that cannot be read records its error. Both count as *unreadable*: unknown
drift, never zero drift.

**Sharding: resumable batches.** The production scale-out path for very large fleets is a
Step Functions Map over sites (Distributed Map above a few thousand) feeding a results table.
Here one function does it in resumable batches:

* A sweep is a `drift_runs` row: `as_of` (the one instant every batch classifies against, so
  resumed batches agree), `expires_at` (`as_of` + `Shard.run_budget`), `cursor` (the last
  dirname swept) and running `totals`.
* Each invocation enumerates the sites (the sorted union of every dirname any table
  holds and every registry slug rendered to a dirname), keeps those after the cursor, and
  sweeps them in sorted batches of `Shard.batch_size`, each batch's sites in parallel on a
  bounded thread pool (`Shard.workers`). A batch commits its notable per-site results, its
  totals and the new cursor in one transaction, guarded by a compare-and-set on the cursor, so
  a concurrent or repeated invocation can never count a batch twice.
* Before every batch after the first, the invocation checks its Deadline
  (`Shard.batch_reserve_seconds`); out of time, it returns `complete: false` and the next
  invocation resumes after the cursor. Each invocation makes progress (one batch at least).
* When the last batch is in, the active-row total is counted, the self-check and the verdict
  are computed, and the run is closed. If the run's `expires_at` passes first, the sites not yet
  swept are recorded as unreadable ("a site that does not finish by the run deadline counts as
  unreadable") and the run is closed with that verdict.
* Which run an invocation works on: an explicit `run_id` (a Step Functions loop passes back the
  previous output's `run_id` until `complete`); else the open scheduled run; else, unless a
  scheduled run started within `Shard.min_interval`, a new one. So the schedule may tick
  repeatedly through the sweep window (e.g. every 10 minutes from 04:00): ticks resume the open
  run, and ticks after it closed are recorded as skipped. At most one scheduled run is open at a
  time (a unique index). `fresh=True` (`artemis-admin driftreport`) starts an operator run of
  its own, which the schedule never resumes.

**Verdict, self-check and alert**: artemis.drift_report decides them from the totals. A run
that fails raises `DriftFailed` after its `job_runs` row and its verdict are recorded.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from artemis.config import JobSettings
from artemis.db import deploys as deploys_db
from artemis.db import drift_runs
from artemis.db.connection import Database
from artemis.db.drift_runs import RunState
from artemis.deadlines import Deadline
from artemis.drift_report import (
    DriftReport,
    SiteResult,
    alert_of,
    merge_totals,
    self_check,
    totals_of,
    verdict_of,
)
from artemis.jobs.common import job_run
from artemis.jobs.reconcile import BucketReader, Transactions, known_sites, read_snapshot
from artemis.keys import Dirname, KeyLayout
from artemis.observability import logger
from artemis.readonly import ReadOnlyBucket, ReadOnlyDatabase, ReadOnlyViolation
from artemis.reconcile_plan import apply_cap
from artemis.runtime import Runtime

JOB = "drift-detect"
RESULT_RETENTION = timedelta(days=30)
DEADLINE_ERROR = "the sweep's run deadline passed before this site was read"


@dataclass(frozen=True)
class Shard:
    """How a sweep is cut into resumable batches (module docstring)."""

    batch_size: int = 25
    workers: int = 8
    run_budget: timedelta = timedelta(hours=2)
    min_interval: timedelta = timedelta(hours=20)
    batch_reserve_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 1:
            raise ValueError("batch_size and workers must be >= 1")


class DriftError(Exception):
    """The sweep could not produce a result (`drift.sweep`)."""


class DriftFailed(Exception):
    """The sweep completed with a failing verdict (recorded before this is raised)."""

    def __init__(self, report: DriftReport) -> None:
        super().__init__(f"drift verdict {report.verdict}: {report.summary()}")
        self.report = report


# --- one site -------------------------------------------------------------------------------


def sweep_site(
    bucket: BucketReader,
    db: Transactions,
    layout: KeyLayout,
    site: Dirname,
    *,
    as_of: datetime,
    grace: timedelta,
    cap: int,
) -> SiteResult:
    """Classify one site, dry: never raises for a site that cannot be read (it is recorded
    as unreadable), except for a ReadOnlyViolation, which is a bug and stops the sweep."""
    slug = layout.slug_for(site)
    try:
        snap = read_snapshot(bucket, db, layout, site, as_of)
    except ReadOnlyViolation:
        raise
    except Exception as err:
        code = getattr(err, "code", None)
        error = f"{type(err).__name__}{f' {code}' if code else ''}: {err}"
        logger.warning("drift.site_unreadable", extra={"site": site, "error": error})
        return SiteResult(site, slug, error=error)
    fault = snap.fault()
    if fault is not None:
        return SiteResult(
            site, slug, keys_listed=snap.keys_listed, active_rows=len(snap.indexed), fault=fault
        )
    classification = snap.classify(as_of, grace)
    decision = apply_cap(classification, cap)  # dry: the full lists stay in the report
    index = snap.index.drift
    return SiteResult(
        site,
        slug,
        classification,
        keys_listed=snap.keys_listed,
        active_rows=len(snap.indexed),
        capped=decision.capped,
        cap_reason=decision.reason,
        index_orphan_rows=index.orphan_rows,
        index_missing_rows=index.missing_rows,
        index_orphan_sample=index.orphan_sample(),
        index_missing_sample=index.missing_sample(),
        aliases=snap.alias_drift,
    )


# --- the sweep's own bookkeeping (its only writes) ----------------------------------------------


class _Ledger:
    """The run's rows in `drift_runs`/`drift_site_results`, each call its own transaction on the
    writable database (the domain reads go through the read-only views instead)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def get(self, run_id: int) -> RunState | None:
        with self._db.transaction() as conn:
            return drift_runs.get(conn, run_id)

    def open_scheduled(self) -> RunState | None:
        with self._db.transaction() as conn:
            return drift_runs.open_scheduled(conn)

    def latest_scheduled(self) -> RunState | None:
        with self._db.transaction() as conn:
            return drift_runs.latest_scheduled(conn)

    def create(self, as_of: datetime, budget: timedelta, origin: str) -> RunState | None:
        """A new run; None when a scheduled run is open already."""
        with self._db.transaction() as conn:
            drift_runs.delete_finished_before(conn, as_of - RESULT_RETENTION)
        with self._db.transaction() as conn:
            return drift_runs.create(conn, origin, as_of, as_of + budget)

    def commit_batch(
        self, run: RunState, cursor: str, results: list[SiteResult]
    ) -> RunState | None:
        """Store a batch and advance the cursor in one transaction, only if nobody advanced it
        meanwhile (None then: the transaction wrote nothing)."""
        totals = merge_totals(run.totals, totals_of(results))
        with self._db.transaction() as conn:
            advanced = drift_runs.advance(conn, run, cursor, totals)
            if advanced is not None:
                notable = [(r.site, r.to_json()) for r in results if r.notable]
                drift_runs.add_results(conn, run.id, notable)
        return advanced

    def finish(
        self, run: RunState, verdict: str, active_rows_total: int, selfcheck: list[str]
    ) -> RunState | None:
        with self._db.transaction() as conn:
            return drift_runs.finish(conn, run, verdict, active_rows_total, selfcheck)

    def results(self, run_id: int) -> list[SiteResult]:
        with self._db.transaction() as conn:
            return [SiteResult.from_json(r) for r in drift_runs.results(conn, run_id)]


# --- the run ------------------------------------------------------------------------------------


def run_drift(
    rt: Runtime[JobSettings],
    *,
    now: datetime,
    deadline: Deadline,
    shard: Shard | None = None,
    run_id: int | None = None,
    fresh: bool = False,
) -> DriftReport:
    """One invocation of the sweep (module docstring). Returns the report — `complete: false`
    when the deadline cut it short — or raises DriftFailed (a failing verdict, recorded) or
    DriftError (no result could be produced)."""
    shard = shard or Shard()
    ledger = _Ledger(rt.db)
    started = time.monotonic()
    with job_run(rt.db, JOB, dry_run=True) as record:
        run = _select_run(ledger, now, shard, run_id, fresh)
        if run is None or run.finished_at is not None:
            report = _skipped_report(ledger, run)
        else:
            report = _sweep(rt, ledger, run, now, deadline, shard)
        report.duration_s = time.monotonic() - started
        record.counts.update(report.counts())
        record.skipped = report.skipped
        if report.failed:
            raise DriftFailed(report)
    return report


def _select_run(
    ledger: _Ledger, now: datetime, shard: Shard, run_id: int | None, fresh: bool
) -> RunState | None:
    if run_id is not None:
        run = ledger.get(run_id)
        if run is None:
            raise DriftError(f"no drift run {run_id}")
        return run
    if fresh:
        return ledger.create(now, shard.run_budget, "operator")
    run = ledger.open_scheduled()
    if run is not None:
        return run
    latest = ledger.latest_scheduled()
    if latest is not None and now - latest.as_of < shard.min_interval:
        return latest  # finished within the interval: this tick has nothing to do
    return ledger.create(now, shard.run_budget, "schedule") or ledger.open_scheduled()


def _skipped_report(ledger: _Ledger, run: RunState | None) -> DriftReport:
    if run is None:
        return DriftReport(None, None, False, skipped=True, note="no drift run to work on")
    report = _closed_report(ledger, run)
    report.skipped = True
    report.note = "the run had already finished"
    return report


def _closed_report(ledger: _Ledger, run: RunState) -> DriftReport:
    return DriftReport(
        run.id,
        run.as_of,
        complete=True,
        cursor=run.cursor,
        totals=merge_totals(run.totals, {}),
        active_rows_total=run.active_rows_total,
        selfcheck=list(run.selfcheck),
        verdict=run.verdict,
        sites=ledger.results(run.id),
    )


def _sweep(
    rt: Runtime[JobSettings],
    ledger: _Ledger,
    run: RunState,
    now: datetime,
    deadline: Deadline,
    shard: Shard,
) -> DriftReport:
    layout = rt.settings.key_layout
    grace = timedelta(seconds=rt.settings.cleanup_grace)
    cap = rt.settings.cleanup_blast_cap
    ro_db, ro_bucket = ReadOnlyDatabase(rt.db), ReadOnlyBucket(rt.bucket)
    try:
        sites = known_sites(ro_db, layout)
    except ReadOnlyViolation:
        raise
    except Exception as err:
        error = f"{type(err).__name__}: {err}"
        logger.error(
            "drift.sweep", extra={"operation": "drift.sweep", "run_id": run.id, "error": error}
        )
        raise DriftError("site enumeration failed") from err
    pending = [site for site in sites if site > run.cursor]
    expired = now >= run.expires_at
    report = DriftReport(run.id, run.as_of, complete=False, cursor=run.cursor)
    while pending and not expired:
        if report.batches > 0 and not deadline.has(shard.batch_reserve_seconds):
            break
        batch, pending = pending[: shard.batch_size], pending[shard.batch_size :]
        results = _sweep_batch(ro_bucket, ro_db, layout, batch, run.as_of, grace, cap, shard)
        advanced = ledger.commit_batch(run, batch[-1], results)
        if advanced is None:
            return _lost_race(report, run)
        run = advanced
        report.batches += 1
        report.sites_this_invocation += len(batch)
        report.cursor = run.cursor
    if pending and not expired:
        report.totals = merge_totals(run.totals, {})
        logger.info(
            "drift.batch.paused",
            extra={"run_id": run.id, "cursor": run.cursor, "remaining": len(pending)},
        )
        return report
    if pending:  # the run deadline passed: what was not swept is unknown drift
        unread = [SiteResult(s, layout.slug_for(s), error=DEADLINE_ERROR) for s in pending]
        advanced = ledger.commit_batch(run, pending[-1], unread)
        if advanced is None:
            return _lost_race(report, run)
        run = advanced
        report.cursor = run.cursor
    return _close(ledger, run, ro_db, report)


def _sweep_batch(
    bucket: ReadOnlyBucket,
    db: ReadOnlyDatabase,
    layout: KeyLayout,
    batch: list[Dirname],
    as_of: datetime,
    grace: timedelta,
    cap: int,
    shard: Shard,
) -> list[SiteResult]:
    with ThreadPoolExecutor(max_workers=min(shard.workers, len(batch))) as pool:
        return list(
            pool.map(
                lambda site: sweep_site(
                    bucket, db, layout, site, as_of=as_of, grace=grace, cap=cap
                ),
                batch,
            )
        )


def _lost_race(report: DriftReport, run: RunState) -> DriftReport:
    logger.info("drift.batch.lost_race", extra={"run_id": run.id, "cursor": run.cursor})
    report.skipped = True
    report.note = "another invocation advanced this run; stopping"
    return report


def _close(
    ledger: _Ledger, run: RunState, ro_db: ReadOnlyDatabase, report: DriftReport
) -> DriftReport:
    with ro_db.transaction() as conn:
        active_total = deploys_db.count_active(conn)
    totals = merge_totals(run.totals, {})
    failures = self_check(totals, active_total)
    verdict, failed = verdict_of(totals, failures)
    if ledger.finish(run, verdict, active_total, failures) is None:
        return _lost_race(report, run)
    report.complete = True
    report.totals = totals
    report.active_rows_total = active_total
    report.selfcheck = failures
    report.verdict = verdict
    report.failed = failed
    report.sites = ledger.results(run.id)
    _alert(report)
    return report


def _alert(report: DriftReport) -> None:
    """Log the completed run's one alert: a structured event, never damped."""
    alert = alert_of(report)
    getattr(logger, alert.level)(alert.event, extra=alert.fields)
