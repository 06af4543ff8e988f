"""The deploy index (`deploys`), keyed by dirname (spec/durable.md §6.3)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import class_row

from artemis.keys import Dirname


@dataclass(frozen=True)
class DeployRow:
    site: str
    id: str
    mtime: datetime
    bytes: int
    has_marker: bool
    state: str
    alias_released_at: datetime | None


_COLUMNS = "site, id, mtime, bytes, has_marker, state, alias_released_at"


def begin(conn: Connection, site: Dirname, deploy_id: str, at: datetime) -> bool:
    """Record a pending deploy at init; an existing row (even active) is left untouched."""
    cur = conn.execute(
        "INSERT INTO deploys (site, id, mtime, state) VALUES (%s, %s, %s, 'pending')"
        " ON CONFLICT (site, id) DO NOTHING",
        [site, deploy_id, at],
    )
    return cur.rowcount == 1


def upsert_finalized(
    conn: Connection,
    site: Dirname,
    deploy_id: str,
    at: datetime,
    size: int,
    *,
    has_marker: bool = True,
) -> None:
    """Finalize (and restore): active, mtime = `at`, bytes and marker overwritten."""
    conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        " VALUES (%s, %s, %s, %s, %s, 'active')"
        " ON CONFLICT (site, id) DO UPDATE SET mtime = EXCLUDED.mtime, bytes = EXCLUDED.bytes,"
        " has_marker = EXCLUDED.has_marker, state = 'active'",
        [site, deploy_id, at, size, has_marker],
    )


def stamp_release(
    conn: Connection, site: Dirname, previous_id: str | None, new_id: str, at: datetime
) -> None:
    """An alias moved off `previous_id` (when it differs from the new target)."""
    if previous_id and previous_id != new_id:
        conn.execute(
            "UPDATE deploys SET alias_released_at = %s WHERE site = %s AND id = %s",
            [at, site, previous_id],
        )


def upsert_backfilled(
    conn: Connection, site: Dirname, deploy_id: str, mtime: datetime, has_marker: bool, size: int
) -> None:
    """Backfill: active; overwrite mtime and marker; bytes only when the new value is > 0."""
    conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        " VALUES (%s, %s, %s, %s, %s, 'active')"
        " ON CONFLICT (site, id) DO UPDATE SET mtime = EXCLUDED.mtime,"
        " has_marker = EXCLUDED.has_marker, state = 'active',"
        " bytes = CASE WHEN EXCLUDED.bytes > 0 THEN EXCLUDED.bytes ELSE deploys.bytes END",
        [site, deploy_id, mtime, size, has_marker],
    )


def reindex(
    conn: Connection, site: Dirname, deploy_id: str, mtime: datetime, has_marker: bool
) -> bool:
    """Reconcile: insert unless a tombstone exists for the deploy or the site (one statement)."""
    cur = conn.execute(
        "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
        " SELECT %(site)s, %(id)s, %(mtime)s, 0, %(marker)s, 'active'"
        " WHERE NOT EXISTS (SELECT 1 FROM tombstones"
        "   WHERE site = %(site)s AND id IN (%(id)s, ''))"
        " ON CONFLICT (site, id) DO UPDATE SET has_marker = EXCLUDED.has_marker, state = 'active'",
        {"site": site, "id": deploy_id, "mtime": mtime, "marker": has_marker},
    )
    return cur.rowcount == 1


def delete(conn: Connection, site: Dirname, deploy_id: str) -> bool:
    cur = conn.execute("DELETE FROM deploys WHERE site = %s AND id = %s", [site, deploy_id])
    return cur.rowcount == 1


def active_for_site(conn: Connection, site: Dirname) -> list[DeployRow]:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND state = 'active'"
            " ORDER BY mtime DESC, id DESC",
            [site],
        ).fetchall()


def get(conn: Connection, site: Dirname, deploy_id: str) -> DeployRow | None:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND id = %s", [site, deploy_id]
        ).fetchone()


def expired_pending(conn: Connection, site: Dirname, cutoff: datetime) -> list[DeployRow]:
    with conn.cursor(row_factory=class_row(DeployRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM deploys WHERE site = %s AND state = 'pending'"
            " AND mtime < %s ORDER BY mtime, id",
            [site, cutoff],
        ).fetchall()


def count_active(conn: Connection) -> int:
    row = conn.execute("SELECT count(*) FROM deploys WHERE state = 'active'").fetchone()
    return int(row[0]) if row else 0


def known_dirnames(conn: Connection) -> list[Dirname]:
    """Every site any table knows of, sorted (the background jobs' site enumeration)."""
    rows = conn.execute(
        "SELECT site FROM deploys UNION SELECT site FROM aliases"
        " UNION SELECT site FROM tombstones ORDER BY 1"
    ).fetchall()
    return [Dirname(r[0]) for r in rows]
