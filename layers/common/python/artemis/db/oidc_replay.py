"""The accepted OIDC token ids (`oidc_replay`): each `jti` is admitted once until it expires."""

from __future__ import annotations

from datetime import UTC, datetime

from psycopg import Connection


def remember_jti(conn: Connection, jti: str, keep_until: float) -> bool:
    """Record `jti` until `keep_until` (epoch seconds); False when it is already recorded (a
    replay). Rows past their time are purged first, so the table holds only live tokens."""
    conn.execute("DELETE FROM oidc_replay WHERE expires_at < now()")
    row = conn.execute(
        "INSERT INTO oidc_replay (jti, expires_at) VALUES (%s, %s)"
        " ON CONFLICT (jti) DO NOTHING RETURNING jti",
        (jti, datetime.fromtimestamp(keep_until, UTC)),
    ).fetchone()
    return row is not None
