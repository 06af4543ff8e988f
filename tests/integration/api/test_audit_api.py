"""`GET /api/audit` over HTTP (spec/api.md §13.3-13.5, §2.6; G-5, G-26).

The audit log is append-only and survives between tests, so each test writes and reads rows of
its own (a unique actor, site or request id). Bulk rows are inserted with SQL, which the
append-only triggers allow.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode

import pytest
from psycopg.types.json import Jsonb

from artemis import runtime
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api, Reply

STAFF_LOGIN = "local-staff"
HEX24 = re.compile(r"[0-9a-f]{24}")
RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
BASE = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


def tag() -> str:
    return uuid.uuid4().hex[:12]


def audit(api: Api, token: str = STAFF, raw_query: str = "", **params: Any) -> Reply:
    query = raw_query or urlencode({k: v for k, v in params.items()}, quote_via=quote)
    return api.call("GET", "/api/audit" + (f"?{query}" if query else ""), token=token)


def insert(
    api: Api, *, actor: str, action: str = "test.action", site: str = "", deploy_id: str = "",
    outcome: str = "success", detail: dict[str, Any] | None = None, request_id: str = "",
    at: datetime | None = None,
) -> int:  # fmt: skip
    rows = api.sql(
        "INSERT INTO audit_log (occurred_at, actor, action, site, deploy_id, outcome, detail, request_id)"
        " VALUES (coalesce(%s, now()), %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        [at, actor, action, site, deploy_id, outcome, Jsonb(detail or {}), request_id],
    )
    return int(rows[0][0])


def insert_many(api: Api, actor: str, count: int) -> None:
    """`count` rows for `actor`, one second apart; row n has detail {"n": n}."""
    api.sql(
        "INSERT INTO audit_log (occurred_at, actor, action, outcome, detail)"
        " SELECT %s::timestamptz + n * interval '1 second', %s, 'test.bulk', 'success',"
        " jsonb_build_object('n', n) FROM generate_series(1, %s) AS n",
        [BASE, actor, count],
    )


def ids(reply: Reply) -> list[int]:
    assert reply.status == 200, reply.raw
    return [row["id"] for row in reply.body]


@contextmanager
def table_gone(api: Api, table: str) -> Iterator[None]:
    """Make every statement on `table` fail by renaming it for the duration."""
    api.sql(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        api.sql(f"ALTER TABLE {table}_away RENAME TO {table}")


def audit_probe(api: Api) -> str:
    s = api.rt.settings
    return f"/orgs/{s.gh_repo_org}/teams/{s.audit_read_authz_team}/memberships/{STAFF_LOGIN}"


# --- authorization ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [DEV, OUTSIDER])
@pytest.mark.parametrize(
    "raw_query",
    [
        "",
        "since=yesterday",
        "limit=-1",
        "offset=x",
        "since=bad&limit=bad&offset=bad",
        "limit=%C2%B2",
    ],
)
def test_g26_gate_comes_before_parameter_validation(api: Api, token: str, raw_query: str) -> None:
    reply = audit(api, token, raw_query)
    assert (reply.status, reply.code) == (403, "user_unauthorized")


def test_g26_the_same_parameters_are_refused_for_the_audit_team(api: Api) -> None:
    """The control for the gate test: the parameters really are invalid."""
    reply = audit(api, STAFF, "since=bad&limit=bad&offset=bad")
    assert (reply.status, reply.code) == (400, "invalid_since")


def test_audit_needs_a_bearer(api: Api) -> None:
    reply = api.call("GET", "/api/audit")
    assert (reply.status, reply.code) == (401, "missing_bearer")
    reply = audit(api, "not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [(429, {}, (429, "rate_limited")), (403, {"X-RateLimit-Remaining": "0"}, (429, "rate_limited")),
     (500, {}, (503, "upstream_unavailable")), (0, {}, (503, "upstream_unavailable"))],
)  # fmt: skip
def test_audit_gate_probe_failures(
    api: Api, status: int, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    api.github.fail(audit_probe(api), status, headers, times=1)
    reply = audit(api, STAFF, limit="1")
    assert (reply.status, reply.code) == expected
    assert audit(api, STAFF, limit="1").status == 200  # a failed probe is not cached


def test_audit_gate_is_the_audit_team_in_the_repo_org(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AUDIT_READ_AUTHZ_TEAM", "web")
    runtime.reset()
    assert audit(api, DEV, limit="1").status == 200
    reply = audit(api, STAFF, limit="1")
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    s = api.rt.settings
    assert api.github.count(f"/orgs/{s.gh_repo_org}/teams/web/memberships/local-dev") >= 1


# --- parameter validation -------------------------------------------------------------------


@pytest.mark.parametrize(
    "since",
    ["yesterday", "2026-03-01", "2026-03-01T12:00:00", "2026-03-01 12:00:00Z",
     "2026-03-01t12:00:00z", "2026-13-01T12:00:00Z", "2026-02-30T12:00:00Z",
     "2026-03-01T12:00:60Z", "2026-03-01T12:00:00+0100", "1772366400"],
)  # fmt: skip
def test_invalid_since(api: Api, since: str) -> None:
    reply = audit(api, since=since)
    assert (reply.status, reply.code) == (400, "invalid_since")


def test_since_with_a_raw_plus_is_invalid_and_an_encoded_one_is_accepted(api: Api) -> None:
    """A `+` in a query string is a space: the offset must be percent-encoded."""
    reply = audit(api, raw_query="since=2026-03-01T12:00:00+01:00")
    assert (reply.status, reply.code) == (400, "invalid_since")
    assert audit(api, raw_query="since=2026-03-01T12:00:00%2B01:00").status == 200


@pytest.mark.parametrize(
    "since",
    ["2026-03-01T12:00:00Z", "2026-03-01T12:00:00.123456789Z", "2026-03-01T07:00:00-05:00",
     "2026-03-01T13:00:00+01:00"],
)  # fmt: skip
def test_valid_since_forms(api: Api, since: str) -> None:
    assert audit(api, since=since, actor=f"nobody-{tag()}").status == 200


@pytest.mark.parametrize("param", ["limit", "offset"])
@pytest.mark.parametrize(
    "value", ["-1", "abc", "1.5", "1e3", "0x10", "²", "٣", " 5", "5 ", "99999999999999999999"]
)
def test_invalid_limit_and_offset(api: Api, param: str, value: str) -> None:
    reply = audit(api, **{param: value})
    assert (reply.status, reply.code) == (400, f"invalid_{param}"), reply.raw


# --- paging ---------------------------------------------------------------------------------


def test_limit_defaults_to_100_and_is_clamped_to_500(api: Api) -> None:
    actor = f"bulk-{tag()}"
    insert_many(api, actor, 520)
    assert len(ids(audit(api, actor=actor))) == 100
    assert len(ids(audit(api, actor=actor, limit="0"))) == 100
    assert len(ids(audit(api, actor=actor, limit=""))) == 100
    assert len(ids(audit(api, actor=actor, limit="7"))) == 7
    assert len(ids(audit(api, actor=actor, limit="500"))) == 500
    assert len(ids(audit(api, actor=actor, limit="501"))) == 500
    assert len(ids(audit(api, actor=actor, limit="100000"))) == 500
    assert len(ids(audit(api, actor=actor, limit=str(2**63 - 1)))) == 500


def test_offset_pages_through_the_rows(api: Api) -> None:
    actor = f"bulk-{tag()}"
    insert_many(api, actor, 520)
    everything = ids(audit(api, actor=actor, limit="500")) + ids(
        audit(api, actor=actor, limit="500", offset="500")
    )
    assert len(everything) == len(set(everything)) == 520
    last = audit(api, actor=actor, limit="500", offset="515")
    assert [row["detail"]["n"] for row in last.body] == [5, 4, 3, 2, 1]
    assert ids(audit(api, actor=actor, offset="520")) == []
    assert ids(audit(api, actor=actor, offset=str(2**63 - 1))) == []
    page = audit(api, actor=actor, limit="3", offset="2")
    assert [row["detail"]["n"] for row in page.body] == [518, 517, 516]


# --- filters and order ----------------------------------------------------------------------


def test_filters_are_exact_and_combine(api: Api) -> None:
    t = tag()
    alice, bob = f"alice-{t}", f"bob-{t}"
    www, docs = f"www-{t}", f"docs-{t}"
    a1 = insert(api, actor=alice, action="site.promote", site=www, at=BASE)
    a2 = insert(api, actor=alice, action="site.rollback", site=docs, at=BASE + timedelta(seconds=1))
    b1 = insert(api, actor=bob, action="site.promote", site=www, at=BASE + timedelta(seconds=2))
    b2 = insert(
        api, actor=bob, action="site.promote", site=f"{www}x", at=BASE + timedelta(seconds=3)
    )
    assert ids(audit(api, actor=alice)) == [a2, a1]
    assert ids(audit(api, site=www)) == [b1, a1]  # exact: not the `…x` site
    assert ids(audit(api, site=www, action="site.promote")) == [b1, a1]
    assert ids(audit(api, site=www, actor=bob)) == [b1]
    assert ids(audit(api, actor=bob, action="site.promote")) == [b2, b1]
    assert ids(audit(api, actor=alice, action="site.promote", site=docs)) == []
    assert ids(audit(api, actor=alice.upper())) == []  # case-sensitive
    assert ids(audit(api, actor=f"{alice}%")) == []  # no pattern matching
    assert ids(audit(api, actor=alice, unknown="ignored")) == [a2, a1]


def test_since_is_inclusive_and_honours_fractions_and_offsets(api: Api) -> None:
    actor = f"since-{tag()}"
    early = insert(api, actor=actor, at=BASE)
    mid = insert(api, actor=actor, at=BASE + timedelta(microseconds=500_000))
    late = insert(api, actor=actor, at=BASE + timedelta(hours=1))
    assert ids(audit(api, actor=actor, since="2026-03-01T12:00:00Z")) == [late, mid, early]
    assert ids(audit(api, actor=actor, since="2026-03-01T12:00:00.25Z")) == [late, mid]
    assert ids(audit(api, actor=actor, since="2026-03-01T12:00:00.5Z")) == [late, mid]
    assert ids(audit(api, actor=actor, since="2026-03-01T12:00:00.500001Z")) == [late]
    assert ids(audit(api, actor=actor, since="2026-03-01T13:30:00+01:00")) == [late]  # 12:30 UTC
    assert ids(audit(api, actor=actor, since="2026-03-01T13:00:00.000001Z")) == []
    assert ids(audit(api, actor=actor, since="")) == [late, mid, early]  # empty: no bound


def test_newest_first_then_highest_id(api: Api) -> None:
    actor = f"order-{tag()}"
    old = insert(api, actor=actor, at=BASE - timedelta(days=1))
    tie_1 = insert(api, actor=actor, at=BASE)
    newest = insert(api, actor=actor, at=BASE + timedelta(days=1))
    tie_2 = insert(api, actor=actor, at=BASE)
    oldest = insert(api, actor=actor, at=BASE - timedelta(days=2))
    assert tie_2 > tie_1
    assert ids(audit(api, actor=actor)) == [newest, tie_2, tie_1, old, oldest]


def test_empty_result_is_an_empty_array(api: Api) -> None:
    reply = audit(api, actor=f"nobody-{tag()}")
    assert (reply.status, reply.body) == (200, [])
    assert reply.headers["content-type"].startswith("application/json")


# --- the row shape --------------------------------------------------------------------------


def test_empty_fields_are_omitted(api: Api) -> None:
    actor = f"shape-{tag()}"
    at = datetime(2026, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)
    bare = insert(api, actor=actor, action="gc.purge", outcome="success", at=at)
    full = insert(
        api, actor=actor, action="deploy.finalize", site="www", deploy_id="20260301-120000-abc1234",
        outcome="success", detail={"mode": "production", "bytes": 12, "nested": {"a": [1, None]}},
        request_id="req-1", at=at + timedelta(seconds=1),
    )  # fmt: skip
    rows = audit(api, actor=actor).body
    assert rows == [
        {"id": full, "occurredAt": "2026-03-01T12:00:01.123456Z", "actor": actor,
         "action": "deploy.finalize", "site": "www", "deployId": "20260301-120000-abc1234",
         "outcome": "success", "requestId": "req-1",
         "detail": {"mode": "production", "bytes": 12, "nested": {"a": [1, None]}}},
        {"id": bare, "occurredAt": "2026-03-01T12:00:00.123456Z", "actor": actor,
         "action": "gc.purge", "outcome": "success"},
    ]  # fmt: skip


def test_occurred_at_is_rfc3339_utc(api: Api) -> None:
    actor = f"time-{tag()}"
    insert(api, actor=actor, at=datetime(2026, 3, 1, 7, 0, 0, tzinfo=UTC))
    insert(api, actor=actor)  # the database clock
    rows = audit(api, actor=actor).body
    for row in rows:
        assert RFC3339_Z.fullmatch(row["occurredAt"]), row["occurredAt"]
    assert datetime.fromisoformat(rows[1]["occurredAt"]) == datetime(2026, 3, 1, 7, tzinfo=UTC)
    assert abs(datetime.fromisoformat(rows[0]["occurredAt"]) - datetime.now(UTC)) < timedelta(
        minutes=5
    )


def test_a_store_failure_is_audit_read_failed(api: Api) -> None:
    with table_gone(api, "audit_log"):
        reply = audit(api, limit="1")
    assert (reply.status, reply.code) == (502, "audit_read_failed")
    assert "audit_log" not in reply.body["error"]["message"]
    assert audit(api, limit="1").status == 200


# --- rows written by requests: actor, action, request id (G-5) --------------------------------


def test_a_request_audits_its_action_through_the_read_api(api: Api) -> None:
    slug = f"aud-{tag()}"
    reply = api.call(
        "POST", "/api/site/register", token=STAFF, json_body={"slug": slug, "teams": ["web"]}
    )
    assert reply.status == 201
    rows = audit(api, site=slug).body
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == {
        "id",
        "occurredAt",
        "actor",
        "action",
        "site",
        "outcome",
        "requestId",
        "detail",
    }
    assert (row["actor"], row["action"], row["site"], row["outcome"]) == (
        STAFF_LOGIN,
        "site.register",
        slug,
        "success",
    )
    assert row["detail"] == {"teams": ["web"], "createdBy": STAFF_LOGIN}
    assert row["requestId"] == reply.headers["x-request-id"]
    assert "deployId" not in row  # empty for registry actions


@pytest.mark.parametrize("inbound", ["ci-run:42.a_b-c", "A" * 128, "x"])
def test_g5_wellformed_request_id_is_recorded_on_the_audit_row(api: Api, inbound: str) -> None:
    slug = f"rid-{tag()}"
    reply = api.call("POST", "/api/site/register", token=STAFF, json_body={"slug": slug},
                     headers={"X-Request-ID": inbound})  # fmt: skip
    assert reply.status == 201
    assert reply.headers["x-request-id"] == inbound
    rows = audit(api, site=slug, action="site.register").body
    assert [row["requestId"] for row in rows] == [inbound]


@pytest.mark.parametrize(
    "inbound", ["has space", "A" * 129, "semi;colon", 'quote"d', "<script>", "é"]
)
def test_g5_malformed_request_id_is_replaced_in_header_and_row(api: Api, inbound: str) -> None:
    slug = f"rid-{tag()}"
    reply = api.call("POST", "/api/site/register", token=STAFF, json_body={"slug": slug},
                     headers={"X-Request-ID": inbound})  # fmt: skip
    assert reply.status == 201
    generated = reply.headers["x-request-id"]
    assert HEX24.fullmatch(generated) and generated != inbound
    rows = audit(api, site=slug, action="site.register").body
    assert [row["requestId"] for row in rows] == [generated]
    assert api.sql("SELECT count(*) FROM audit_log WHERE request_id = %s", [inbound]) == [(0,)]


def test_each_request_gets_its_own_generated_id(api: Api) -> None:
    slugs = [f"rid-{tag()}" for _ in range(2)]
    headers = [
        api.call("POST", "/api/site/register", token=STAFF, json_body={"slug": s}).headers[
            "x-request-id"
        ]
        for s in slugs
    ]
    assert all(HEX24.fullmatch(h) for h in headers) and headers[0] != headers[1]
    recorded = [audit(api, site=s).body[0]["requestId"] for s in slugs]
    assert recorded == headers


def test_refused_requests_write_no_row(api: Api) -> None:
    slug = f"ref-{tag()}"
    assert api.call("POST", "/api/site/register", token=DEV, json_body={"slug": slug}).status == 403
    assert (
        api.call(
            "POST", "/api/site/register", token=STAFF, json_body={"slug": slug, "teams": ["Bad"]}
        ).status
        == 400
    )
    assert audit(api, site=slug).body == []


def test_reading_the_audit_log_is_not_audited(api: Api) -> None:
    reply = audit(api, limit="1")
    assert reply.status == 200
    rid = reply.headers["x-request-id"]
    assert api.sql("SELECT count(*) FROM audit_log WHERE request_id = %s", [rid]) == [(0,)]
