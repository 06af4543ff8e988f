"""The transactional outbox.

`enqueue` runs inside the caller's transaction, so an event commits with the change it
announces. The relay claims ready rows with FOR UPDATE SKIP LOCKED and a lease (concurrent
relays skip each other's rows; an expired lease is the crash-recovery path), publishes, then
marks exactly the published ids and releases the rest at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg import Connection
from psycopg.types.json import Jsonb

from artemis.keys import Dirname

SITE_CHANGED = "site.changed"
REPO_APPROVED = "repo.approved"  # a repo request to create (finished by the site worker)
CLAIM_LIMIT = 100
CLAIM_TTL_SECONDS = 300.0
PURGE_LIMIT = 5000

# The relay's session settings (set for the drain, reset before the connection goes back):
# - statement_timeout: a stuck claim or mark ends the pass instead of the invocation.
# - synchronous_commit off: a claim or mark lost in a database crash only makes rows ready
#   again and publishes them again, which at-least-once delivery already allows (every
#   consumer is idempotent);
#   the relay stops paying a WAL flush per statement.
# - no bitmap or sequential scans: the outbox swings from empty to a burst faster than
#   autovacuum re-analyzes it, and on a stale estimate the planner reads and sorts the whole
#   backlog on every pass; the claim must stay an id-ordered walk of the partial index that
#   stops after `limit` rows.
RELAY_SESSION = {
    "statement_timeout": "10s",
    "synchronous_commit": "off",
    "enable_bitmapscan": "off",
    "enable_seqscan": "off",
}


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    topic: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Backlog:
    unpublished: int
    oldest_age_seconds: float


# The ids `enqueue` wrote under `collecting()`: the API sends them itself once its request is
# done (the fast path), instead of leaving them for the relay's next tick.
_written: ContextVar[list[int] | None] = ContextVar("artemis_outbox_written", default=None)


@contextmanager
def collecting() -> Iterator[list[int]]:
    """Within this block every enqueued id is appended to the yielded list (a row of a
    transaction that rolled back too: claiming it later finds nothing)."""
    ids: list[int] = []
    token = _written.set(ids)
    try:
        yield ids
    finally:
        _written.reset(token)


def enqueue(conn: Connection, topic: str, payload: dict[str, Any]) -> int:
    row = conn.execute(
        "INSERT INTO outbox (topic, payload) VALUES (%s, %s) RETURNING id", [topic, Jsonb(payload)]
    ).fetchone()
    assert row is not None
    written = _written.get()
    if written is not None:
        written.append(int(row[0]))
    return int(row[0])


def enqueue_site_changed(conn: Connection, site: Dirname) -> int:
    return enqueue(conn, SITE_CHANGED, {"site": site})


CLAIM_SQL = (
    "UPDATE outbox SET claimed_at = now(),"
    " claim_expires_at = now() + make_interval(secs => %s)"
    " WHERE id IN (SELECT id FROM outbox WHERE published_at IS NULL"
    "   AND (claim_expires_at IS NULL OR claim_expires_at < now())"
    "   ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED)"
    " RETURNING id, topic, payload, clock_timestamp()"
)


@contextmanager
def relay_session(conn: Connection) -> Iterator[Connection]:
    """`conn` with `RELAY_SESSION` applied, restored afterwards (it is a pooled connection)."""
    conn.execute("; ".join(f"SET {name} = '{value}'" for name, value in RELAY_SESSION.items()))
    try:
        yield conn
    finally:
        if not conn.closed:
            conn.execute("; ".join(f"RESET {name}" for name in RELAY_SESSION))


def claim(
    conn: Connection, limit: int = CLAIM_LIMIT, ttl_seconds: float = CLAIM_TTL_SECONDS
) -> list[OutboxMessage]:
    """Claim up to `limit` ready rows in id order. Commit before publishing anything."""
    return claim_stamped(conn, limit, ttl_seconds)[0]


def claim_stamped(
    conn: Connection, limit: int = CLAIM_LIMIT, ttl_seconds: float = CLAIM_TTL_SECONDS
) -> tuple[list[OutboxMessage], datetime | None]:
    """`claim`, plus the database clock read during the claim statement (`clock_timestamp()`,
    later than the commit of every row the statement could see, so a gc-site run that starts
    after this stamp sees every change the claimed events announce)."""
    rows = conn.execute(CLAIM_SQL, [ttl_seconds, limit]).fetchall()
    messages = sorted((OutboxMessage(int(r[0]), r[1], r[2]) for r in rows), key=lambda m: m.id)
    return messages, max((r[3] for r in rows), default=None)


CLAIM_IDS_SQL = (
    "UPDATE outbox SET claimed_at = now(),"
    " claim_expires_at = now() + make_interval(secs => %s)"
    " WHERE id IN (SELECT id FROM outbox WHERE id = ANY(%s) AND published_at IS NULL"
    "   AND (claim_expires_at IS NULL OR claim_expires_at < now())"
    "   ORDER BY id FOR UPDATE SKIP LOCKED)"
    " RETURNING id, topic, payload, clock_timestamp()"
)


def claim_ids_stamped(
    conn: Connection, ids: list[int], ttl_seconds: float = CLAIM_TTL_SECONDS
) -> tuple[list[OutboxMessage], datetime | None]:
    """`claim_stamped` of the given rows only (those still ready: a row the relay holds or
    has published is skipped): the fast path's claim."""
    if not ids:
        return [], None
    rows = conn.execute(CLAIM_IDS_SQL, [ttl_seconds, ids]).fetchall()
    messages = sorted((OutboxMessage(int(r[0]), r[1], r[2]) for r in rows), key=lambda m: m.id)
    return messages, max((r[3] for r in rows), default=None)


