"""The site registry and whoami over HTTP (spec/api.md §10, §11, §3.8-3.10; DECISIONS API 1, 3,
8; G-3, G-19, G-21, G-24, G-25).

Black box: every request goes through the local gateway to the real handler, real Postgres and
the fake GitHub. The only in-process seams are configuration (the environment, the lock's
timeout default) and a `RegistrySnapshot` built with an injected clock.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from artemis import runtime
from artemis.db import lock as lock_module
from artemis.db.connection import Database
from artemis.db.registry_snapshot import RegistrySnapshot
from artemis.errors import DependencyError
from artemis.keys import Dirname
from artemis.site_names import DEFAULT_RESERVED_SLUGS
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api, Reply

STAFF_LOGIN = "local-staff"
DEV_LOGIN = "local-dev"
RFC3339_Z = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z")
HEX24 = re.compile(r"[0-9a-f]{24}")
SITE_ROW_KEYS = {"slug", "teams", "createdAt", "updatedAt", "createdBy"}
SMALL_BODY_LIMIT = 64 * 1024


# --- helpers ---------------------------------------------------------------------------------


def insert_site(api: Api, slug: str, teams: list[str], created_by: str = "someone") -> None:
    """A registry row written straight into Postgres, as another Lambda environment would."""
    api.sql(
        "INSERT INTO sites (slug, teams, created_by) VALUES (%s, %s, %s)", [slug, teams, created_by]
    )


def register(
    api: Api, body: Any, token: str = STAFF, headers: dict[str, str] | None = None
) -> Reply:
    return api.call("POST", "/api/site/register", token=token, json_body=body, headers=headers)


def register_raw(api: Api, raw: bytes, token: str = STAFF) -> Reply:
    return api.call("POST", "/api/site/register", token=token, body=raw,
                    headers={"Content-Type": "application/json"})  # fmt: skip


def patch(
    api: Api, slug: str, body: Any, token: str = STAFF, headers: dict[str, str] | None = None
) -> Reply:
    return api.call("PATCH", f"/api/site/{slug}", token=token, json_body=body, headers=headers)


def patch_raw(api: Api, slug: str, raw: bytes, token: str = STAFF) -> Reply:
    return api.call("PATCH", f"/api/site/{slug}", token=token, body=raw,
                    headers={"Content-Type": "application/json"})  # fmt: skip


def sites(api: Api, token: str) -> Reply:
    return api.call("GET", "/api/sites", token=token)


def whoami(api: Api, token: str) -> Reply:
    return api.call("GET", "/api/whoami", token=token)


def init(api: Api, site: str, token: str = DEV) -> Reply:
    return api.call(
        "POST", "/api/deploy/init", token=token, json_body={"site": site, "sha": "abc1234"}
    )


def row_of(api: Api, slug: str) -> tuple[Any, ...] | None:
    rows = api.sql(
        "SELECT teams, created_at, updated_at, created_by FROM sites WHERE slug = %s", [slug]
    )
    return rows[0] if rows else None


def audit_rows(api: Api, request_id: str) -> list[dict[str, Any]]:
    rows = api.sql(
        "SELECT actor, action, site, deploy_id, outcome, detail FROM audit_log WHERE request_id = %s",
        [request_id],
    )
    keys = ("actor", "action", "site", "deploy_id", "outcome", "detail")
    return [dict(zip(keys, row, strict=True)) for row in rows]


def parse_time(value: str) -> datetime:
    assert RFC3339_Z.fullmatch(value), value
    return datetime.fromisoformat(value)


def membership_path(org: str, team: str, login: str) -> str:
    return f"/orgs/{org}/teams/{team}/memberships/{login}"


def registry_probe(api: Api) -> str:
    s = api.rt.settings
    return membership_path(s.gh_org, s.registry_authz_team, STAFF_LOGIN)


def visibility_probe_prefix(api: Api) -> str:
    """Every actor-visibility probe (GH_REPO_ORG, audit team), whoever the caller is."""
    s = api.rt.settings
    return f"/orgs/{s.gh_repo_org}/teams/{s.audit_read_authz_team}/memberships/"


@contextmanager
def table_gone(api: Api, table: str) -> Iterator[None]:
    """Make every statement on `table` fail (as an unreachable or broken store would) by renaming
    it for the duration; the name is restored however the block ends."""
    api.sql(f"ALTER TABLE {table} RENAME TO {table}_away")
    try:
        yield
    finally:
        api.sql(f"ALTER TABLE {table}_away RENAME TO {table}")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- GET /api/sites ---------------------------------------------------------------------------


def test_sites_is_a_bare_array_sorted_by_slug(api: Api) -> None:
    assert sites(api, STAFF).body == []
    for slug in ("zeta", "alpha", "mid"):
        api.register(slug, ["web"])
    reply = sites(api, STAFF)
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("application/json")
    assert isinstance(reply.body, list)
    assert [row["slug"] for row in reply.body] == ["alpha", "mid", "zeta"]
    for row in reply.body:
        assert set(row) == SITE_ROW_KEYS
        assert row["teams"] == ["web"]
        parse_time(row["createdAt"])
        parse_time(row["updatedAt"])


def test_sites_reads_the_store_not_the_snapshot(api: Api) -> None:
    """§10.4: the list reads Postgres directly, so a row another environment wrote is listed
    at once although this environment's snapshot is fresh and does not hold it."""
    api.register("www", ["web"])
    assert whoami(api, DEV).body["authorizedSites"] == ["www"]  # snapshot built
    insert_site(api, "docs", ["web"])
    assert [row["slug"] for row in sites(api, STAFF).body] == ["docs", "www"]
    assert whoami(api, DEV).body["authorizedSites"] == ["www"]  # the snapshot still lags


