"""What every background job shares: the injected clock and the `job_runs` record each run
writes (a GC run records its plan there before executing, so what it meant to do is on record
even if it stops part-way). The time budget, `Deadline`, lives in artemis.deadlines."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from artemis.db import audit as audit_db
from artemis.db import job_runs
from artemis.db.connection import Database
from artemis.keys import ALIAS_NAMES, Dirname, KeyLayout
from artemis.observability import logger

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunRecord:
    """The `job_runs` row of one run: counts accumulate, the outcome is written at the end."""

    db: Database
    id: int
    job: str
    site: str | None
    counts: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    def record_plan(self, plan: Any) -> None:
        with self.db.transaction() as conn:
            job_runs.record_plan(conn, self.id, plan)

    def count(self, name: str, value: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + value


@contextmanager
def job_run(
    db: Database, job: str, site: str | None = None, *, dry_run: bool = False
) -> Iterator[RunRecord]:
    """Start a `job_runs` row, yield it, and finish it as succeeded, skipped or failed (with
    the error text) however the body ends. The exception still propagates."""
    with db.transaction() as conn:
        run_id = job_runs.start(conn, job, site, dry_run=dry_run)
    record = RunRecord(db, run_id, job, site)
    logger.info("job.start", extra={"job": job, "site": site, "run_id": run_id, "dry_run": dry_run})
    try:
        yield record
    except BaseException as err:
        _finish(record, "failed", f"{type(err).__name__}: {err}")
        logger.exception("job.failed", extra={"job": job, "site": site, "run_id": run_id})
        raise
    _finish(record, "skipped" if record.skipped else "succeeded", None)
    logger.info(
        "job.done", extra={"job": job, "site": site, "run_id": run_id, "counts": record.counts}
    )


def _finish(record: RunRecord, outcome: job_runs.Outcome, error: str | None) -> None:
    try:
        with record.db.transaction() as conn:
            job_runs.finish(conn, record.id, outcome, record.counts, error)
    except Exception:  # the run's own outcome matters more than its bookkeeping
        logger.exception("job_runs.finish failed", extra={"run_id": record.id})


class AliasReader(Protocol):
    """Anything that reads alias objects (Bucket, the drift sweep's ReadOnlyBucket)."""

    def get_alias(self, key: str) -> str | None: ...

    def get_aliases(self, prefix: str) -> dict[str, str]: ...


def alias_object_targets(bucket: AliasReader, layout: KeyLayout, site: Dirname) -> dict[str, str]:
    """What the site's alias OBJECTS name: alias name -> deploy id, for both channels and every
    named preview (one listing of their folder). A missing or empty object names none; any
    other read error raises (it never means "no alias")."""
    targets = {name: bucket.get_alias(layout.alias_key(site, name)) for name in ALIAS_NAMES}
    found: dict[str, str] = {name: target for name, target in targets.items() if target}
    found.update(bucket.get_aliases(layout.named_alias_prefix(site)))
    return found


def alias_objects(bucket: AliasReader, layout: KeyLayout, site: Dirname) -> frozenset[str]:
    """The deploy ids the site's alias objects name (`alias_object_targets`' values)."""
    return frozenset(alias_object_targets(bucket, layout, site).values())


def system_audit_entry(
    layout: KeyLayout, actor: str, action: str, site: Dirname, deploy_id: str,
    detail: dict[str, Any] | None = None,
) -> audit_db.AuditEntry:  # fmt: skip
    """A background job's audit row: `site` is the slug, as in the API's rows; a dirname that
    maps to no slug is written raw with `detail.site_unmapped` and logged as an error."""
    slug = layout.slug_for(site)
    detail = dict(detail or {})
    if slug is None:
        detail["site_unmapped"] = True
        logger.error("audit.site_unmapped", extra={"site": site, "action": action, "id": deploy_id})
    return audit_db.AuditEntry(
        actor=actor, action=action, outcome="success", site=slug or site, deploy_id=deploy_id,
        detail=detail,
    )  # fmt: skip


def write_audit(db: Database, entry: audit_db.AuditEntry) -> None:
    """Best effort: a failure logs (`audit.record`) and never aborts the job's work."""
    try:
        with db.transaction() as conn:
            audit_db.append(conn, entry)
    except Exception:
        logger.exception(
            "audit.record",
            extra={"action": entry.action, "site": entry.site, "id": entry.deploy_id},
        )
