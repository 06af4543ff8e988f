"""The alias mirror (`aliases`): Postgres follows the alias objects in the bucket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import class_row

from artemis.keys import AliasName, Dirname


@dataclass(frozen=True)
class AliasRow:
    site: str
    name: str
    deploy_id: str
    updated_at: datetime


def upsert(
    conn: Connection, site: Dirname, name: AliasName, deploy_id: str, at: datetime
) -> str | None:
    """Point the alias row at `deploy_id`; return the target it named before (None if none)."""
    row = conn.execute(
        "SELECT deploy_id FROM aliases WHERE site = %s AND name = %s FOR UPDATE", [site, name]
    ).fetchone()
    conn.execute(
        "INSERT INTO aliases (site, name, deploy_id, updated_at) VALUES (%s, %s, %s, %s)"
        " ON CONFLICT (site, name) DO UPDATE SET deploy_id = EXCLUDED.deploy_id,"
        " updated_at = EXCLUDED.updated_at",
        [site, name, deploy_id, at],
    )
    return str(row[0]) if row else None


def for_site(conn: Connection, site: Dirname) -> list[AliasRow]:
    with conn.cursor(row_factory=class_row(AliasRow)) as cur:
        return cur.execute(
            "SELECT site, name, deploy_id, updated_at FROM aliases WHERE site = %s ORDER BY name",
            [site],
        ).fetchall()


def delete_for_site(conn: Connection, site: Dirname) -> int:
    return conn.execute("DELETE FROM aliases WHERE site = %s", [site]).rowcount