def test_g3_registry_team_sees_every_site(api: Api) -> None:
    insert_site(api, "web-only", ["web"], "alice")
    insert_site(api, "staff-only", ["staff"], "bob")
    insert_site(api, "both", ["staff", "web"], "carol")
    insert_site(api, "orphan", [], "dave")
    insert_site(api, "other", ["docs-team"], "erin")
    reply = sites(api, STAFF)
    assert reply.status == 200
    assert [(r["slug"], r["teams"]) for r in reply.body] == [
        ("both", ["staff", "web"]),
        ("orphan", []),
        ("other", ["docs-team"]),
        ("staff-only", ["staff"]),
        ("web-only", ["web"]),
    ]


def test_g3_other_callers_see_only_their_teams_sites(api: Api) -> None:
    insert_site(api, "web-only", ["web"])
    insert_site(api, "staff-only", ["staff"])
    insert_site(api, "both", ["staff", "web"])
    insert_site(api, "orphan", [])
    reply = sites(api, DEV)
    assert reply.status == 200
    assert [r["slug"] for r in reply.body] == ["both", "web-only"]


def test_g3_caller_without_teams_sees_an_empty_array(api: Api) -> None:
    insert_site(api, "web-only", ["web"])
    insert_site(api, "staff-only", ["staff"])
    reply = sites(api, OUTSIDER)
    assert (reply.status, reply.body) == (200, [])


