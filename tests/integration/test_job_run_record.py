"""Every background run leaves a `job_runs` row however it ends."""

import time

import pytest

from artemis.db import job_runs
from artemis.db.connection import Database
from artemis.deadlines import Deadline
from artemis.jobs.common import job_run


def row(db: Database, run_id: int) -> job_runs.JobRunRow:
    with db.transaction() as conn:
        found = job_runs.get(conn, run_id)
    assert found is not None
    return found


def test_a_successful_run_records_counts_and_plan(db: Database) -> None:
    with job_run(db, "gc-site", "www", dry_run=True) as run:
        run.record_plan({"planned": ["d1"]})
        run.count("planned")
        run.count("bytes", 42)
    got = row(db, run.id)
    assert (got.job, got.site, got.outcome, got.dry_run) == ("gc-site", "www", "succeeded", True)
    assert got.counts == {"planned": 1, "bytes": 42} and got.plan == {"planned": ["d1"]}
    assert got.finished_at is not None and got.error is None


def test_a_failed_run_records_the_error_and_reraises(db: Database) -> None:
    with pytest.raises(RuntimeError, match="lost"), job_run(db, "relay") as run:
        run.count("published", 3)
        raise RuntimeError("connection lost")
    got = row(db, run.id)
    assert got.outcome == "failed" and got.error == "RuntimeError: connection lost"
    assert got.counts == {"published": 3}


def test_a_run_may_declare_itself_skipped(db: Database) -> None:
    with job_run(db, "gc-site", "www") as run:
        run.skipped = True
    assert row(db, run.id).outcome == "skipped"


def test_deadline() -> None:
    assert Deadline.after(60).has(30)
    assert not Deadline.after(0).has(0.001)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 45_000

    deadline = Deadline.from_lambda(Context(), reserve_seconds=30)
    assert 14 <= deadline.remaining() <= 15
    time.sleep(0.01)
    assert deadline.remaining() < 15
