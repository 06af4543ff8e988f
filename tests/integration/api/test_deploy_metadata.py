"""Issue 14: a deploy carries its context. Init's metadata (branch, message, pr, repo, ciUrl)
through the API: recorded on the deploy and in the audit log, hostile values refused with
`400 invalid_metadata` (or `bad_request` for a wrong JSON type) and nothing written; and the
deploy list's states, times, sizes, aliases and metadata, through delete and restore."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.integration.api.conftest import DEV, Api

SITE_DIR = "www.example.org"
META = {
    "branch": "fix/footer-links",
    "message": "Fix the footer links",
    "pr": 512,
    "repo": "freeCodeCamp/www",
    "ciUrl": "https://github.com/freeCodeCamp/www/actions/runs/8813456",
}


@pytest.fixture
def www(api: Api) -> Api:
    api.register("www", ["web"])
    return api


def _init(api: Api, body: dict[str, Any]) -> Any:
    sha = uuid.uuid4().hex[:7]
    return api.call("POST", "/api/deploy/init", token=DEV,
                    json_body={"site": "www", "sha": sha, **body})  # fmt: skip


def _listing(api: Api) -> dict[str, dict[str, Any]]:
    reply = api.call("GET", "/api/site/www/deploys", token=DEV)
    assert reply.status == 200, reply.raw
    ids = [row["deployId"] for row in reply.body]
    assert ids == sorted(ids)  # oldest first
    return {row["deployId"]: row for row in reply.body}


def _deploy(api: Api, meta: dict[str, Any], mode: str = "preview") -> str:
    session = _init(api, meta).body
    files = {"index.html": b"<h1>hi</h1>", "a.js": b"1", "b/c.css": b"x"}
    for path, data in files.items():
        assert api.upload(session, path, data).status == 200
    assert api.finalize(session, list(files), mode).status == 200
    deploy_id: str = session["deployId"]
    return deploy_id


# --- init records the metadata ---------------------------------------------------------------
def test_init_records_the_metadata_on_the_row_and_in_the_audit_detail(www: Api) -> None:
    reply = _init(www, {**META, "message": "Fix the footer links\n\nThe long body\x1b[2J"})
    assert reply.status == 200, reply.raw
    deploy_id = reply.body["deployId"]
    assert www.sql(
        "SELECT branch, message, pr, repo, ci_url, state FROM deploys WHERE id = %s", [deploy_id]
    ) == [(META["branch"], META["message"], 512, META["repo"], META["ciUrl"], "pending")]
    detail = www.sql(
        "SELECT detail FROM audit_log WHERE action = 'deploy.init' AND deploy_id = %s", [deploy_id]
    )[0][0]
    assert detail == {"sha": detail["sha"], **META} and deploy_id.endswith(detail["sha"])
    row = _listing(www)[deploy_id]
    assert {k: row[k] for k in META} == META
    assert row["state"] == "pending" and row["aliases"] == []
    assert "bytes" not in row and "files" not in row and "finalizedAt" not in row


def test_init_without_metadata_records_none(www: Api) -> None:
    deploy_id = _init(www, {}).body["deployId"]
    row = _listing(www)[deploy_id]
    assert not set(META) & set(row)
    detail = www.sql("SELECT detail FROM audit_log WHERE deploy_id = %s", [deploy_id])[0][0]
    assert list(detail) == ["sha"]


def test_null_metadata_is_absent_and_a_long_message_is_cut(www: Api) -> None:
    body = {name: None for name in META}
    deploy_id = _init(www, {**body, "message": "é" * 500}).body["deployId"]
    row = _listing(www)[deploy_id]
    assert row["message"] == "é" * 199 + "…"
    assert not {"branch", "pr", "repo", "ciUrl"} & set(row)


HOSTILE: list[tuple[dict[str, Any], str, str | None]] = [
    ({"branch": "a" * 256}, "invalid_metadata", "branch"),
    ({"branch": "main\x1b[31m"}, "invalid_metadata", "branch"),
    ({"branch": "a..b"}, "invalid_metadata", "branch"),
    ({"branch": "evil\u202eexe"}, "invalid_metadata", "branch"),
    ({"branch": "nul\x00"}, "invalid_metadata", "branch"),
    ({"branch": "has space"}, "invalid_metadata", "branch"),
    ({"branch": ""}, "invalid_metadata", "branch"),
    ({"message": "clear\x1b[2J"}, "invalid_metadata", "message"),
    ({"message": "nul\x00"}, "invalid_metadata", "message"),
    ({"message": "\ud800"}, "invalid_metadata", "message"),
    ({"pr": 0}, "invalid_metadata", "pr"),
    ({"pr": -1}, "invalid_metadata", "pr"),
    ({"pr": 2**31}, "invalid_metadata", "pr"),
    ({"pr": 10**30}, "invalid_metadata", "pr"),
    ({"pr": 1e30}, "invalid_metadata", "pr"),
    ({"repo": "no-slash"}, "invalid_metadata", "repo"),
    ({"repo": "o/r/x"}, "invalid_metadata", "repo"),
    ({"repo": "o/.."}, "invalid_metadata", "repo"),
    ({"repo": "ö/r"}, "invalid_metadata", "repo"),
    ({"repo": "o/" + "r" * 101}, "invalid_metadata", "repo"),
    ({"ciUrl": "http://github.com/o/r/actions/runs/1"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "javascript:alert(1)"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "data:text/html,<script>1</script>"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "https://user:pw@github.com/"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "https://github.com/\x1b"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "https://gïthub.com/"}, "invalid_metadata", "ciUrl"),
    ({"ciUrl": "https://h/" + "x" * 2048}, "invalid_metadata", "ciUrl"),
    # wrong JSON types: the body parser's bad_request, as for every body
    ({"pr": "12"}, "bad_request", None),
    ({"pr": 1.5}, "bad_request", None),
    ({"pr": True}, "bad_request", None),
    ({"pr": [1]}, "bad_request", None),
    ({"branch": 5}, "bad_request", None),
    ({"message": {"a": 1}}, "bad_request", None),
    ({"repo": ["o/r"]}, "bad_request", None),
    ({"ciUrl": False}, "bad_request", None),
]


@pytest.mark.parametrize(("body", "code", "field"), HOSTILE)
def test_hostile_metadata_is_refused_and_nothing_is_written(
    www: Api, body: dict[str, Any], code: str, field: str | None
) -> None:
    before = www.sql("SELECT count(*) FROM deploys")[0][0]
    audits = www.sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.init'")[0][0]
    reply = _init(www, {**META, **body})
    assert (reply.status, reply.code) == (400, code), reply.raw
    error = reply.body["error"]
    assert error.get("field") == field
    assert www.sql("SELECT count(*) FROM deploys")[0][0] == before
    assert www.sql("SELECT count(*) FROM audit_log WHERE action = 'deploy.init'")[0][0] == audits


def test_metadata_is_checked_before_authorization(www: Api) -> None:
    """As sha's shape is: an outsider learns nothing about the site from the answer."""
    reply = www.call("POST", "/api/deploy/init", token=DEV,
                     json_body={"site": "nope", "sha": "abc", "ciUrl": "ftp://x"})  # fmt: skip
    assert (reply.status, reply.code) == (400, "invalid_metadata")


