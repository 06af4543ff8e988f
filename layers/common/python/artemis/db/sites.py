"""The site registry (`sites`): slug → owning teams. Keyed by slug, not dirname."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from psycopg import Connection
from psycopg.rows import class_row

from artemis.keys import Slug


@dataclass(frozen=True)
class SiteRow:
    slug: str
    teams: list[str]
    created_at: datetime
    updated_at: datetime
    created_by: str


_COLUMNS = "slug, teams, created_at, updated_at, created_by"


class SiteExists(Exception):
    """The slug is registered already."""


def list_all(conn: Connection) -> list[SiteRow]:
    with conn.cursor(row_factory=class_row(SiteRow)) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM sites ORDER BY slug").fetchall()


def get(conn: Connection, slug: Slug) -> SiteRow | None:
    with conn.cursor(row_factory=class_row(SiteRow)) as cur:
        return cur.execute(f"SELECT {_COLUMNS} FROM sites WHERE slug = %s", [slug]).fetchone()


def insert(conn: Connection, slug: Slug, teams: list[str], created_by: str) -> SiteRow:
    """One statement: an existing slug inserts nothing and raises SiteExists (no savepoint,
    no aborted transaction for the caller)."""
    with conn.cursor(row_factory=class_row(SiteRow)) as cur:
        row = cur.execute(
            "INSERT INTO sites (slug, teams, created_by) VALUES (%s, %s, %s)"
            f" ON CONFLICT (slug) DO NOTHING RETURNING {_COLUMNS}",
            [slug, teams, created_by],
        ).fetchone()
    if row is None:
        raise SiteExists(slug)
    return row


def update_teams(conn: Connection, slug: Slug, teams: list[str]) -> SiteRow | None:
    with conn.cursor(row_factory=class_row(SiteRow)) as cur:
        return cur.execute(
            f"UPDATE sites SET teams = %s, updated_at = now() WHERE slug = %s RETURNING {_COLUMNS}",
            [teams, slug],
        ).fetchone()


def delete(conn: Connection, slug: Slug) -> bool:
    return conn.execute("DELETE FROM sites WHERE slug = %s", [slug]).rowcount == 1


def latest_change(conn: Connection) -> tuple[int, datetime | None]:
    """(row count, newest updated_at): a cheap fingerprint for read-cache refreshes."""
    row = conn.execute("SELECT count(*), max(updated_at) FROM sites").fetchone()
    assert row is not None
    return int(row[0]), row[1]
