"""drift-detect: the nightly, read-only fleet sweep (spec/durable.md §9.4, §11.5; DECISIONS
Q7, Q9).

**Read-only by construction.** Every site is read through `ReadOnlyBucket` and
`ReadOnlyDatabase` (artemis.readonly): their write methods raise `ReadOnlyViolation` and the
database transactions are `READ ONLY`, so Postgres itself refuses a write. The sweep takes no
site lock and writes no audit row; it repairs nothing (Q9: every repair is operator-started —
`artemis-admin reconcile <site> [--apply]`). Its only writes are its own bookkeeping — the
`job_runs` row of each invocation and the `drift_runs`/`drift_site_results` rows of the sweep —
made by `_Ledger`, which never touches a domain table. (In production the function's role
SHOULD mirror this: list/get on the bucket, SELECT on the domain tables.)

**One site** (§9.4.3): the reconciler's snapshot and classification (artemis.jobs.reconcile,
artemis.reconcile_plan) in dry-run mode — reindex, tombstone, prune and aliased-missing lists,
the deferred ids, and whether a live repair would be capped. A site whose listing is empty
while it has active rows is not classified (the reconciler's empty-listing fault); a site that
cannot be read records its error. Both count as *unreadable*: unknown drift, never zero drift.

**Sharding: resumable batches.** The production scale-out path for very large fleets is a
Step Functions Map over sites (Distributed Map above a few thousand) feeding a results table.
Here one function does it in resumable batches:

* A sweep is a `drift_runs` row: `as_of` (the one instant every batch classifies against, so
  resumed batches agree — V9), `expires_at` (`as_of` + `Shard.run_budget`), `cursor` (the last
  dirname swept) and running `totals`.
* Each invocation enumerates the sites (§9.4.2: the sorted union of every dirname any table
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
  unreadable", §11.5) and the run is closed with that verdict.
* Which run an invocation works on: an explicit `run_id` (a Step Functions loop passes back the
  previous output's `run_id` until `complete`); else the open scheduled run; else, unless a
  scheduled run started within `Shard.min_interval`, a new one. So the schedule may tick
  repeatedly through the sweep window (e.g. every 10 minutes from 04:00): ticks resume the open
  run, and ticks after it closed are recorded as skipped. At most one scheduled run is open at a
  time (a unique index). `fresh=True` (`artemis-admin driftreport`) starts an operator run of
  its own, which the schedule never resumes.

**Verdict and alerts** (§9.4.5, DECISIONS Q7) — exactly one per completed run, in priority
order, logged as a structured event named after its operation and never damped:

| verdict                  | when                                | log level | run              |
| ------------------------ | ----------------------------------- | --------- | ---------------- |
| `selfcheck`              | a self-check failed                 | error     | fails            |
| `aliased_missing`        | any aliased-but-missing deploy      | error     | fails if a site  |
| `aliased_tombstoned`     | any alias naming a tombstoned deploy| error     | was also         |
| `written_after_finalize` | any object a finalize did not record| error     | unreadable       |
| `unreadable`             | any site unreadable                 | error     | fails            |
| `reclaimable`            | reindex + tombstone >= 25, fleet    | warning   | succeeds         |
| `clean`                  | otherwise                           | info      | succeeds         |

The three dangerous classes (`DANGEROUS`) page whatever the verdict: a completed run emits
`drift.<class>` (and their sum, `drift.dangerous`) and the template alarms on each class above
zero, so a run that succeeds still pages for them.

A run that fails raises `DriftFailed` after its `job_runs` row and its verdict are recorded.
Self-check (§9.4.4): (1) zero sites swept; (2) the table holds active rows but the swept sites
matched none; (3) the swept sites have active rows but the bucket listing returned no objects
— checks 2 and 3 are skipped when a site raised a read error (an empty-listing fault does not
skip them: it is exactly the shape check 3 exists to catch); (4) planned prunes x 2 > active
rows read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from artemis.config import JobSettings
from artemis.db import deploys as deploys_db
from artemis.db.connection import Database
from artemis.jobs.common import Deadline, job_run
from artemis.jobs.reconcile import BucketReader, Transactions, known_sites, read_snapshot
from artemis.keys import Dirname, KeyLayout
from artemis.observability import logger
from artemis.readonly import ReadOnlyBucket, ReadOnlyDatabase, ReadOnlyViolation
from artemis.reconcile_plan import Classification, apply_cap
from artemis.runtime import Runtime

JOB = "drift-detect"
RECLAIMABLE_THRESHOLD = 25
VERDICTS = (
    "selfcheck",
    "aliased_missing",
    "aliased_tombstoned",
    "written_after_finalize",
    "unreadable",
    "reclaimable",
    "clean",
)
# The classes that page (each has its alarm in template.yaml, on the metric drift.<class>).
DANGEROUS = ("aliased_missing", "aliased_tombstoned", "written_after_finalize")
RESULT_RETENTION = timedelta(days=30)
TOTAL_KEYS = (
    "sites_swept",
    "keys_listed",
    "active_rows_read",
    "reindex",
    "tombstone",
    "prune",
    "aliased_missing",
    "aliased_tombstoned",
    "written_after_finalize",
    "dangerous",
    "deferred",
    "unreadable",
    "read_errors",
    "faults",
    "capped_sites",
)
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


@dataclass(frozen=True)
class SiteResult:
    site: str
    slug: str | None = None
    classification: Classification = field(default_factory=Classification)
    keys_listed: int = 0
    active_rows: int = 0
    capped: bool = False
    cap_reason: str = ""
    fault: str | None = None  # the empty-listing fault: not classified
    error: str | None = None  # could not be read

    @property
    def unreadable(self) -> bool:
        return self.fault is not None or self.error is not None

    @property
    def notable(self) -> bool:
        """Worth a row in drift_site_results (clean sites only add to the totals)."""
        c = self.classification
        return self.unreadable or self.capped or not c.is_clean() or bool(c.deferred)

    def to_json(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "slug": self.slug,
            **self.classification.to_json(),
            "keys_listed": self.keys_listed,
            "active_rows": self.active_rows,
            "capped": self.capped,
            "cap_reason": self.cap_reason,
            "fault": self.fault,
            "error": self.error,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SiteResult:
        return cls(
            site=data["site"],
            slug=data.get("slug"),
            classification=Classification.from_json(data),
            keys_listed=int(data.get("keys_listed", 0)),
            active_rows=int(data.get("active_rows", 0)),
            capped=bool(data.get("capped", False)),
            cap_reason=str(data.get("cap_reason", "")),
            fault=data.get("fault"),
            error=data.get("error"),
        )


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
    return SiteResult(
        site,
        slug,
        classification,
        keys_listed=snap.keys_listed,
        active_rows=len(snap.indexed),
        capped=decision.capped,
        cap_reason=decision.reason,
    )


def totals_of(results: Iterable[SiteResult]) -> dict[str, int]:
    totals = dict.fromkeys(TOTAL_KEYS, 0)
    for r in results:
        c = r.classification
        totals["sites_swept"] += 1
        totals["keys_listed"] += r.keys_listed
        totals["active_rows_read"] += r.active_rows
        for name in ("reindex", "tombstone", "prune", "deferred", *DANGEROUS):
            totals[name] += len(getattr(c, name))
        totals["dangerous"] += c.dangerous
        totals["unreadable"] += int(r.unreadable)
        totals["read_errors"] += int(r.error is not None)
        totals["faults"] += int(r.fault is not None)
        totals["capped_sites"] += int(r.capped)
    return totals


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {key: int(a.get(key, 0)) + int(b.get(key, 0)) for key in TOTAL_KEYS}


# --- self-check and verdict (pure) ------------------------------------------------------------


def self_check(totals: dict[str, int], active_rows_total: int) -> list[str]:
    failures: list[str] = []
    if totals["sites_swept"] == 0:
        failures.append("1: zero sites swept")
    if totals["read_errors"] == 0:
        if active_rows_total > 0 and totals["active_rows_read"] == 0:
            failures.append(
                f"2: the index holds {active_rows_total} active rows but the swept sites"
                " matched none of them (the site list is wrong)"
            )
        if totals["active_rows_read"] > 0 and totals["keys_listed"] == 0:
            failures.append(
                f"3: the swept sites have {totals['active_rows_read']} active rows but the bucket"
                " listing returned no objects (wrong bucket, prefix or key template)"
            )
    if totals["prune"] * 2 > totals["active_rows_read"]:
        failures.append(
            f"4: {totals['prune']} planned prunes would drop more than half of the"
            f" {totals['active_rows_read']} active rows read"
        )
    return failures


def verdict_of(totals: dict[str, int], selfcheck: list[str]) -> tuple[str, bool]:
    """(verdict, run fails) by the priority table of the module docstring."""
    if selfcheck:
        return "selfcheck", True
    for name in DANGEROUS:
        if totals[name] > 0:
            return name, totals["unreadable"] > 0
    if totals["unreadable"] > 0:
        return "unreadable", True
    if totals["reindex"] + totals["tombstone"] >= RECLAIMABLE_THRESHOLD:
        return "reclaimable", False
    return "clean", False


# --- the report --------------------------------------------------------------------------------


@dataclass
class DriftReport:
    run_id: int | None
    as_of: datetime | None
    complete: bool
    skipped: bool = False
    cursor: str = ""
    batches: int = 0  # this invocation
    sites_this_invocation: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    active_rows_total: int | None = None
    selfcheck: list[str] = field(default_factory=list)
    verdict: str | None = None
    failed: bool = False
    sites: list[SiteResult] = field(default_factory=list)  # notable sites (complete runs)
    note: str = ""
    duration_s: float = 0.0  # this invocation

    def metrics(self) -> dict[str, float]:
        """EMF values for this invocation (§9.4.7): the heartbeat and progress always; the
        tallies, per-class totals and the verdict when the sweep completed."""
        values: dict[str, float] = {
            "drift.heartbeat": 1,
            "drift.invocation_sites": self.sites_this_invocation,
            "drift.duration_s": round(self.duration_s, 3),
        }
        if self.complete and self.verdict is not None:
            t = self.totals
            values.update({f"drift.{key}": t.get(key, 0) for key in TOTAL_KEYS})
            values.update({f"drift.verdict.{v}": int(v == self.verdict) for v in VERDICTS})
        return values

    @property
    def operation(self) -> str | None:
        return f"drift.{self.verdict}" if self.verdict else None

    def summary(self) -> str:
        t = self.totals
        return ", ".join(f"{k}={t.get(k, 0)}" for k in TOTAL_KEYS)

    def counts(self) -> dict[str, Any]:
        """The invocation's `job_runs` counts (metrics read `verdict`)."""
        counts: dict[str, Any] = {
            "run_id": self.run_id,
            "complete": self.complete,
            "batches": self.batches,
            "sites": self.sites_this_invocation,
        }
        if self.complete and self.verdict is not None:
            counts.update(self.totals)
            counts["active_rows_total"] = self.active_rows_total
            counts["selfcheck_failures"] = len(self.selfcheck)
            counts["verdict"] = self.verdict
        return counts

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat() if self.as_of else None,
            "complete": self.complete,
            "skipped": self.skipped,
            "cursor": self.cursor,
            "batches": self.batches,
            "sites_this_invocation": self.sites_this_invocation,
            "verdict": self.verdict,
            "operation": self.operation,
            "failed": self.failed,
            "selfcheck": self.selfcheck,
            "totals": self.totals,
            "active_rows_total": self.active_rows_total,
            "sites": [s.to_json() for s in self.sites],
            "note": self.note,
            "duration_s": round(self.duration_s, 3),
        }


