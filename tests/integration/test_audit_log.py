"""The audit log is append-only: the database itself refuses UPDATE, DELETE and TRUNCATE."""

import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from artemis.db import audit
from artemis.db.audit import AuditEntry, AuditFilter


@pytest.fixture
def tag() -> str:
    return uuid.uuid4().hex[:10]


def test_update_is_rejected(conn: psycopg.Connection, tag: str) -> None:
    audit.append(conn, AuditEntry(actor=tag, action="deploy.init", outcome="ok"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="UPDATE rejected"):
        conn.execute("UPDATE audit_log SET outcome = 'forged' WHERE actor = %s", [tag])


def test_delete_is_rejected(conn: psycopg.Connection, tag: str) -> None:
    audit.append(conn, AuditEntry(actor=tag, action="deploy.init", outcome="ok"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="DELETE rejected"):
        conn.execute("DELETE FROM audit_log WHERE actor = %s", [tag])


def test_truncate_is_rejected(conn: psycopg.Connection, tag: str) -> None:
    audit.append(conn, AuditEntry(actor=tag, action="deploy.init", outcome="ok"))
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="TRUNCATE rejected"):
        conn.execute("TRUNCATE audit_log")
    assert audit.query(conn, AuditFilter(actor=tag))[0].outcome == "ok"


def test_query_filters_newest_first(conn: psycopg.Connection, tag: str) -> None:
    site = f"site-{tag}"
    first = audit.append(
        conn,
        AuditEntry(
            actor=tag,
            action="deploy.init",
            outcome="ok",
            site=site,
            deploy_id="d1",
            request_id="r1",
        ),
    )
    second = audit.append(
        conn,
        AuditEntry(actor=tag, action="site.promote", outcome="ok", site=site, detail={"to": "d1"}),
    )
    audit.append(
        conn, AuditEntry(actor="someone-else", action="deploy.init", outcome="ok", site=site)
    )
    rows = audit.query(conn, AuditFilter(actor=tag))
    assert [r.id for r in rows] == [second, first]
    assert rows[0].detail == {"to": "d1"}
    assert rows[1].request_id == "r1"
    assert [r.id for r in audit.query(conn, AuditFilter(site=site, action="site.promote"))] == [
        second
    ]
    assert len(audit.query(conn, AuditFilter(site=site))) == 3
    assert [r.id for r in audit.query(conn, AuditFilter(site=site, limit=1, offset=1))] == [second]
    future = datetime.now(UTC) + timedelta(hours=1)
    assert audit.query(conn, AuditFilter(site=site, since=future)) == []


def test_deploy_actors_in_one_query(conn: psycopg.Connection, tag: str) -> None:
    site = f"site-{tag}"

    def finalize(
        actor: str, deploy_id: str, outcome: str = "success", action: str = "deploy.finalize"
    ) -> None:
        audit.append(
            conn,
            AuditEntry(actor=actor, action=action, outcome=outcome, site=site, deploy_id=deploy_id),
        )

    finalize("alice", "a")
    finalize("bob", "b")
    finalize("carol", "b")
    finalize("dave", "c", action="deploy.init")
    finalize("erin", "c", outcome="failure")
    # the most recent successful finalizer wins; init rows and failures do not count
    assert audit.deploy_actors(conn, site, ["a", "b", "c"]) == {"a": "alice", "b": "carol"}
    assert audit.deploy_actors(conn, site, []) == {}
