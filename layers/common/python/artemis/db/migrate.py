"""Apply `sql/*.sql` in file-name order, once each, recorded in a ledger.

* Transactional files: under the blocking advisory lock 8472013, each file and its ledger row
  commit in one transaction, so concurrent runners serialize and every file applies once.
* Files whose first non-blank line is `-- migrate:no-transaction` (e.g. CREATE INDEX
  CONCURRENTLY) run after the transactional pass, statement by statement, under the try-lock
  8472015 (another runner already on it → skip). They must converge when re-run from any
  prefix of their statements; a transactional file must never depend on one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from artemis.db.connection import connect_with_retry
from artemis.deadlines import Deadline

MIGRATION_LOCK_KEY = 8472013
CONCURRENT_LOCK_KEY = 8472015
NO_TRANSACTION = "-- migrate:no-transaction"


@dataclass
class MigrationReport:
    applied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    deferred_by_other_runner: bool = False


def default_sql_dir() -> Path:
    """`ARTEMIS_SQL_DIR`, else the repository's `sql/` (this file is 5 levels below it)."""
    env = os.environ.get("ARTEMIS_SQL_DIR")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[5] / "sql"


def _is_no_transaction(sql: str) -> bool:
    for line in sql.splitlines():
        if line.strip():
            return line.strip() == NO_TRANSACTION
    return False


def _split_statements(sql: str) -> list[str]:
    """Split on `;`, dropping comment lines. No `;` inside strings or bodies in such files."""
    body = "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))
    return [stmt.strip() for stmt in body.split(";") if stmt.strip()]


def migrate(
    conninfo: str, sql_dir: Path | None = None, *, retry_window: float = 45.0
) -> MigrationReport:
    files = sorted((sql_dir or default_sql_dir()).glob("*.sql"))
    report = MigrationReport()
    with connect_with_retry(conninfo, Deadline.after(retry_window), autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", [MIGRATION_LOCK_KEY])
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = _applied(conn)
            deferred: list[Path] = []
            for path in files:
                sql = path.read_text()
                if path.name in done:
                    report.skipped.append(path.name)
                elif _is_no_transaction(sql):
                    deferred.append(path)
                else:
                    with conn.transaction():
                        conn.execute(sql.encode())
                        _record(conn, path.name)
                    report.applied.append(path.name)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", [MIGRATION_LOCK_KEY])
        if deferred:
            _apply_concurrent(conn, deferred, report)
    return report


def _apply_concurrent(conn: psycopg.Connection, files: list[Path], report: MigrationReport) -> None:
    got = conn.execute("SELECT pg_try_advisory_lock(%s)", [CONCURRENT_LOCK_KEY]).fetchone()
    if not got or not got[0]:
        report.deferred_by_other_runner = True
        return
    try:
        done = _applied(conn)
        for path in files:
            if path.name in done:
                report.skipped.append(path.name)
                continue
            for statement in _split_statements(path.read_text()):
                conn.execute(statement.encode())
            _record(conn, path.name)
            report.applied.append(path.name)
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", [CONCURRENT_LOCK_KEY])


def _applied(conn: psycopg.Connection) -> set[str]:
    return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}


def _record(conn: psycopg.Connection, name: str) -> None:
    conn.execute("INSERT INTO schema_migrations (version) VALUES (%s)", [name])