# --- the sweep's own bookkeeping (its only writes) ----------------------------------------------


@dataclass(frozen=True)
class RunState:
    id: int
    origin: str
    as_of: datetime
    expires_at: datetime
    cursor: str
    batches: int
    totals: dict[str, int]
    active_rows_total: int | None
    selfcheck: list[str]
    verdict: str | None
    finished_at: datetime | None


_SELECT_RUN = (
    "SELECT id, origin, as_of, expires_at, cursor, batches, totals, active_rows_total,"
    " selfcheck, verdict, finished_at FROM drift_runs"
)


class _Ledger:
    """`drift_runs` and `drift_site_results`. (These statements would live in artemis.db with
    the other repositories; this module owns the tables they touch and nothing else.)"""

    def __init__(self, db: Database) -> None:
        self._db = db

    def _one(self, sql: str, params: list[Any]) -> RunState | None:
        with self._db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(sql.encode(), params).fetchone()
        return RunState(**row) if row else None

    def get(self, run_id: int) -> RunState | None:
        return self._one(_SELECT_RUN + " WHERE id = %s", [run_id])

    def open_scheduled(self) -> RunState | None:
        return self._one(
            _SELECT_RUN + " WHERE origin = 'schedule' AND finished_at IS NULL ORDER BY id LIMIT 1",
            [],
        )

    def latest_scheduled(self) -> RunState | None:
        return self._one(
            _SELECT_RUN + " WHERE origin = 'schedule' ORDER BY as_of DESC, id DESC LIMIT 1",
            [],
        )

    def create(self, as_of: datetime, budget: timedelta, origin: str) -> RunState | None:
        """A new run; None when a scheduled run is open already (the unique index)."""
        with self._db.transaction() as conn:
            conn.execute(
                "DELETE FROM drift_runs WHERE finished_at < %s", [as_of - RESULT_RETENTION]
            )
        return self._one(
            "INSERT INTO drift_runs (origin, as_of, expires_at) VALUES (%s, %s, %s)"
            " ON CONFLICT DO NOTHING"
            " RETURNING id, origin, as_of, expires_at, cursor, batches, totals, active_rows_total,"
            " selfcheck, verdict, finished_at",
            [origin, as_of, as_of + budget],
        )

    def commit_batch(
        self, run: RunState, cursor: str, results: list[SiteResult]
    ) -> RunState | None:
        """Store a batch and advance the cursor, only if nobody advanced it meanwhile."""
        totals = _merge(run.totals, totals_of(results))
        with self._db.transaction() as conn, conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                "UPDATE drift_runs SET cursor = %s, batches = batches + 1, totals = %s"
                " WHERE id = %s AND cursor = %s AND finished_at IS NULL"
                " RETURNING id, origin, as_of, expires_at, cursor, batches, totals,"
                " active_rows_total, selfcheck, verdict, finished_at",
                [cursor, Jsonb(totals), run.id, run.cursor],
            ).fetchone()
            if row is None:
                return None  # another invocation swept this batch; the transaction is empty
            notable = [r for r in results if r.notable]
            if notable:
                cur.executemany(
                    "INSERT INTO drift_site_results (run_id, site, result) VALUES (%s, %s, %s)",
                    [[run.id, r.site, Jsonb(r.to_json())] for r in notable],
                )
        return RunState(**row)

    def finish(
        self, run: RunState, verdict: str, active_rows_total: int, selfcheck: list[str]
    ) -> RunState | None:
        return self._one(
            "UPDATE drift_runs SET verdict = %s, active_rows_total = %s, selfcheck = %s,"
            " finished_at = now()"
            " WHERE id = %s AND cursor = %s AND finished_at IS NULL"
            " RETURNING id, origin, as_of, expires_at, cursor, batches, totals, active_rows_total,"
            " selfcheck, verdict, finished_at",
            [verdict, active_rows_total, Jsonb(selfcheck), run.id, run.cursor],
        )

    def results(self, run_id: int) -> list[SiteResult]:
        with self._db.transaction() as conn:
            rows = conn.execute(
                "SELECT result FROM drift_site_results WHERE run_id = %s ORDER BY site", [run_id]
            ).fetchall()
        return [SiteResult.from_json(r[0]) for r in rows]


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
        totals=_merge(run.totals, {}),
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
        report.totals = _merge(run.totals, {})
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
    totals = _merge(run.totals, {})
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