def has_ready(conn: Connection) -> bool:
    """Is any row ready to claim? (One index probe: idle relay ticks stay cheap.)"""
    row = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL"
        " AND (claim_expires_at IS NULL OR claim_expires_at < now()))"
    ).fetchone()
    return bool(row and row[0])


def mark_published(conn: Connection, ids: list[int], at: datetime) -> int:
    if not ids:
        return 0
    return conn.execute(
        "UPDATE outbox SET published_at = %s WHERE id = ANY(%s) AND published_at IS NULL",
        [at, ids],
    ).rowcount


def release_claims(conn: Connection, ids: list[int]) -> int:
    """Make unpublished rows ready again at once instead of after the lease, so one
    failed publish does not hold back the rest of the batch."""
    if not ids:
        return 0
    return conn.execute(
        "UPDATE outbox SET claimed_at = NULL, claim_expires_at = NULL"
        " WHERE id = ANY(%s) AND published_at IS NULL",
        [ids],
    ).rowcount


def purge_published(
    conn: Connection, retention_days: int, limit: int = PURGE_LIMIT, *, dry_run: bool = False
) -> int:
    """Delete (or, dry, count) up to `limit` published rows older than the retention, lowest
    ids first. Unpublished rows are never eligible; a limit <= 0 deletes nothing."""
    if limit <= 0 or retention_days <= 0:
        return 0
    eligible = (
        "SELECT id FROM outbox WHERE published_at IS NOT NULL"
        " AND published_at < now() - make_interval(days => %s) ORDER BY id LIMIT %s"
    )
    if dry_run:
        row = conn.execute(
            f"SELECT count(*) FROM ({eligible}) AS e", [retention_days, limit]
        ).fetchone()
        return int(row[0]) if row else 0
    return conn.execute(
        f"DELETE FROM outbox WHERE id IN ({eligible})", [retention_days, limit]
    ).rowcount


def backlog(conn: Connection) -> Backlog:
    row = conn.execute(
        "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)"
        " FROM outbox WHERE published_at IS NULL"
    ).fetchone()
    assert row is not None
    return Backlog(int(row[0]), float(row[1]))
