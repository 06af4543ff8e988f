"""Background run records (`job_runs`): every run starts a row and finishes it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Outcome = Literal["succeeded", "failed", "skipped"]


@dataclass(frozen=True)
class JobRunRow:
    id: int
    job: str
    site: str | None
    started_at: datetime
    finished_at: datetime | None
    outcome: str
    dry_run: bool
    counts: dict[str, Any]
    plan: Any
    error: str | None


_COLUMNS = "id, job, site, started_at, finished_at, outcome, dry_run, counts, plan, error"


def start(conn: Connection, job: str, site: str | None = None, *, dry_run: bool = False) -> int:
    row = conn.execute(
        "INSERT INTO job_runs (job, site, dry_run) VALUES (%s, %s, %s) RETURNING id",
        [job, site, dry_run],
    ).fetchone()
    assert row is not None
    return int(row[0])


def record_plan(conn: Connection, run_id: int, plan: Any) -> None:
    conn.execute("UPDATE job_runs SET plan = %s WHERE id = %s", [Jsonb(plan), run_id])


def finish(
    conn: Connection,
    run_id: int,
    outcome: Outcome,
    counts: dict[str, Any] | None = None,
    error: str | None = None,
) -> None:
    conn.execute(
        "UPDATE job_runs SET finished_at = now(), outcome = %s, counts = %s, error = %s"
        " WHERE id = %s",
        [outcome, Jsonb(counts or {}), error, run_id],
    )


def get(conn: Connection, run_id: int) -> JobRunRow | None:
    with conn.cursor(row_factory=class_row(JobRunRow)) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM job_runs WHERE id = %s", [run_id]).fetchone()


def outcome_counts(conn: Connection) -> list[tuple[str, str, int]]:
    """(job, outcome, runs) for the metrics exposition."""
    rows = conn.execute(
        "SELECT job, outcome, count(*) FROM job_runs GROUP BY job, outcome ORDER BY job, outcome"
    ).fetchall()
    return [(r[0], r[1], int(r[2])) for r in rows]


def purge_finished(conn: Connection, older_than_days: int, limit: int = 10_000) -> int:
    """Delete finished runs older than the window, oldest first, at most `limit` per call."""
    return conn.execute(
        "DELETE FROM job_runs WHERE id IN (SELECT id FROM job_runs WHERE finished_at IS NOT NULL"
        " AND finished_at < now() - make_interval(days => %s) ORDER BY id LIMIT %s)",
        [older_than_days, limit],
    ).rowcount
