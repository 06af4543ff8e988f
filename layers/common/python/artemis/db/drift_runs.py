"""The drift sweep's own bookkeeping (`drift_runs`, `drift_site_results`): a sweep's resumable
cursor and running totals, and the sites with findings. The only tables the read-only sweep
writes; the results are stored as the JSON the caller hands in."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


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


_COLUMNS = (
    "id, origin, as_of, expires_at, cursor, batches, totals, active_rows_total,"
    " selfcheck, verdict, finished_at"
)


def _one(conn: Connection, sql: str, params: list[Any]) -> RunState | None:
    with conn.cursor(row_factory=class_row(RunState)) as cur:
        return cur.execute(sql.encode(), params).fetchone()


def get(conn: Connection, run_id: int) -> RunState | None:
    return _one(conn, f"SELECT {_COLUMNS} FROM drift_runs WHERE id = %s", [run_id])


def open_scheduled(conn: Connection) -> RunState | None:
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM drift_runs"
        " WHERE origin = 'schedule' AND finished_at IS NULL ORDER BY id LIMIT 1",
        [],
    )


def latest_scheduled(conn: Connection) -> RunState | None:
    return _one(
        conn,
        f"SELECT {_COLUMNS} FROM drift_runs"
        " WHERE origin = 'schedule' ORDER BY as_of DESC, id DESC LIMIT 1",
        [],
    )


def delete_finished_before(conn: Connection, cutoff: datetime) -> None:
    """Forget runs (and, by cascade, their site results) finished before `cutoff`."""
    conn.execute("DELETE FROM drift_runs WHERE finished_at < %s", [cutoff])


def create(conn: Connection, origin: str, as_of: datetime, expires_at: datetime) -> RunState | None:
    """A new run; None when a scheduled run is open already (the unique index)."""
    return _one(
        conn,
        "INSERT INTO drift_runs (origin, as_of, expires_at) VALUES (%s, %s, %s)"
        f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
        [origin, as_of, expires_at],
    )


def advance(
    conn: Connection, run: RunState, cursor: str, totals: dict[str, int]
) -> RunState | None:
    """Move the run's cursor on and store its totals, only if nobody advanced it meanwhile
    (a compare-and-set on the cursor); None when another invocation did."""
    return _one(
        conn,
        "UPDATE drift_runs SET cursor = %s, batches = batches + 1, totals = %s"
        f" WHERE id = %s AND cursor = %s AND finished_at IS NULL RETURNING {_COLUMNS}",
        [cursor, Jsonb(totals), run.id, run.cursor],
    )


def add_results(conn: Connection, run_id: int, results: list[tuple[str, dict[str, Any]]]) -> None:
    """Store (site, result JSON) rows of a run."""
    if results:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO drift_site_results (run_id, site, result) VALUES (%s, %s, %s)",
                [[run_id, site, Jsonb(result)] for site, result in results],
            )


def finish(
    conn: Connection, run: RunState, verdict: str, active_rows_total: int, selfcheck: list[str]
) -> RunState | None:
    """Close the run with its verdict, only if its cursor is still the one this caller saw."""
    return _one(
        conn,
        "UPDATE drift_runs SET verdict = %s, active_rows_total = %s, selfcheck = %s,"
        " finished_at = now()"
        f" WHERE id = %s AND cursor = %s AND finished_at IS NULL RETURNING {_COLUMNS}",
        [verdict, active_rows_total, Jsonb(selfcheck), run.id, run.cursor],
    )


def results(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    """The run's stored site results, by site."""
    rows = conn.execute(
        "SELECT result FROM drift_site_results WHERE run_id = %s ORDER BY site", [run_id]
    ).fetchall()
    return [row[0] for row in rows]