def test_a_lone_surrogate_escape_in_raw_json_is_refused_not_a_500(www: Api) -> None:
    raw = b'{"site": "www", "sha": "abc", "branch": "x\\udc00y"}'
    reply = www.call("POST", "/api/deploy/init", token=DEV, body=raw)
    assert (reply.status, reply.code) == (400, "invalid_metadata"), reply.raw


# --- the deploy list ---------------------------------------------------------------------------
def test_the_list_shows_states_times_sizes_aliases_and_metadata(www: Api) -> None:
    old = _deploy(www, {"branch": "main", "message": "First"}, mode="production")
    live = _deploy(www, META)  # preview
    pending = _init(www, {"branch": "wip"}).body["deployId"]
    expired = _init(www, {"branch": "stale"}).body["deployId"]
    www.sql(
        "UPDATE deploys SET created_at = now() - interval '16 minutes' WHERE id = %s", [expired]
    )  # fmt: skip  (the session TTL is 900 s)
    rows = _listing(www)
    assert [rows[i]["state"] for i in (old, live, pending, expired)] == [
        "live", "live", "pending", "expired"]  # fmt: skip
    assert rows[old]["aliases"] == ["production"] and rows[live]["aliases"] == ["preview"]
    assert rows[live]["files"] == 3 and rows[live]["bytes"] > len(b"<h1>hi</h1>1x")  # + marker
    assert rows[live]["actor"] == "local-dev"
    assert list(rows[live])[:2] == ["deployId", "actor"]
    for key in ("createdAt", "finalizedAt"):
        assert rows[live][key].endswith("Z") and len(rows[live][key]) == 20
    assert rows[live]["createdAt"] <= rows[live]["finalizedAt"]
    assert {k: rows[live][k] for k in META} == META
    assert (rows[old]["branch"], rows[old]["message"]) == ("main", "First")
    assert "finalizedAt" not in rows[pending] and rows[pending]["branch"] == "wip"
    # Both index-only: no byte of them is in the bucket.
    assert not www.rt.bucket.has_prefix(f"{SITE_DIR}/deploys/{pending}/")

    # promote the preview deploy: both aliases name it; the old one has none
    moved = www.call("POST", "/api/site/www/promote", token=DEV, json_body={"deployId": live})
    assert moved.status == 200, moved.raw
    rows = _listing(www)
    assert rows[live]["aliases"] == ["preview", "production"] and rows[old]["aliases"] == []


