"""Soft-delete records (`tombstones`): the hard-delete worklist."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from psycopg import Connection
from psycopg.rows import class_row

from artemis.keys import Dirname

SITE_PURGE_ID = ""  # the tombstone id of a whole-site purge


@dataclass(frozen=True)
class TombstoneRow:
    site: str
    id: str
    trashed_at: datetime
    bytes: int
    move_state: Literal["pending", "moved", "restoring"]


_COLUMNS = "site, id, trashed_at, bytes, move_state"


def tombstone_deploy(conn: Connection, site: Dirname, deploy_id: str, size: int) -> None:
    """Record the soft delete and drop the index row. A repeated delete keeps the original
    `trashed_at` and bytes but re-arms the move, so a failed re-drive is never marked moved.
    The row's context (metadata, creation and finalize times, file count) moves into the
    tombstone, for the deploy list and for a restore (deploys.restore_metadata)."""
    conn.execute(
        "INSERT INTO tombstones (site, id, bytes, deploy_meta) VALUES (%(site)s, %(id)s,"
        " %(bytes)s, (SELECT jsonb_strip_nulls(jsonb_build_object('branch', branch,"
        "   'message', message, 'pr', pr, 'repo', repo, 'ciUrl', ci_url,"
        "   'createdAt', created_at, 'finalizedAt', finalized_at, 'files', files))"
        "   FROM deploys WHERE site = %(site)s AND id = %(id)s))"
        " ON CONFLICT (site, id) DO UPDATE SET move_state = 'pending',"
        " deploy_meta = COALESCE(tombstones.deploy_meta, EXCLUDED.deploy_meta)",
        {"site": site, "id": deploy_id, "bytes": size},
    )
    conn.execute("DELETE FROM deploys WHERE site = %s AND id = %s", [site, deploy_id])


def record_site_purge(conn: Connection, site: Dirname) -> None:
    """Tombstone the whole site and drop its alias and deploy rows.

    A repeated purge keeps the original `trashed_at` (a retry never extends the recovery
    window) but re-arms the move.
    """
    conn.execute(
        "INSERT INTO tombstones (site, id, bytes) VALUES (%s, '', 0)"
        " ON CONFLICT (site, id) DO UPDATE SET move_state = 'pending'",
        [site],
    )
    conn.execute("DELETE FROM aliases WHERE site = %s", [site])
    conn.execute("DELETE FROM deploys WHERE site = %s", [site])


def mark_moved(conn: Connection, site: Dirname, deploy_id: str) -> None:
    conn.execute(
        "UPDATE tombstones SET move_state = 'moved' WHERE site = %s AND id = %s", [site, deploy_id]
    )


def mark_restoring(conn: Connection, site: Dirname, deploy_id: str) -> None:
    """A restore is about to move the bytes back: a repeat may resume over a live prefix."""
    conn.execute(
        "UPDATE tombstones SET move_state = 'restoring' WHERE site = %s AND id = %s",
        [site, deploy_id],
    )


def get(conn: Connection, site: Dirname, deploy_id: str) -> TombstoneRow | None:
    with conn.cursor(row_factory=class_row(TombstoneRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM tombstones WHERE site = %s AND id = %s", [site, deploy_id]
        ).fetchone()


def for_site(conn: Connection, site: Dirname) -> list[TombstoneRow]:
    with conn.cursor(row_factory=class_row(TombstoneRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM tombstones WHERE site = %s ORDER BY trashed_at DESC, id",
            [site],
        ).fetchall()


def clear(conn: Connection, site: Dirname, deploy_id: str) -> bool:
    """Delete the tombstone (restore, hard delete); report whether one existed."""
    cur = conn.execute("DELETE FROM tombstones WHERE site = %s AND id = %s", [site, deploy_id])
    return cur.rowcount == 1


def expired(conn: Connection, cutoff: datetime, limit: int) -> list[TombstoneRow]:
    with conn.cursor(row_factory=class_row(TombstoneRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM tombstones WHERE trashed_at < %s ORDER BY site, id LIMIT %s",
            [cutoff, limit],
        ).fetchall()


def sites_with_pending_moves(conn: Connection) -> list[Dirname]:
    rows = conn.execute(
        "SELECT DISTINCT site FROM tombstones WHERE move_state = 'pending' ORDER BY site"
    ).fetchall()
    return [Dirname(r[0]) for r in rows]
