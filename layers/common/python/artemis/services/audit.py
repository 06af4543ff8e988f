"""Audit writes (best effort: a failure is logged, never changes the response) and the audit
read API (`GET /api/audit`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from artemis.config import DatabaseSettings
from artemis.db import audit as audit_db
from artemis.errors import DependencyError, InvalidLimit, InvalidOffset, InvalidSince
from artemis.observability import logger
from artemis.runtime import Runtime
from artemis.services.context import RequestContext
from artemis.times import parse_rfc3339, rfc3339

# The answer's models are imported where it is built: off the cold init (see __init__).
if TYPE_CHECKING:
    from artemis.responses import AuditRow

AUDIT_WRITE_TIMEOUT_MS = 5000
DEFAULT_LIMIT = 100
MAX_LIMIT = 500
MAX_INT64 = 2**63 - 1  # the reference parses with Go's strconv.Atoi: larger values are refused
_INTEGER_RE = re.compile(r"[+-]?[0-9]+", re.ASCII)


def record(
    rt: Runtime[DatabaseSettings],
    ctx: RequestContext,
    action: str,
    *,
    site: str = "",
    deploy_id: str = "",
    outcome: str = "success",
    detail: dict[str, Any] | None = None,
    actor: str | None = None,
) -> None:
    entry = audit_db.AuditEntry(
        actor=actor or (ctx.caller.login if ctx.caller else "unknown"),
        action=action,
        outcome=outcome,
        site=site,
        deploy_id=deploy_id,
        detail=detail or {},
        request_id=ctx.request_id,
    )
    try:
        with rt.db.transaction() as conn:
            conn.execute(f"SET LOCAL statement_timeout = {AUDIT_WRITE_TIMEOUT_MS}")
            audit_db.append(conn, entry)
    except Exception:  # best effort by contract: log, never fail the request
        logger.exception("audit.write failed", extra={"action": action, "site": site})


@dataclass(frozen=True)
class AuditQuery:
    site: str | None
    actor: str | None
    action: str | None
    since: datetime | None
    limit: int
    offset: int


def parse_query(params: Mapping[str, str]) -> AuditQuery:
    since = None
    if params.get("since"):
        since = parse_rfc3339(params["since"])
        if since is None:
            raise InvalidSince()
    limit = _non_negative(params.get("limit"), InvalidLimit) or DEFAULT_LIMIT
    offset = _non_negative(params.get("offset"), InvalidOffset)
    return AuditQuery(
        site=params.get("site") or None,
        actor=params.get("actor") or None,
        action=params.get("action") or None,
        since=since,
        limit=min(limit, MAX_LIMIT),
        offset=offset,
    )


def _non_negative(raw: str | None, error: type[Exception]) -> int:
    """An integer in [0, 2**63-1] written in ASCII digits (an optional sign, as Go's Atoi).

    `str.isdigit()` is not enough: it accepts characters such as `²` that `int()` refuses
    (an unhandled ValueError, 500), and an unbounded value overflows Postgres's bigint
    (502 instead of 400)."""
    if raw is None or raw == "":
        return 0
    if _INTEGER_RE.fullmatch(raw) is None:
        raise error()
    value = int(raw)
    if not 0 <= value <= MAX_INT64:
        raise error()
    return value


def read(rt: Runtime, query: AuditQuery) -> list[AuditRow]:
    flt = audit_db.AuditFilter(
        site=query.site, action=query.action, actor=query.actor, since=query.since,
        limit=query.limit, offset=query.offset,
    )  # fmt: skip
    try:
        with rt.db.transaction() as conn:
            rows = audit_db.query(conn, flt)
    except Exception as err:
        raise DependencyError("audit_read_failed") from err
    return [_row_json(r) for r in rows]


def _row_json(row: audit_db.AuditRow) -> AuditRow:
    """Empty optional columns are left out of the answer (None is omitted), never sent as ""."""
    from artemis.responses import AuditRow

    return AuditRow(
        id=row.id,
        occurredAt=rfc3339(row.occurred_at),
        actor=row.actor,
        action=row.action,
        outcome=row.outcome,
        site=row.site or None,
        deployId=row.deploy_id or None,
        requestId=row.request_id or None,
        detail=row.detail or None,
    )