def test_g25_created_by_visible_to_the_sites_teams_and_the_audit_team(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DECISIONS API 3 (G-25): actor names are visible to members of the site's teams and of
    the audit team, nobody else."""
    api.register("www", ["web"])
    api.register("ops", ["staff"])
    staff_rows = sites(api, STAFF).body  # staff is the audit team here
    assert [(r["slug"], r["createdBy"]) for r in staff_rows] == [
        ("ops", STAFF_LOGIN),
        ("www", STAFF_LOGIN),
    ]
    dev_rows = sites(api, DEV).body  # DEV sees only web's site, as one of its team's members
    assert [(r["slug"], r["createdBy"]) for r in dev_rows] == [("www", STAFF_LOGIN)]
    monkeypatch.setenv("AUDIT_READ_AUTHZ_TEAM", "auditors")
    runtime.reset()
    # STAFF still sees every site (registry team) but is neither an auditor nor in `web`
    assert [(r["slug"], r["createdBy"]) for r in sites(api, STAFF).body] == [
        ("ops", STAFF_LOGIN),
        ("www", ""),
    ]
    assert [(r["slug"], r["createdBy"]) for r in sites(api, DEV).body] == [("www", STAFF_LOGIN)]


@pytest.mark.parametrize(
    ("status", "headers"),
    [
        (500, {}),
        (502, {}),
        (429, {}),
        (403, {"X-RateLimit-Remaining": "0"}),
        (401, {}),
        (403, {}),
        (0, {}),
    ],
)
def test_failing_visibility_probe_blanks_created_by_but_never_fails_the_list(
    api: Api, status: int, headers: dict[str, str]
) -> None:
    for slug in ("aaa", "bbb", "ccc"):
        insert_site(api, slug, ["web"], "alice")  # STAFF sees them as registry team, not as owner
    api.github.fail(visibility_probe_prefix(api), status, headers)
    probes_before = api.github.count(visibility_probe_prefix(api))  # the log spans the session
    reply = sites(api, STAFF)
    assert reply.status == 200, reply.raw
    assert [(r["slug"], r["createdBy"]) for r in reply.body] == [
        ("aaa", ""),
        ("bbb", ""),
        ("ccc", ""),
    ]
    # one probe per request, not one per row (failures are never cached, so each row would show)
    assert api.github.count(visibility_probe_prefix(api)) - probes_before == 1
    api.github.clear_faults()
    assert [r["createdBy"] for r in sites(api, STAFF).body] == ["alice"] * 3


def test_sites_needs_a_bearer(api: Api) -> None:
    reply = api.call("GET", "/api/sites")
    assert (reply.status, reply.code) == (401, "missing_bearer")
    reply = api.call("GET", "/api/sites", headers={"Authorization": "Basic abc"})
    assert (reply.status, reply.code) == (401, "missing_bearer")


def test_sites_with_an_unknown_token_is_unauthenticated(api: Api) -> None:
    reply = sites(api, "not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")


def test_sites_store_failure_is_registry_read_failed(api: Api) -> None:
    api.register("www", ["web"])
    with table_gone(api, "sites"):
        reply = sites(api, STAFF)
    assert (reply.status, reply.code) == (502, "registry_read_failed")
    assert "sites" not in reply.body["error"]["message"]  # the store's error text never leaks
    assert sites(api, STAFF).status == 200


# --- POST /api/site/register -------------------------------------------------------------------


@pytest.mark.parametrize("token", [DEV, OUTSIDER])
def test_register_gate_comes_before_the_body(api: Api, token: str) -> None:
    for raw in (b"{not json", b"", json.dumps({"slug": "UPPER", "teams": ["Bad"]}).encode(),
                b"x" * (SMALL_BODY_LIMIT + 1)):  # fmt: skip
        reply = register_raw(api, raw, token)
        assert (reply.status, reply.code) == (403, "user_unauthorized"), raw[:40]
    reply = register(api, {"slug": "fine", "teams": ["web"]}, token)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    assert row_of(api, "fine") is None


def test_register_needs_a_bearer(api: Api) -> None:
    reply = api.call("POST", "/api/site/register", json_body={"slug": "www"})
    assert (reply.status, reply.code) == (401, "missing_bearer")
    reply = register(api, {"slug": "www"}, token="not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")
    assert row_of(api, "www") is None


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [(429, {}, (429, "rate_limited")), (403, {"Retry-After": "30"}, (429, "rate_limited")),
     (500, {}, (503, "upstream_unavailable")), (0, {}, (503, "upstream_unavailable"))],
)  # fmt: skip
def test_register_gate_probe_failures(
    api: Api, status: int, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    api.github.fail(registry_probe(api), status, headers)
    reply = register(api, {"slug": "www"})
    assert (reply.status, reply.code) == expected
    assert row_of(api, "www") is None


@pytest.mark.parametrize(
    "raw",
    [b"{not json", b"", b"   ", b"null", b"[]", b'"www"', b"42",
     b'{"slug": 5}', b'{"slug": null}', b'{"slug": "www", "teams": "web"}',
     b'{"slug": "www", "teams": [1]}', b'{"slug": "www", "teams": {"a": 1}}',
     b'{"slug": ["www"]}'],
)  # fmt: skip
def test_register_malformed_body_is_bad_request(api: Api, raw: bytes) -> None:
    reply = register_raw(api, raw)
    assert (reply.status, reply.code) == (400, "bad_request")
    assert api.sql("SELECT count(*) FROM sites") == [(0,)]


def test_register_body_over_64_kib_is_too_large(api: Api) -> None:
    def padded(size: int) -> bytes:
        base = {"slug": "big", "teams": ["web"], "pad": ""}
        overhead = len(json.dumps(base).encode())
        base["pad"] = "x" * (size - overhead)
        raw = json.dumps(base).encode()
        assert len(raw) == size
        return raw

    reply = register_raw(api, padded(SMALL_BODY_LIMIT + 1))
    assert (reply.status, reply.code) == (413, "too_large")
    assert row_of(api, "big") is None
    reply = register_raw(api, padded(SMALL_BODY_LIMIT))  # exactly the limit is accepted
    assert reply.status == 201, reply.raw


def test_register_ignores_unknown_fields_and_trailing_bytes(api: Api) -> None:
    reply = register_raw(api, b'{"slug": "www", "teams": ["web"], "extra": {"x": 1}} trailing')
    assert reply.status == 201, reply.raw
    assert reply.body["teams"] == ["web"]


@pytest.mark.parametrize(
    "slug",
    ["", "Www", "WWW", "www-", "-www", "1www", "www_site", "www.site", "ww w", "wwé",
     "a" * 64, "a" + "-" * 62 + "-"],
)  # fmt: skip
def test_register_invalid_slug(api: Api, slug: str) -> None:
    reply = register(api, {"slug": slug, "teams": ["web"]})
    assert (reply.status, reply.code) == (400, "invalid_slug")
    assert api.sql("SELECT count(*) FROM sites") == [(0,)]


@pytest.mark.parametrize("slug", ["a", "a" * 63, "w-w", "web2", "a" + "-" * 61 + "z"])
def test_register_accepts_dns_label_slugs(api: Api, slug: str) -> None:
    reply = register(api, {"slug": slug, "teams": ["web"]})
    assert reply.status == 201, reply.raw
    assert reply.body["slug"] == slug


@pytest.mark.parametrize("slug", sorted(DEFAULT_RESERVED_SLUGS))
def test_g19_reserved_slug_is_invalid(api: Api, slug: str) -> None:
    reply = register(api, {"slug": slug, "teams": ["web"]})
    assert (reply.status, reply.code) == (400, "invalid_slug")
    assert row_of(api, slug) is None


def test_g19_preview_cannot_be_registered(api: Api) -> None:
    """`preview.<domain>` is the parent of every preview URL: the name is reserved."""
    reply = register(api, {"slug": "preview"})
    assert (reply.status, reply.code) == (400, "invalid_slug")
    assert row_of(api, "preview") is None
    assert register(api, {"slug": "previews"}).status == 201  # only the exact name is reserved


def test_g19_reserved_names_come_from_configuration(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESERVED_SLUGS", "status, Mail")
    runtime.reset()
    assert (register(api, {"slug": "status"}).code, register(api, {"slug": "mail"}).code) == (
        "invalid_slug",
        "invalid_slug",
    )
    assert register(api, {"slug": "preview"}).status == 201  # the list replaced the default


@pytest.mark.parametrize(
    "teams",
    [["Web"], ["-web"], ["_web"], ["web team"], ["w" * 40], [""], ["web", "Bad"], ["wéb"],
     ["web/x"]],
)  # fmt: skip
def test_register_invalid_team(api: Api, teams: list[str]) -> None:
    reply = register(api, {"slug": "www", "teams": teams})
    assert (reply.status, reply.code) == (400, "invalid_team")
    assert row_of(api, "www") is None


def test_register_accepts_team_slug_boundaries(api: Api) -> None:
    teams = ["w" * 39, "0team", "a_b-c", "web"]
    reply = register(api, {"slug": "www", "teams": teams})
    assert reply.status == 201, reply.raw
    assert reply.body["teams"] == teams


@pytest.mark.parametrize(
    "body", [{"slug": "www"}, {"slug": "www", "teams": []}, {"slug": "www", "teams": None}]
)
def test_register_without_teams_uses_the_registry_team(api: Api, body: dict[str, Any]) -> None:
    reply = register(api, body)
    assert reply.status == 201, reply.raw
    assert reply.body["teams"] == [api.rt.settings.registry_authz_team] == ["staff"]
    assert row_of(api, "www")[0] == ["staff"]  # type: ignore[index]


def test_register_keeps_team_order_and_duplicates(api: Api) -> None:
    reply = register(api, {"slug": "www", "teams": ["web", "staff", "web"]})
    assert reply.status == 201
    assert reply.body["teams"] == ["web", "staff", "web"]
    assert row_of(api, "www")[0] == ["web", "staff", "web"]  # type: ignore[index]


def test_register_creates_the_row(api: Api) -> None:
    before = datetime.now(UTC) - timedelta(seconds=5)
    reply = register(api, {"slug": "www", "teams": ["web"]})
    assert reply.status == 201
    assert reply.headers["content-type"].startswith("application/json")
    body = reply.body
    assert set(body) == SITE_ROW_KEYS
    assert (body["slug"], body["teams"], body["createdBy"]) == ("www", ["web"], STAFF_LOGIN)
    created, updated = parse_time(body["createdAt"]), parse_time(body["updatedAt"])
    assert created == updated
    assert before <= created <= datetime.now(UTC) + timedelta(seconds=5)
    teams, created_at, updated_at, created_by = row_of(api, "www")  # type: ignore[misc]
    assert (teams, created_by) == (["web"], STAFF_LOGIN)
    assert created_at == created and updated_at == updated


def test_register_shows_created_by_even_outside_the_audit_team(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """§3.10: the registrant is the actor, so the 201 always names them; the list does not."""
    monkeypatch.setenv("AUDIT_READ_AUTHZ_TEAM", "auditors")
    runtime.reset()
    reply = register(api, {"slug": "www", "teams": ["web"]})
    assert reply.status == 201
    assert reply.body["createdBy"] == STAFF_LOGIN
    assert [r["createdBy"] for r in sites(api, STAFF).body] == [""]


def test_register_twice_is_already_exists(api: Api) -> None:
    first = register(api, {"slug": "www", "teams": ["web"]})
    assert first.status == 201
    reply = register(api, {"slug": "www", "teams": ["staff"]})
    assert (reply.status, reply.code) == (409, "already_exists")
    teams, created_at, _, _ = row_of(api, "www")  # type: ignore[misc]
    assert teams == ["web"] and created_at == parse_time(first.body["createdAt"])
    assert audit_rows(api, reply.headers["x-request-id"]) == []  # a refused request writes no row


def test_register_writes_the_audit_row(api: Api) -> None:
    reply = register(api, {"slug": "www", "teams": ["web", "staff"]},
                     headers={"X-Request-ID": "reg-www-audit-1"})  # fmt: skip
    assert reply.status == 201
    assert reply.headers["x-request-id"] == "reg-www-audit-1"
    assert audit_rows(api, "reg-www-audit-1") == [
        {"actor": STAFF_LOGIN, "action": "site.register", "site": "www", "deploy_id": "",
         "outcome": "success", "detail": {"teams": ["web", "staff"], "createdBy": STAFF_LOGIN}},
    ]  # fmt: skip


def test_register_with_default_team_audits_the_default(api: Api) -> None:
    reply = register(api, {"slug": "www"})
    assert reply.status == 201
    rows = audit_rows(api, reply.headers["x-request-id"])
    assert [r["detail"] for r in rows] == [{"teams": ["staff"], "createdBy": STAFF_LOGIN}]


def test_register_store_failure_is_registry_write_failed(api: Api) -> None:
    with table_gone(api, "sites"):
        reply = register(api, {"slug": "www", "teams": ["web"]})
    assert (reply.status, reply.code) == (502, "registry_write_failed")
    assert row_of(api, "www") is None
    assert audit_rows(api, reply.headers["x-request-id"]) == []


def test_registered_site_is_usable_at_once_in_this_environment(api: Api) -> None:
    """The environment that wrote the registry refreshes its snapshot at once (no 60 s wait)."""
    reply = init(api, "fresh")
    assert (reply.status, reply.code) == (403, "site_unauthorized")  # the snapshot is built now
    api.register("fresh", ["web"])
    reply = init(api, "fresh")
    assert reply.status == 200, reply.raw
    assert whoami(api, DEV).body["authorizedSites"] == ["fresh"]


# --- PATCH /api/site/{slug} -------------------------------------------------------------------


@pytest.mark.parametrize("token", [DEV, OUTSIDER])
def test_patch_gate_comes_first(api: Api, token: str) -> None:
    api.register("www", ["web"])
    for raw in (b"{not json", b"", b'{"teams": []}', b"x" * (SMALL_BODY_LIMIT + 1)):
        reply = patch_raw(api, "www", raw, token)
        assert (reply.status, reply.code) == (403, "user_unauthorized"), raw[:40]
    reply = patch_raw(api, "Not-A-Slug", b"{not json", token)  # before the slug rule too
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    reply = patch(api, "www", {"teams": ["staff"]}, token)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


def test_patch_needs_a_bearer(api: Api) -> None:
    reply = api.call("PATCH", "/api/site/www", json_body={"teams": ["web"]})
    assert (reply.status, reply.code) == (401, "missing_bearer")
    reply = patch(api, "www", {"teams": ["web"]}, token="not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")


@pytest.mark.parametrize(
    ("status", "expected"), [(429, (429, "rate_limited")), (503, (503, "upstream_unavailable"))]
)
def test_patch_gate_probe_failures(api: Api, status: int, expected: tuple[int, str]) -> None:
    insert_site(api, "www", ["web"])
    api.github.fail(registry_probe(api), status)
    reply = patch(api, "www", {"teams": ["staff"]})
    assert (reply.status, reply.code) == expected
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


@pytest.mark.parametrize("slug", ["Www", "www-", "1www", "a" * 64, "preview", "api"])
def test_patch_invalid_slug(api: Api, slug: str) -> None:
    reply = patch(api, slug, {"teams": ["web"]})
    assert (reply.status, reply.code) == (400, "invalid_slug")
    # the slug rule comes before the body
    reply = patch_raw(api, slug, b"{not json")
    assert (reply.status, reply.code) == (400, "invalid_slug")


@pytest.mark.parametrize(
    "raw", [b"{not json", b"", b"[]", b"null", b'{"teams": "web"}', b'{"teams": [1]}']
)
def test_patch_malformed_body_is_bad_request(api: Api, raw: bytes) -> None:
    api.register("www", ["web"])
    reply = patch_raw(api, "www", raw)
    assert (reply.status, reply.code) == (400, "bad_request")
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


def test_patch_body_over_64_kib_is_too_large(api: Api) -> None:
    api.register("www", ["web"])
    raw = json.dumps({"teams": ["staff"], "pad": "x" * SMALL_BODY_LIMIT}).encode()
    reply = patch_raw(api, "www", raw)
    assert (reply.status, reply.code) == (413, "too_large")
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


@pytest.mark.parametrize(
    "body", [{"teams": []}, {}, {"teams": None}, {"teams": ["Web"]}, {"teams": ["web", "x" * 40]}]
)
def test_patch_invalid_team(api: Api, body: dict[str, Any]) -> None:
    api.register("www", ["web"])
    reply = patch(api, "www", body)
    assert (reply.status, reply.code) == (400, "invalid_team")
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


def test_patch_unknown_slug_is_not_found(api: Api) -> None:
    reply = patch(api, "ghost", {"teams": ["web"]})
    assert (reply.status, reply.code) == (404, "not_found")
    assert row_of(api, "ghost") is None
    assert audit_rows(api, reply.headers["x-request-id"]) == []


def test_patch_replaces_the_teams(api: Api) -> None:
    created = api.register("www", ["web"]).body
    time.sleep(0.01)
    reply = patch(api, "www", {"teams": ["staff", "docs-team"]})
    assert reply.status == 200, reply.raw
    body = reply.body
    assert set(body) == SITE_ROW_KEYS
    assert (body["slug"], body["teams"], body["createdBy"]) == (
        "www",
        ["staff", "docs-team"],
        STAFF_LOGIN,
    )
    assert body["createdAt"] == created["createdAt"]
    assert parse_time(body["updatedAt"]) > parse_time(created["updatedAt"])
    teams, created_at, updated_at, created_by = row_of(api, "www")  # type: ignore[misc]
    assert (teams, created_by) == (["staff", "docs-team"], STAFF_LOGIN)
    assert updated_at == parse_time(body["updatedAt"]) and created_at == parse_time(
        created["createdAt"]
    )


def test_patch_blanks_created_by_outside_the_audit_team(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.register("www", ["web"])
    monkeypatch.setenv("AUDIT_READ_AUTHZ_TEAM", "auditors")
    runtime.reset()
    reply = patch(api, "www", {"teams": ["web", "design"]})  # STAFF is in neither
    assert reply.status == 200
    assert reply.body["createdBy"] == ""


def test_patch_writes_the_audit_row(api: Api) -> None:
    api.register("www", ["web"])
    reply = patch(api, "www", {"teams": ["staff", "web"]}, headers={"X-Request-ID": "patch-www-1"})
    assert reply.status == 200
    assert audit_rows(api, "patch-www-1") == [
        {"actor": STAFF_LOGIN, "action": "site.update", "site": "www", "deploy_id": "",
         "outcome": "success", "detail": {"before": ["web"], "after": ["staff", "web"]}},
    ]  # fmt: skip


def test_patch_reaches_authorization_at_once(api: Api) -> None:
    api.register("www", ["web"])
    assert init(api, "www").status == 200
    assert patch(api, "www", {"teams": ["staff"]}).status == 200
    reply = init(api, "www")
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    assert whoami(api, DEV).body["authorizedSites"] == []
    assert patch(api, "www", {"teams": ["web"]}).status == 200
    assert init(api, "www").status == 200


def test_patch_takes_the_site_lock(api: Api, short_lock_wait: float) -> None:
    api.register("www", ["web"])
    with lock_module.site_lock(api.database_url, Dirname("www.example.org")):
        started = time.monotonic()
        reply = patch(api, "www", {"teams": ["staff"]})
        waited = time.monotonic() - started
    assert (reply.status, reply.code) == (409, "site_locked")
    assert 0.4 <= waited < 10
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]
    assert audit_rows(api, reply.headers["x-request-id"]) == []
    # the lock is per dirname: another site's lock does not block, and once released it works
    with lock_module.site_lock(api.database_url, Dirname("docs.example.org")):
        assert patch(api, "www", {"teams": ["staff"]}).status == 200


def test_patch_store_failure_is_registry_write_failed(api: Api) -> None:
    api.register("www", ["web"])
    with table_gone(api, "sites"):
        reply = patch(api, "www", {"teams": ["staff"]})
    assert (reply.status, reply.code) == (502, "registry_write_failed")
    assert row_of(api, "www")[0] == ["web"]  # type: ignore[index]


# --- the registry read cache (§10.4, G-21) ------------------------------------------------------


def test_snapshot_refreshes_within_60s(api: Api) -> None:
    """A change made directly in Postgres (another Lambda environment) reaches a snapshot that
    was built before it within 60 s, without any notification."""
    clock = Clock()
    db = Database(api.database_url)
    try:
        snapshot = RegistrySnapshot(db, clock=clock)  # the production max_age
        insert_site(api, "www", ["web"])
        assert snapshot.teams("www") == ["web"]
        api.sql("UPDATE sites SET teams = %s WHERE slug = 'www'", [["staff"]])
        insert_site(api, "docs", ["web"])
        clock.now += 59.9
        assert snapshot.teams("www") == ["web"]  # cached: the read path never hits the store
        assert snapshot.teams("docs") == []
        clock.now += 0.1  # 60 s after the build
        assert snapshot.teams("www") == ["staff"]
        assert snapshot.all() == {"docs": ["web"], "www": ["staff"]}
        assert snapshot.age_seconds() == 0
    finally:
        db.close()


def test_direct_registry_change_reaches_authorization_within_60s(api: Api) -> None:
    """The same through HTTP: the handler's snapshot gets an injected clock. A new site is
    read through at once; the removal of a team waits for the rebuild."""
    clock = Clock()
    api.rt.__dict__["snapshot"] = RegistrySnapshot(api.rt.db, clock=clock)
    assert whoami(api, DEV).body["authorizedSites"] == []  # built with an empty registry
    insert_site(api, "www", ["web"])
    clock.now += 30
    # An addition needs no rebuild: the refused slug is read through to Postgres (issue 11).
    assert (init(api, "www").status, whoami(api, DEV).body["authorizedSites"]) == (200, ["www"])
    clock.now += 30
    assert init(api, "www").status == 200
    assert whoami(api, DEV).body["authorizedSites"] == ["www"]
    api.sql("UPDATE sites SET teams = %s WHERE slug = 'www'", [["staff"]])
    clock.now += 60
    assert init(api, "www").code == "user_unauthorized"


def test_g21_failed_rebuild_keeps_the_previous_snapshot(api: Api) -> None:
    clock = Clock()
    db = Database(api.database_url)
    try:
        snapshot = RegistrySnapshot(db, max_age=60, clock=clock)
        insert_site(api, "www", ["web"])
        assert snapshot.all() == {"www": ["web"]}
        with table_gone(api, "sites"):
            clock.now += 61
            assert snapshot.all() == {"www": ["web"]}  # the rebuild failed; nothing was lost
            assert snapshot.teams("www") == ["web"]
            assert snapshot.age_seconds() >= 61  # and the age shows it is stale
        insert_site(api, "docs", ["staff"])
        assert snapshot.all() == {"docs": ["staff"], "www": ["web"]}  # the next rebuild works
    finally:
        db.close()


def test_g21_first_build_must_succeed(api: Api) -> None:
    db = Database(api.database_url)
    try:
        snapshot = RegistrySnapshot(db)
        with table_gone(api, "sites"), pytest.raises(DependencyError) as info:
            snapshot.teams("www")
        assert (info.value.status, info.value.code) == (502, "registry_read_failed")
        insert_site(api, "www", ["web"])
        assert snapshot.teams("www") == ["web"]
    finally:
        db.close()


def test_g21_failed_rebuild_keeps_authorizing_over_http(api: Api) -> None:
    api.register("www", ["web"])
    assert whoami(api, DEV).body["authorizedSites"] == ["www"]
    with table_gone(api, "sites"):
        api.rt.snapshot.invalidate()  # force a rebuild on the next read: it fails
        reply = whoami(api, DEV)
        assert (reply.status, reply.body["authorizedSites"]) == (200, ["www"])
        assert init(api, "www").status == 200


# --- GET /api/whoami ------------------------------------------------------------------------


def test_whoami_lists_the_callers_sites_sorted(api: Api) -> None:
    insert_site(api, "zeta", ["web"])
    insert_site(api, "alpha", ["staff", "web"])
    insert_site(api, "mid", ["staff"])
    insert_site(api, "orphan", [])
    insert_site(api, "other", ["docs-team"])
    reply = whoami(api, DEV)
    assert reply.status == 200
    assert reply.body == {"login": DEV_LOGIN, "authorizedSites": ["alpha", "zeta"]}
    assert whoami(api, STAFF).body == {"login": STAFF_LOGIN, "authorizedSites": ["alpha", "mid"]}


def test_whoami_without_teams_is_an_empty_array(api: Api) -> None:
    insert_site(api, "www", ["web"])
    reply = whoami(api, OUTSIDER)
    assert (reply.status, reply.body) == (200, {"login": "local-outsider", "authorizedSites": []})


def test_whoami_needs_a_bearer(api: Api) -> None:
    reply = api.call("GET", "/api/whoami")
    assert (reply.status, reply.code) == (401, "missing_bearer")
    reply = whoami(api, "not-a-real-token")
    assert (reply.status, reply.code) == (401, "unauthenticated")


@pytest.mark.parametrize(
    ("status", "headers", "expected"),
    [(429, {}, (429, "rate_limited")),
     (403, {"X-RateLimit-Remaining": "0"}, (429, "rate_limited")),
     (403, {"Retry-After": "60"}, (429, "rate_limited")),
     (500, {}, (503, "upstream_unavailable")),
     (502, {}, (503, "upstream_unavailable")),
     (0, {}, (503, "upstream_unavailable")),
     (418, {}, (503, "upstream_unavailable")),
     (401, {}, (401, "unauthenticated")),  # G-4: a revoked token is not an outage
     (403, {}, (403, "insufficient_scope"))],  # G-4: missing read:org / SSO
)  # fmt: skip
def test_whoami_team_listing_failures(
    api: Api, status: int, headers: dict[str, str], expected: tuple[int, str]
) -> None:
    insert_site(api, "www", ["web"])
    api.github.fail("/user/teams", status, headers, times=1)
    reply = whoami(api, DEV)
    assert (reply.status, reply.code) == expected
    # nothing is cached on failure: the next call lists the teams again
    reply = whoami(api, DEV)
    assert (reply.status, reply.body) == (200, {"login": DEV_LOGIN, "authorizedSites": ["www"]})


def test_g24_whoami_is_advisory(api: Api) -> None:
    """The team listing counts a pending membership; the gate's probe requires `active`."""
    insert_site(api, "www", ["web"])
    api.github.set_membership_state("web", DEV_LOGIN, "pending")
    try:
        assert whoami(api, DEV).body["authorizedSites"] == ["www"]
        reply = init(api, "www")
        assert (reply.status, reply.code) == (403, "user_unauthorized")
    finally:
        api.github.membership_states.clear()
