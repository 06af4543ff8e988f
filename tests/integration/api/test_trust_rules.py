"""Trust rules per site over HTTP (issue 15 item 1): GET/POST /api/site/{slug}/trust and
DELETE /api/site/{slug}/trust/{ruleId}.

Black box: every request goes through the local gateway to the real handler, real Postgres and
the fake GitHub. STAFF is the registry team; DEV is in `web`, the site's team, and not in the
registry team; OUTSIDER has no team.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api, Reply

SITE = "trusty"
RULE_ID = re.compile(r"^tr_[0-9a-f]{20}$")
GOOD: dict[str, Any] = {
    "repository": "octo-org/trusty",
    "repositoryId": 123456789,
    "workflow": ".github/workflows/deploy.yml",
    "ref": "refs/heads/main",
    "aliases": ["production", "preview", "pr-*"],
}


def trust_ls(api: Api, slug: str = SITE, token: str | None = STAFF) -> Reply:
    return api.call("GET", f"/api/site/{slug}/trust", token=token)


def trust_add(api: Api, body: Any, slug: str = SITE, token: str | None = STAFF) -> Reply:
    return api.call("POST", f"/api/site/{slug}/trust", token=token, json_body=body)


def trust_rm(api: Api, rule_id: str, slug: str = SITE, token: str | None = STAFF) -> Reply:
    return api.call("DELETE", f"/api/site/{slug}/trust/{rule_id}", token=token)


def rule_count(api: Api) -> int:
    return int(api.sql("SELECT count(*) FROM trust_rules")[0][0])


def audit_rows(api: Api, request_id: str) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT actor, action, site, outcome, detail FROM audit_log WHERE request_id = %s",
        [request_id],
    )


@pytest.fixture
def site(api: Api) -> str:
    api.register(SITE, ["web"])
    return SITE


# --- the happy path ---------------------------------------------------------------------------


def test_add_list_remove_with_audit_rows(api: Api, site: str) -> None:
    added = trust_add(api, {**GOOD, "environment": "production"})
    assert added.status == 201, added.raw
    rule = added.body
    assert RULE_ID.match(rule["id"])
    assert rule["site"] == SITE and rule["createdBy"] == "local-staff"
    assert {k: rule[k] for k in GOOD} == GOOD and rule["environment"] == "production"
    assert audit_rows(api, added.headers["x-request-id"]) == [
        ("local-staff", "site.trust.add", SITE, "success",
         {k: v for k, v in rule.items() if k != "site"}),
    ]  # fmt: skip

    listed = trust_ls(api)
    assert listed.status == 200 and listed.body == [rule]
    assert trust_ls(api, token=DEV).body == [rule]  # the site's team may read

    removed = trust_rm(api, rule["id"])
    assert removed.status == 200 and removed.body == rule
    assert audit_rows(api, removed.headers["x-request-id"]) == [
        ("local-staff", "site.trust.remove", SITE, "success",
         {k: v for k, v in rule.items() if k != "site"}),
    ]  # fmt: skip
    assert trust_ls(api).body == []
    assert trust_rm(api, rule["id"]).code == "trust_rule_not_found"


def test_optional_fields_are_omitted_and_order_is_oldest_first(api: Api, site: str) -> None:
    first = trust_add(api, {**GOOD, "ref": None}).body
    second = trust_add(api, {**GOOD, "workflow": ".github/workflows/pr.yaml"}).body
    assert "ref" not in first and "environment" not in first
    assert [r["id"] for r in trust_ls(api).body] == [first["id"], second["id"]]


def test_an_identical_rule_is_refused(api: Api, site: str) -> None:
    assert trust_add(api, GOOD).status == 201
    again = trust_add(api, {**GOOD, "aliases": list(reversed(GOOD["aliases"]))})
    assert (again.status, again.code) == (409, "already_exists")
    assert rule_count(api) == 1


def test_the_cap(api: Api, site: str) -> None:
    for n in range(20):
        assert trust_add(api, {**GOOD, "repositoryId": n + 1}).status == 201
    over = trust_add(api, {**GOOD, "repositoryId": 99})
    assert (over.status, over.code) == (409, "trust_rule_limit")
    assert rule_count(api) == 20
    assert audit_rows(api, over.headers["x-request-id"]) == []


def test_the_cap_holds_under_concurrent_adds(api: Api, site: str) -> None:
    for n in range(19):
        assert trust_add(api, {**GOOD, "repositoryId": n + 1}).status == 201
    with ThreadPoolExecutor(max_workers=4) as pool:
        replies = list(pool.map(lambda n: trust_add(api, {**GOOD, "repositoryId": 100 + n}),
                                range(4)))  # fmt: skip
    assert sorted(r.status for r in replies) == [201, 409, 409, 409]
    assert {r.code for r in replies if r.status == 409} == {"trust_rule_limit"}
    assert rule_count(api) == 20


# --- gates ------------------------------------------------------------------------------------


def test_no_token_is_401_everywhere(api: Api, site: str) -> None:
    for reply in (trust_ls(api, token=None), trust_add(api, GOOD, token=None),
                  trust_rm(api, "tr_" + "0" * 20, token=None)):  # fmt: skip
        assert (reply.status, reply.code) == (401, "missing_bearer")


def test_site_members_outside_the_registry_team_cannot_write(api: Api, site: str) -> None:
    rule = trust_add(api, GOOD).body
    for token in (DEV, OUTSIDER):
        refused = trust_add(api, {**GOOD, "repositoryId": 7}, token=token)
        assert (refused.status, refused.code) == (403, "user_unauthorized")
        assert audit_rows(api, refused.headers["x-request-id"]) == []
        gone = trust_rm(api, rule["id"], token=token)
        assert (gone.status, gone.code) == (403, "user_unauthorized")
    assert [r["id"] for r in trust_ls(api).body] == [rule["id"]]


def test_outsiders_cannot_read(api: Api, site: str) -> None:
    trust_add(api, GOOD)
    reply = trust_ls(api, token=OUTSIDER)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    assert "octo-org" not in reply.raw.decode()


def test_unregistered_slug(api: Api) -> None:
    assert trust_ls(api, "nosuch").code == "not_found"
    assert trust_ls(api, "nosuch", token=DEV).code == "site_unauthorized"  # the per-site gate
    assert trust_add(api, GOOD, "nosuch").code == "not_found"
    assert trust_rm(api, "tr_" + "0" * 20, "nosuch").code == "not_found"
    assert rule_count(api) == 0


@pytest.mark.parametrize("slug", ["Bad", "-x", "a_b", "x" * 64])
def test_bad_slug(api: Api, slug: str) -> None:
    for reply in (trust_ls(api, slug), trust_add(api, GOOD, slug)):
        assert (reply.status, reply.code) == (400, "invalid_slug")


@pytest.mark.parametrize("rule_id", ["tr_0123", "TR_0123456789abcdef0123", "x" * 300, "%00"])
def test_bad_rule_id_is_not_found(api: Api, site: str, rule_id: str) -> None:
    reply = trust_rm(api, rule_id)
    assert (reply.status, reply.code) == (404, "trust_rule_not_found")


def test_a_rule_of_another_site_is_not_found(api: Api, site: str) -> None:
    api.register("other", ["web"])
    rule = trust_add(api, GOOD, slug="other").body
    assert trust_rm(api, rule["id"]).code == "trust_rule_not_found"
    assert rule_count(api) == 1


# --- hostile inputs: a clear 400 naming the field, nothing written -------------------------------

HOSTILE: list[tuple[str, dict[str, Any]]] = [
    ("repository", {"repository": ""}),
    ("repository", {"repository": "octo-org"}),
    ("repository", {"repository": "octo/../etc"}),
    ("repository", {"repository": "octo/.."}),
    ("repository", {"repository": "octö/site"}),
    ("repository", {"repository": "octo/site\u202e"}),
    ("repository", {"repository": "octo/site\n"}),
    ("repositoryId", {"repositoryId": 0}),
    ("repositoryId", {"repositoryId": -1}),
    ("repositoryId", {"repositoryId": 2**63}),
    ("repositoryId", {"repositoryId": 10**40}),
    ("repositoryId", {"repositoryId": None}),
    ("workflow", {"workflow": "deploy.yml"}),
    ("workflow", {"workflow": ".github/deploy.yml"}),
    ("workflow", {"workflow": ".github/workflows/../../x.yml"}),
    ("workflow", {"workflow": ".github/workflows/deploy.sh"}),
    ("workflow", {"workflow": ".github/workflows/dépl.yml"}),
    ("workflow", {"workflow": ".github/workflows/de\x07ploy.yml"}),
    ("workflow", {"workflow": ".github/workflows/" + "a" * 300 + ".yml"}),
    ("environment", {"environment": ""}),
    ("environment", {"environment": "prod\x1b[31m"}),
    ("environment", {"environment": "prod\u200b"}),
    ("environment", {"environment": "x" * 256}),
    ("ref", {"ref": ""}),
    ("ref", {"ref": "main"}),
    ("ref", {"ref": "refs/heads/ma**"}),
    ("ref", {"ref": "refs/heads/../x"}),
    ("ref", {"ref": "refs/heads/[a-z]"}),
    ("ref", {"ref": "refs/heads/\u00e9"}),
    ("aliases", {"aliases": []}),
    ("aliases", {"aliases": None}),
    ("aliases", {"aliases": ["PRODUCTION"]}),
    ("aliases", {"aliases": ["production", "pr_*"]}),
    ("aliases", {"aliases": ["pr-?"]}),
    ("aliases", {"aliases": ["a" * 41]}),
    ("aliases", {"aliases": [f"a{i}" for i in range(21)]}),
]


@pytest.mark.parametrize(("field", "over"), HOSTILE)
def test_hostile_fields(api: Api, site: str, field: str, over: dict[str, Any]) -> None:
    reply = trust_add(api, {**GOOD, **over})
    assert (reply.status, reply.code) == (400, "invalid_trust_rule"), reply.raw
    assert reply.body["error"]["field"] == field
    assert rule_count(api) == 0
    assert audit_rows(api, reply.headers["x-request-id"]) == []


@pytest.mark.parametrize(
    "body",
    [
        {**GOOD, "repositoryId": "123"},
        {**GOOD, "repositoryId": True},
        {**GOOD, "repositoryId": 1.5},
        {**GOOD, "aliases": "production"},
        {**GOOD, "aliases": [1]},
        {**GOOD, "repository": ["octo/x"]},
        {**GOOD, "environment": 3},
        [GOOD],
    ],
)
def test_wrong_types_are_bad_requests(api: Api, site: str, body: Any) -> None:
    reply = trust_add(api, body)
    assert (reply.status, reply.code) == (400, "bad_request")
    assert rule_count(api) == 0


def test_a_5001_digit_repository_id_is_a_bad_request(api: Api, site: str) -> None:
    raw = b'{"repository": "octo/x", "repositoryId": ' + b"9" * 5_001 + b"}"
    reply = api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, body=raw,
                     headers={"Content-Type": "application/json"})  # fmt: skip
    assert (reply.status, reply.code) == (400, "bad_request")
    assert rule_count(api) == 0


def test_missing_and_oversized_bodies(api: Api, site: str) -> None:
    empty = api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, body=b"")
    assert (empty.status, empty.code) == (400, "bad_request")
    huge = api.call("POST", f"/api/site/{SITE}/trust", token=STAFF, body=b" " * (65 * 1024),
                    headers={"Content-Type": "application/json"})  # fmt: skip
    assert (huge.status, huge.code) == (413, "too_large")
    assert rule_count(api) == 0


# --- the site's lifecycle -----------------------------------------------------------------------


def test_site_delete_removes_its_rules(api: Api, site: str) -> None:
    api.register("keeper", ["web"])
    trust_add(api, GOOD)
    trust_add(api, {**GOOD, "repositoryId": 2})
    kept = trust_add(api, GOOD, slug="keeper").body
    assert api.call("DELETE", f"/api/site/{SITE}", token=STAFF).status == 204
    assert api.sql("SELECT id FROM trust_rules") == [(kept["id"],)]
    api.register(SITE, ["web"])  # registering the slug again does not bring the trust back
    assert trust_ls(api).body == []


def test_site_purge_removes_its_rules(api: Api, site: str) -> None:
    trust_add(api, GOOD)
    purged = api.call("DELETE", f"/api/site/{SITE}?purge=true", token=STAFF)
    assert purged.status == 200, purged.raw
    assert rule_count(api) == 0