# --- alerts (§9.4.5, DECISIONS Q7): structured events, never damped ------------------------------


def _alert(report: DriftReport) -> None:
    t = report.totals
    base: dict[str, Any] = {
        "operation": report.operation,
        "run_id": report.run_id,
        "totals": t,
        "active_rows_total": report.active_rows_total,
    }
    unread = {s.site: s.fault or s.error for s in report.sites if s.unreadable}
    if report.verdict == "selfcheck":
        logger.error(
            "drift.selfcheck",
            extra={**base, "failures": report.selfcheck, "unread_sites": unread},
        )
    elif report.verdict in DANGEROUS:
        # One event, named after the verdict (the highest-priority class found), listing
        # every dangerous class found, so no finding hides behind another.
        found = {
            name: {
                s.site: list(getattr(s.classification, name))
                for s in report.sites
                if getattr(s.classification, name)
            }
            for name in DANGEROUS
        }
        logger.error(
            f"drift.{report.verdict}",
            extra={**base, "count": t[report.verdict], "sites": found[report.verdict],
                   "dangerous": {k: v for k, v in found.items() if v},
                   "unread_sites": unread},
        )  # fmt: skip
    elif report.verdict == "unreadable":
        logger.error(
            "drift.unreadable",
            extra={
                **base,
                "sites": unread,
                "explanation": "an unread site is unknown drift, not an absence of drift",
            },
        )
    elif report.verdict == "reclaimable":
        ranked = sorted(
            (s for s in report.sites if s.classification.reclaimable),
            key=lambda s: (-s.classification.reclaimable, s.site),
        )
        logger.warning(
            "drift.reclaimable",
            extra={
                **base,
                "sites": [
                    {
                        "site": s.site,
                        "slug": s.slug,
                        "count": s.classification.reclaimable,
                        "reindex": list(s.classification.reindex),
                        "tombstone": list(s.classification.tombstone),
                    }
                    for s in ranked
                ],
                "action": "for each site: artemis-admin reconcile <site>, review, then --apply",
            },
        )
    else:
        logger.info("drift.clean", extra=base)
