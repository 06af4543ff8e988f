"""Read-only aggregates for the metrics exposition: one query each, no per-site loops."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection


@dataclass(frozen=True)
class TombstoneStats:
    pending_moves: int
    overdue: int  # past the recovery window: the nightly purge should have taken them
    total: int


def tombstone_stats(conn: Connection, recovery_days: int) -> TombstoneStats:
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE move_state = 'pending'),"
        " count(*) FILTER"
        "   (WHERE trashed_at < now() - make_interval(days => %s) - interval '1 day'),"
        " count(*) FROM tombstones",
        [recovery_days],
    ).fetchone()
    assert row is not None
    return TombstoneStats(int(row[0]), int(row[1]), int(row[2]))


def last_run(
    conn: Connection, job: str, *, with_count: str | None = None
) -> tuple[datetime, str, dict[str, Any]] | None:
    """(finished_at, outcome, counts) of the job's latest finished run; with `with_count`, the
    latest whose counts carry that key (a drift sweep's verdict comes with its last batch)."""
    row = conn.execute(
        "SELECT finished_at, outcome, counts FROM job_runs"
        " WHERE job = %s AND finished_at IS NOT NULL AND (%s::text IS NULL OR counts ? %s)"
        " ORDER BY finished_at DESC, id DESC LIMIT 1",
        [job, with_count, with_count],
    ).fetchone()
    return (row[0], row[1], row[2]) if row else None
