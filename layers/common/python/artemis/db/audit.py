"""The append-only audit log (`audit_log`). Rows are written once and never changed."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import Connection, sql
from psycopg.rows import class_row
from psycopg.types.json import Jsonb


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    outcome: str
    site: str = ""
    deploy_id: str = ""
    detail: dict[str, Any] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True)
class AuditRow:
    id: int
    occurred_at: datetime
    actor: str
    action: str
    site: str
    deploy_id: str
    outcome: str
    detail: dict[str, Any]
    request_id: str


@dataclass(frozen=True)
class AuditFilter:
    site: str | None = None
    action: str | None = None
    actor: str | None = None
    since: datetime | None = None
    limit: int = 100
    offset: int = 0


def append(conn: Connection, entry: AuditEntry) -> int:
    row = conn.execute(
        "INSERT INTO audit_log (actor, action, site, deploy_id, outcome, detail, request_id)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
        [
            entry.actor,
            entry.action,
            entry.site,
            entry.deploy_id,
            entry.outcome,
            Jsonb(entry.detail),
            entry.request_id,
        ],
    ).fetchone()
    assert row is not None
    return int(row[0])


def query(conn: Connection, flt: AuditFilter) -> list[AuditRow]:
    """Newest first, filtered by any of site, action, actor and a lower time bound."""
    clauses: list[sql.Composable] = []
    params: list[Any] = []
    for column, value in (("site", flt.site), ("action", flt.action), ("actor", flt.actor)):
        if value:
            clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
            params.append(value)
    if flt.since is not None:
        clauses.append(sql.SQL("occurred_at >= %s"))
        params.append(flt.since)
    where = sql.SQL(" WHERE ") + sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("")
    stmt = sql.SQL(
        "SELECT id, occurred_at, actor, action, site, deploy_id, outcome, detail, request_id"
        " FROM audit_log{} ORDER BY occurred_at DESC, id DESC LIMIT %s OFFSET %s"
    ).format(where)
    with conn.cursor(row_factory=class_row(AuditRow)) as cur:
        return cur.execute(stmt, [*params, flt.limit, flt.offset]).fetchall()


def deploy_actors(conn: Connection, site: str, deploy_ids: list[str]) -> dict[str, str]:
    """The most recent successful finalizer of each deploy, in one query
    for the whole list, never one per deploy."""
    if not deploy_ids:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (deploy_id) deploy_id, actor FROM audit_log"
        " WHERE site = %s AND action = 'deploy.finalize' AND outcome = 'success'"
        " AND deploy_id = ANY(%s)"
        " ORDER BY deploy_id, occurred_at DESC, id DESC",
        [site, deploy_ids],
    ).fetchall()
    return {r[0]: r[1] for r in rows}
