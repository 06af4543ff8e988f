"""The alias mirror (`aliases`): Postgres follows the alias objects in the bucket.

A row names a fixed channel (`production`, `preview`) or a named preview (any other name the
alias rule admits)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import class_row

from artemis.keys import Dirname

_FIXED = "('production', 'preview')"


@dataclass(frozen=True)
class AliasRow:
    site: str
    name: str
    deploy_id: str
    updated_at: datetime
    updated_by: str | None = None


_COLUMNS = "site, name, deploy_id, updated_at, updated_by"


def upsert(
    conn: Connection, site: Dirname, name: str, deploy_id: str, at: datetime,
    by: str | None = None,
) -> str | None:  # fmt: skip
    """Point the alias row at `deploy_id`; return the target it named before (None if none)."""
    row = conn.execute(
        "SELECT deploy_id FROM aliases WHERE site = %s AND name = %s FOR UPDATE", [site, name]
    ).fetchone()
    conn.execute(
        "INSERT INTO aliases (site, name, deploy_id, updated_at, updated_by)"
        " VALUES (%s, %s, %s, %s, %s)"
        " ON CONFLICT (site, name) DO UPDATE SET deploy_id = EXCLUDED.deploy_id,"
        " updated_at = EXCLUDED.updated_at, updated_by = EXCLUDED.updated_by",
        [site, name, deploy_id, at, by],
    )
    return str(row[0]) if row else None


def for_site(conn: Connection, site: Dirname) -> list[AliasRow]:
    with conn.cursor(row_factory=class_row(AliasRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM aliases WHERE site = %s ORDER BY name", [site]
        ).fetchall()


def named_for_site(conn: Connection, site: Dirname) -> list[AliasRow]:
    """The site's named previews, by name."""
    with conn.cursor(row_factory=class_row(AliasRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM aliases WHERE site = %s AND name NOT IN {_FIXED}"
            " ORDER BY name",
            [site],
        ).fetchall()


def get(conn: Connection, site: Dirname, name: str) -> AliasRow | None:
    with conn.cursor(row_factory=class_row(AliasRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM aliases WHERE site = %s AND name = %s", [site, name]
        ).fetchone()


def count_named(conn: Connection, site: Dirname) -> int:
    row = conn.execute(
        f"SELECT count(*) FROM aliases WHERE site = %s AND name NOT IN {_FIXED}", [site]
    ).fetchone()
    return int(row[0]) if row else 0


def delete(conn: Connection, site: Dirname, name: str, deploy_id: str | None = None) -> bool:
    """Remove one alias row; with `deploy_id`, only while it still names that deploy (a
    compare-and-delete, so a move that landed in between is kept)."""
    if deploy_id is None:
        cur = conn.execute("DELETE FROM aliases WHERE site = %s AND name = %s", [site, name])
    else:
        cur = conn.execute(
            "DELETE FROM aliases WHERE site = %s AND name = %s AND deploy_id = %s",
            [site, name, deploy_id],
        )
    return cur.rowcount == 1


def delete_for_site(conn: Connection, site: Dirname) -> int:
    return conn.execute("DELETE FROM aliases WHERE site = %s", [site]).rowcount
