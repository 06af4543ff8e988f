"""What every background job shares: the injected clock, the time budget, and the `job_runs`
record each run writes (DECISIONS Q3: a GC run records its plan there before executing)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from artemis.db import job_runs
from artemis.db.connection import Database
from artemis.observability import logger

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass
class Deadline:
    """A run's time budget. Jobs check `has(seconds)` before each destructive item and stop
    cleanly when one more item might not finish (Lambda kills the invocation at its timeout)."""

    ends_at: float  # time.monotonic() value

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @classmethod
    def from_lambda(cls, context: Any, reserve_seconds: float = 30.0) -> Deadline:
        """The invocation's remaining time minus a reserve for finishing up."""
        remaining_ms = float(context.get_remaining_time_in_millis())
        return cls.after(max(0.0, remaining_ms / 1000.0 - reserve_seconds))

    def remaining(self) -> float:
        return max(0.0, self.ends_at - time.monotonic())

    def has(self, seconds: float) -> bool:
        return self.remaining() >= seconds


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
