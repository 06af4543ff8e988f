"""The repo-request queue's store (`repo_requests`).

Every transition is a compare-and-set on the row: read it `FOR UPDATE`, require the expected
status, apply, stamp `updated_at`, all in the caller's transaction. The partial unique index
on `lower(name)` over pending/approved/active rows is the name claim.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from psycopg import Connection, errors
from psycopg.rows import class_row

Status = Literal["pending", "approved", "active", "rejected", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "approved", "active", "rejected", "failed")
CLAIMING: tuple[Status, ...] = ("pending", "approved", "active")
Visibility = Literal["public", "private"]  # the create route accepts nothing else


@dataclass(frozen=True)
class RepoRequest:
    id: str
    name: str
    owner: str
    description: str
    template: str
    visibility: Visibility
    status: Status  # the table's CHECK constraint
    url: str
    error: str
    requested_by: str
    approver: str
    reject_reason: str
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, name, owner, description, template, visibility, status, url, error, requested_by,"
    " approver, reject_reason, created_at, updated_at"
)


class NameClaimed(Exception):
    """Another pending, approved or active request holds this name (case-insensitively)."""


class NotFound(Exception):
    """No request with this id."""


class WrongStatus(Exception):
    """The request is not in the status the transition requires."""

    def __init__(self, current: str) -> None:
        super().__init__(f"request is {current}")
        self.current = current


def new_id() -> str:
    return "req_" + secrets.token_hex(10)


def insert(
    conn: Connection, *, name: str, owner: str, description: str, template: str,
    visibility: str, requested_by: str,
) -> RepoRequest:  # fmt: skip
    """A pending request; NameClaimed when the name is taken. One statement, so a claimed
    name aborts nothing the caller does next."""
    with conn.cursor(row_factory=class_row(RepoRequest)) as cur:
        row = cur.execute(
            "INSERT INTO repo_requests (id, name, owner, description, template, visibility,"
            " status, requested_by) VALUES (%s, %s, %s, %s, %s, %s, 'pending', %s)"
            f" ON CONFLICT DO NOTHING RETURNING {_COLUMNS}",
            [new_id(), name, owner, description, template, visibility, requested_by],
        ).fetchone()
    if row is None:
        raise NameClaimed(name)
    return row


def get(conn: Connection, request_id: str) -> RepoRequest | None:
    with conn.cursor(row_factory=class_row(RepoRequest)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM repo_requests WHERE id = %s", [request_id]
        ).fetchone()


def list_all(conn: Connection) -> list[RepoRequest]:
    """Every request, oldest first (creation time, then id)."""
    with conn.cursor(row_factory=class_row(RepoRequest)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM repo_requests ORDER BY created_at, id"
        ).fetchall()


def claim_holder(conn: Connection, name: str) -> RepoRequest | None:
    """The oldest request holding `name`'s claim (pending, approved or active)."""
    with conn.cursor(row_factory=class_row(RepoRequest)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM repo_requests WHERE lower(name) = lower(%s)"
            " AND status IN ('pending', 'approved', 'active') ORDER BY created_at, id LIMIT 1",
            [name],
        ).fetchone()


def transition(
    conn: Connection, request_id: str, expected: Status, to: Status, **fields: Any
) -> RepoRequest:
    """Compare-and-set `expected → to`, setting `fields` (url, error, approver,
    reject_reason); NotFound or WrongStatus otherwise. Run inside a transaction."""
    allowed = {"url", "error", "approver", "reject_reason"}
    if not set(fields) <= allowed:
        raise ValueError(f"unknown fields {sorted(set(fields) - allowed)}")
    current = conn.execute(
        "SELECT status FROM repo_requests WHERE id = %s FOR UPDATE", [request_id]
    ).fetchone()
    if current is None:
        raise NotFound(request_id)
    if current[0] != expected:
        raise WrongStatus(str(current[0]))
    sets = ", ".join(f"{name} = %s" for name in fields)
    with conn.cursor(row_factory=class_row(RepoRequest)) as cur:
        try:
            row = cur.execute(
                f"UPDATE repo_requests SET status = %s, updated_at = now()"
                f"{', ' + sets if sets else ''} WHERE id = %s RETURNING {_COLUMNS}",
                [to, *fields.values(), request_id],
            ).fetchone()
        except errors.UniqueViolation:
            raise NameClaimed(request_id) from None
    assert row is not None
    return row


def delete(conn: Connection, request_id: str) -> bool:
    return conn.execute("DELETE FROM repo_requests WHERE id = %s", [request_id]).rowcount == 1