def test_a_deleted_deploy_is_listed_tombstoned_with_its_context_and_restored_whole(
    www: Api,
) -> None:
    first = _deploy(www, META)
    _deploy(www, {})  # takes the preview alias, so the first may be deleted
    before = _listing(www)[first]
    gone = www.call("DELETE", f"/api/site/www/deploys/{first}", token=DEV)
    assert gone.status == 200, gone.raw
    row = _listing(www)[first]
    assert row["state"] == "tombstoned" and row["aliases"] == []
    for key in (*META, "createdAt", "finalizedAt", "files", "bytes"):
        assert row[key] == before[key], key
    back = www.call("POST", f"/api/site/www/deploys/{first}/restore", token=DEV)
    assert back.status == 200, back.raw
    row = _listing(www)[first]
    assert row["state"] == "live"
    for key in (*META, "createdAt", "finalizedAt", "files", "bytes"):
        assert row[key] == before[key], key


def test_a_whole_site_tombstone_is_not_a_deploy(www: Api) -> None:
    _deploy(www, {})
    www.sql("INSERT INTO tombstones (site, id, bytes) VALUES (%s, '', 0)", [SITE_DIR])
    assert "" not in _listing(www)


def test_a_deploy_only_the_bucket_holds_is_listed_without_a_state(www: Api) -> None:
    deploy_id = "20260101-000000-bucket1"
    www.rt.bucket.put(f"{SITE_DIR}/deploys/{deploy_id}/index.html", b"x", "text/html")
    row = _listing(www)[deploy_id]
    assert row == {"deployId": deploy_id, "createdAt": "2026-01-01T00:00:00Z", "aliases": []}


def test_a_repeated_finalize_keeps_the_first_finalize_time(www: Api) -> None:
    session = _init(www, {}).body
    assert www.upload(session, "index.html", b"x").status == 200
    assert www.finalize(session, ["index.html"]).status == 200
    www.sql("UPDATE deploys SET finalized_at = '2026-01-02T03:04:05Z' WHERE id = %s",
            [session["deployId"]])  # fmt: skip
    assert www.finalize(session, ["index.html"]).status == 200
    assert _listing(www)[session["deployId"]]["finalizedAt"] == "2026-01-02T03:04:05Z"
