"""init, upload, direct uploads, finalize and the deploy list over HTTP (spec/api.md §7 with
G-2, G-6, G-7, G-10, G-13, G-30, G-33, G-38 and DECISIONS API 5-6)."""

import json
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

import pytest
import requests

from artemis import session as jwt
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, UPLOAD_MAX_BYTES, Api

SITE_DIR = "www.example.org"


@pytest.fixture
def www(api: Api) -> Api:
    api.register("www", ["web"])
    return api


# --- init ---------------------------------------------------------------------------------
def test_init_mints_an_id_a_session_and_a_pending_row(www: Api) -> None:
    reply = www.call(
        "POST",
        "/api/deploy/init",
        token=DEV,
        json_body={"site": "www", "sha": "abc1234def", "files": ["x"]},
    )
    assert reply.status == 200, reply.raw
    body = reply.body
    assert re.fullmatch(r"\d{8}-\d{6}-abc1234", body["deployId"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["expiresAt"])
    claims = jwt.verify(body["jwt"], www.rt.settings.jwt_signing_key.encode(), now=time.time())
    assert (claims.sub, claims.site, claims.deploy_id, claims.team) == (
        "local-dev",
        "www",
        body["deployId"],
        "web",
    )
    assert claims.exp - claims.iat == 900
    rows = www.sql("SELECT site, state, has_marker FROM deploys WHERE id = %s", [body["deployId"]])
    assert rows == [(SITE_DIR, "pending", False)]
    [(actor, detail)] = www.sql(
        "SELECT actor, detail FROM audit_log WHERE action = 'deploy.init' AND deploy_id = %s",
        [body["deployId"]],
    )
    assert actor == "local-dev" and detail == {"sha": "abc1234def"}


@pytest.mark.parametrize(
    "body",
    [
        {"sha": "abc"},
        {"site": "www"},
        {"site": "", "sha": "abc"},
        {"site": "www", "sha": "bad sha"},
        {"site": "www", "sha": "x" * 65},
    ],
)
def test_init_validates_site_and_sha_before_authorization(www: Api, body: dict[str, str]) -> None:
    reply = www.call("POST", "/api/deploy/init", token=OUTSIDER, json_body=body)
    assert (reply.status, reply.code) == (400, "bad_request")


def test_init_gates(www: Api) -> None:
    assert (
        www.call(
            "POST", "/api/deploy/init", token=DEV, json_body={"site": "nope", "sha": "abc"}
        ).code
        == "site_unauthorized"
    )
    assert (
        www.call(
            "POST", "/api/deploy/init", token=OUTSIDER, json_body={"site": "www", "sha": "abc"}
        ).code
        == "user_unauthorized"
    )
    www.sql("UPDATE sites SET teams = '{}' WHERE slug = 'www'")
    www.rt.snapshot.invalidate()
    assert (
        www.call(
            "POST", "/api/deploy/init", token=DEV, json_body={"site": "www", "sha": "abc"}
        ).code
        == "site_unauthorized"
    )


def test_g13_same_second_same_sha_gets_distinct_ids(www: Api) -> None:
    with ThreadPoolExecutor(6) as pool:
        ids = list(pool.map(lambda _: www.init("www", "samesha")["deployId"], range(6)))
    assert len(set(ids)) == 6
    assert all(i.endswith("-samesha") for i in ids)


# --- upload -----------------------------------------------------------------------------
def test_upload_writes_under_the_dirname_with_its_content_type(www: Api) -> None:
    s = www.init("www")
    reply = www.upload(s, "café/menu.html", b"<p>", "text/html; charset=utf-8")
    assert reply.status == 200
    key = f"{SITE_DIR}/deploys/{s['deployId']}/café/menu.html"
    assert reply.body == {"received": "café/menu.html", "key": key}
    head = www.rt.bucket.client.head_object(Bucket=www.rt.bucket.name, Key=key)
    assert head["ContentType"] == "text/html; charset=utf-8"


def test_upload_guesses_the_content_type_when_none_is_sent(www: Api) -> None:
    s = www.init("www")
    reply = www.call(
        "PUT", f"/api/deploy/{s['deployId']}/upload?path=app.js", token=s["jwt"], body=b"1"
    )
    assert reply.status == 200
    head = www.rt.bucket.client.head_object(Bucket=www.rt.bucket.name, Key=reply.body["key"])
    assert head["ContentType"] == "text/javascript; charset=utf-8"


@pytest.mark.parametrize(
    "query",
    ["", "?path=", "?path=a;b.html", "?path=.", "?path=%2Findex.html", "?path=.%2Findex.html",
     "?path=a%2F%2Fb", "?path=assets%2F", "?path=..%2Fescape.html", "?path=a%2F..%2Fb",
     "?path=foo%00bar", "?path=foo%0Abar", "?path=foo%5Cbar"],
)  # fmt: skip
def test_upload_refuses_bad_paths(www: Api, query: str) -> None:
    s = www.init("www")
    reply = www.call("PUT", f"/api/deploy/{s['deployId']}/upload{query}", token=s["jwt"], body=b"x")
    assert (reply.status, reply.code) == (400, "bad_request")


def test_g6_marker_path_refused(www: Api) -> None:
    s = www.init("www")
    reply = www.upload(s, "_artemis_meta.json", b"{}", "application/json")
    assert (reply.status, reply.code) == (400, "bad_request")
    assert www.rt.bucket.head(f"{SITE_DIR}/deploys/{s['deployId']}/_artemis_meta.json") is None


def test_upload_size_limit_is_inclusive(www: Api) -> None:
    s = www.init("www")
    assert (
        www.upload(s, "exact.bin", b"x" * UPLOAD_MAX_BYTES, "application/octet-stream").status
        == 200
    )
    reply = www.upload(s, "over.bin", b"x" * (UPLOAD_MAX_BYTES + 1), "application/octet-stream")
    assert (reply.status, reply.code) == (413, "too_large")
    assert www.rt.bucket.head(f"{SITE_DIR}/deploys/{s['deployId']}/over.bin") is None


def test_session_token_checks(www: Api) -> None:
    s = www.init("www")
    path = f"/api/deploy/{s['deployId']}/upload?path=index.html"
    assert www.call("PUT", path, body=b"x").code == "missing_bearer"
    assert www.call("PUT", path, token=DEV, body=b"x").code == "jwt_invalid"  # a GitHub token
    other = www.init("www", sha="other99")
    reply = www.call("PUT", path, token=other["jwt"], body=b"x")
    assert (reply.status, reply.code) == (403, "jwt_wrong_deploy")
    key = www.rt.settings.jwt_signing_key.encode()
    old, _ = jwt.issue(
        login="local-dev",
        site="www",
        deploy_id=s["deployId"],
        team="web",
        key=key,
        ttl_seconds=60,
        now=time.time() - 3600,
    )
    reply = www.call("PUT", path, token=old, body=b"x")
    assert (reply.status, reply.code) == (401, "jwt_expired")
    forged, _ = jwt.issue(
        login="local-dev",
        site="www",
        deploy_id=s["deployId"],
        team="web",
        key=b"k" * 40,
        ttl_seconds=60,
        now=time.time(),
    )
    assert www.call("PUT", path, token=forged, body=b"x").code == "jwt_invalid"


def test_g33_token_without_required_claims_is_invalid(www: Api) -> None:
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    now = int(time.time())
    claims = {
        "sub": "local-dev",
        "site": "www",
        "iss": "artemis",
        "iat": now,
        "exp": now + 60,
        "team": "web",
    }  # no deployId
    signing_input = b64(b'{"alg":"HS256","typ":"JWT"}') + "." + b64(json.dumps(claims).encode())
    sig = hmac.new(
        www.rt.settings.jwt_signing_key.encode(), signing_input.encode(), hashlib.sha256
    ).digest()
    token = signing_input + "." + b64(sig)
    reply = www.call(
        "PUT", "/api/deploy/20260101-000000-abc/upload?path=index.html", token=token, body=b"x"
    )
    assert (reply.status, reply.code) == (403, "jwt_invalid")


def test_session_for_a_deregistered_site_is_site_unauthorized(www: Api) -> None:
    s = www.init("www")
    www.sql("DELETE FROM sites WHERE slug = 'www'")
    www.rt.snapshot.invalidate()
    assert www.upload(s, "index.html", b"x").code == "site_unauthorized"


def test_g2_session_dies_when_its_team_leaves_the_site(www: Api) -> None:
    s = www.init("www")
    www.call("PATCH", "/api/site/www", token=STAFF, json_body={"teams": ["staff"]})
    reply = www.upload(s, "index.html", b"x")
    assert (reply.status, reply.code) == (403, "user_unauthorized")


def test_g7_upload_after_finalize_is_refused(www: Api) -> None:
    s = www.init("www")
    www.upload(s, "index.html", b"<h1>v1</h1>")
    assert www.finalize(s, ["index.html"]).status == 200
    reply = www.upload(s, "index.html", b"<h1>changed under production</h1>")
    assert (reply.status, reply.code) == (409, "deploy_finalized")
    assert www.rt.bucket.get(f"{SITE_DIR}/deploys/{s['deployId']}/index.html") == b"<h1>v1</h1>"
    assert www.finalize(s, ["index.html"], "production").status == 200  # finalize may repeat


# --- direct uploads -----------------------------------------------------------------------
def test_presigned_uploads_then_finalize(www: Api) -> None:
    s = www.init("www")
    reply = www.call(
        "POST",
        f"/api/deploy/{s['deployId']}/uploads",
        token=s["jwt"],
        json_body={
            "files": [
                {"path": "index.html", "size": 11, "contentType": "text/html"},
                {"path": "big.bin", "size": 5000},
            ]
        },
    )
    assert reply.status == 200, reply.raw
    body = reply.body
    assert body["maxBytes"] == UPLOAD_MAX_BYTES
    assert [u["key"] for u in body["uploads"]] == [
        f"{SITE_DIR}/deploys/{s['deployId']}/index.html",
        f"{SITE_DIR}/deploys/{s['deployId']}/big.bin",
    ]
    for upload, data in zip(body["uploads"], [b"<h1>hi</h1>", b"z" * 5000], strict=True):
        resp = requests.post(
            upload["url"], data=upload["fields"], files={"file": ("f", data)}, timeout=30
        )
        assert resp.status_code in (200, 201, 204), resp.text
    assert www.finalize(s, ["index.html", "big.bin"]).status == 200
    head = www.rt.bucket.client.head_object(
        Bucket=www.rt.bucket.name, Key=body["uploads"][0]["key"]
    )
    assert head["ContentType"] == "text/html"


@pytest.mark.parametrize(
    ("files", "code"),
    [
        ([{"path": "../x", "size": 1}], "bad_request"),
        ([{"path": "_artemis_meta.json", "size": 1}], "bad_request"),
        ([{"path": "a", "size": UPLOAD_MAX_BYTES + 1}], "too_large"),
        ([], "bad_request"),
        ([{"path": "a", "size": -1}], "bad_request"),
        ([{"path": "a"}], "bad_request"),
        ([{"path": "a", "size": 1, "sha256": "AB" * 32}], "bad_request"),
        ([{"path": "a", "size": 1, "sha256": "ab" * 33}], "bad_request"),
        ([{"path": "a", "size": 1, "sha256": 12}], "bad_request"),
    ],
)
def test_presign_applies_the_upload_rules(www: Api, files: list[dict[str, Any]], code: str) -> None:
    s = www.init("www")
    reply = www.call(
        "POST", f"/api/deploy/{s['deployId']}/uploads", token=s["jwt"], json_body={"files": files}
    )
    assert reply.code == code


def test_presign_with_a_digest_binds_it_and_indexes_it(www: Api) -> None:
    import base64
    import hashlib

    s = www.init("www")
    www.upload(s, "big.bin", b"old bytes")
    digest = hashlib.sha256(b"z" * 5000).digest()
    reply = www.call(
        "POST", f"/api/deploy/{s['deployId']}/uploads", token=s["jwt"],
        json_body={"files": [{"path": "big.bin", "size": 5000, "sha256": digest.hex()},
                             {"path": "other.bin", "size": 3}]},
    )  # fmt: skip
    assert reply.status == 200, reply.raw
    bound, unbound = reply.body["uploads"]
    assert bound["fields"]["x-amz-checksum-sha256"] == base64.b64encode(digest).decode()
    assert bound["fields"]["x-amz-checksum-algorithm"] == "SHA256"
    assert "x-amz-checksum-sha256" not in unbound["fields"]
    rows = www.sql(
        "SELECT path, sha256, size FROM deploy_files WHERE deploy_id = %s", [s["deployId"]]
    )
    assert [(p, bytes(d), n) for p, d, n in rows] == [("big.bin", digest, 5000)]


def test_presign_is_bound_to_the_sessions_deploy(www: Api) -> None:
    s = www.init("www")
    reply = www.call(
        "POST",
        "/api/deploy/20200101-000000-other/uploads",
        token=s["jwt"],
        json_body={"files": [{"path": "a", "size": 1}]},
    )
    assert reply.code == "jwt_wrong_deploy"


# --- finalize -----------------------------------------------------------------------------
def uploaded(www: Api, files: dict[str, bytes] | None = None) -> dict[str, Any]:
    s = www.init("www")
    for path, data in (files or {"index.html": b"<h1>x</h1>", "a.css": b"b{}"}).items():
        assert www.upload(s, path, data).status == 200
    return s


@pytest.mark.parametrize("mode", ["staging", "prod", "preview!"])
def test_finalize_bad_mode(www: Api, mode: str) -> None:
    s = uploaded(www)
    assert www.finalize(s, ["index.html"], mode).code == "bad_request"


def test_finalize_mode_is_trimmed_and_case_insensitive(www: Api) -> None:
    s = uploaded(www)
    reply = www.finalize(s, ["index.html"], "  PRODUCTION ")
    assert reply.body["mode"] == "production"
    assert www.alias_object(SITE_DIR, "production") == s["deployId"]


def test_finalize_needs_a_manifest_with_a_root_index(www: Api) -> None:
    s = uploaded(www)
    assert (
        www.call(
            "POST",
            f"/api/deploy/{s['deployId']}/finalize",
            token=s["jwt"],
            json_body={"mode": "preview"},
        ).code
        == "manifest_required"
    )
    reply = www.finalize(s, ["a.css", "assets/index.html"])
    assert (reply.status, reply.code) == (422, "missing_index")
    assert "hint" not in reply.body["error"]
    reply = www.finalize(s, ["a.css", ".next/static/x.js"])
    assert reply.code == "missing_index" and reply.body["error"]["hint"]
    assert www.alias_object(SITE_DIR, "preview") is None


def test_finalize_reports_missing_files_in_manifest_order(www: Api) -> None:
    s = uploaded(www)
    reply = www.finalize(s, ["zz.js", "index.html", "a.css", "b/missing.png"])
    assert (reply.status, reply.code) == (422, "verify_failed")
    assert reply.body["error"]["missing"] == ["zz.js", "b/missing.png"]
    assert www.rt.bucket.head(f"{SITE_DIR}/deploys/{s['deployId']}/_artemis_meta.json") is None


def test_finalize_commits_marker_alias_index_and_event(www: Api) -> None:
    s = uploaded(www)
    reply = www.finalize(s, ["index.html", "a.css"], "preview")
    assert reply.status == 200
    marker = json.loads(
        www.rt.bucket.get(f"{SITE_DIR}/deploys/{s['deployId']}/_artemis_meta.json") or b""
    )
    assert (
        marker["site"] == "www"
        and marker["deployId"] == s["deployId"]
        and marker["mode"] == "preview"
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", marker["finalizedAt"])
    raw_alias = www.rt.bucket.client.get_object(
        Bucket=www.rt.bucket.name, Key=f"{SITE_DIR}/preview"
    )["Body"].read()
    assert raw_alias == s["deployId"].encode()
    [(state, has_marker, size)] = www.sql(
        "SELECT state, has_marker, bytes FROM deploys WHERE id = %s", [s["deployId"]]
    )
    assert state == "active" and has_marker and size > len(b"<h1>x</h1>b{}")
    assert www.sql(
        "SELECT deploy_id FROM aliases WHERE site = %s AND name = 'preview'", [SITE_DIR]
    ) == [(s["deployId"],)]
    assert www.sql("SELECT topic, payload FROM outbox") == [("site.changed", {"site": SITE_DIR})]
    [(actor, detail)] = www.sql(
        "SELECT actor, detail FROM audit_log WHERE action = 'deploy.finalize' AND deploy_id = %s",
        [s["deployId"]],
    )
    assert (
        actor == "local-dev"
        and detail["mode"] == "preview"
        and detail["files"] == 2
        and detail["bytes"] == size
    )


def test_g27_one_finalize_row_and_no_per_file_upload_rows(www: Api) -> None:
    s = uploaded(www, {"index.html": b"1", "a.js": b"2", "b.js": b"3"})
    assert www.finalize(s, ["index.html", "a.js", "b.js"]).status == 200
    rows = www.sql(
        "SELECT action, detail->>'files' FROM audit_log WHERE deploy_id = %s ORDER BY id",
        [s["deployId"]],
    )
    assert rows == [("deploy.init", None), ("deploy.finalize", "3")]


def test_finalize_stamps_the_release_of_the_previous_target(www: Api) -> None:
    first = www.deploy("www", "first11")
    second = www.deploy("www", "second2")
    [(released,)] = www.sql("SELECT alias_released_at FROM deploys WHERE id = %s", [first])
    assert released is not None
    assert www.sql("SELECT alias_released_at FROM deploys WHERE id = %s", [second]) == [(None,)]


def test_g30_site_gone_leaves_no_marker(www: Api) -> None:
    s = uploaded(www)
    www.sql(
        "DELETE FROM sites WHERE slug = 'www'"
    )  # the snapshot still lists it (another environment's change)
    reply = www.finalize(s, ["index.html"])
    assert (reply.status, reply.code) == (410, "site_gone")
    assert www.rt.bucket.head(f"{SITE_DIR}/deploys/{s['deployId']}/_artemis_meta.json") is None
    assert www.alias_object(SITE_DIR, "preview") is None


def test_g10_index_failure_after_the_alias_flip_is_index_write_failed(www: Api) -> None:
    s = uploaded(www)
    www.sql(
        "CREATE OR REPLACE FUNCTION refuse_alias() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'down'; END $$"
    )
    www.sql(
        "CREATE TRIGGER refuse_alias BEFORE INSERT OR UPDATE ON aliases FOR EACH ROW EXECUTE FUNCTION refuse_alias()"
    )
    try:
        reply = www.finalize(s, ["index.html"])
    finally:
        www.sql("DROP TRIGGER refuse_alias ON aliases")
    assert (reply.status, reply.code) == (502, "index_write_failed")
    assert www.alias_object(SITE_DIR, "preview") == s["deployId"]  # live: the bucket is the truth
    assert www.sql("SELECT count(*) FROM outbox") == [(0,)]  # no event for a rolled-back change
    assert www.finalize(s, ["index.html"]).status == 200  # safe to repeat


def test_finalizing_5000_files_lists_and_never_heads(www: Api) -> None:
    s = www.init("www")
    prefix = f"{SITE_DIR}/deploys/{s['deployId']}/"
    names = ["index.html", *(f"assets/f{i:04d}.js" for i in range(4999))]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: www.rt.bucket.put(prefix + n, b"x", "text/plain"), names))
    calls: Counter[str] = Counter()
    www.rt.bucket.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.update([model.name])
    )
    reply = www.finalize(s, names)
    assert reply.status == 200, reply.raw
    assert calls["ListObjectsV2"] <= 6
    assert calls["HeadObject"] == 0
    assert calls["PutObject"] == 2  # the marker and the alias


# --- deploy list --------------------------------------------------------------------------
def test_deploy_list_is_oldest_first_with_the_latest_finalizer(www: Api) -> None:
    assert www.call("GET", "/api/site/www/deploys", token=DEV).body == []
    a = www.deploy("www", "listfin")  # shas of their own: the audit log outlives tests
    pending = www.init("www", "listpen")
    www.upload(pending, "index.html", b"x")
    reply = www.call("GET", "/api/site/www/deploys", token=DEV)
    assert reply.status == 200
    # deployId and actor first, in that order: existing clients read them so
    assert [list(row)[:2] for row in reply.body] == [["deployId", "actor"], ["deployId", "state"]]
    assert [(row["deployId"], row.get("actor"), row["state"]) for row in reply.body] == [
        (a, "local-dev", "live"),
        (pending["deployId"], None, "pending"),
    ]
    assert www.call("GET", "/api/site/www/deploys", token=OUTSIDER).code == "user_unauthorized"
    assert www.call("GET", "/api/site/nope/deploys", token=DEV).code == "site_unauthorized"


def test_g38_deploy_list_cost_follows_deploys_not_objects(www: Api) -> None:
    s = www.init("www", sha="g38list")  # the audit log outlives tests: an id of its own
    prefix = f"{SITE_DIR}/deploys/{s['deployId']}/"
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: www.rt.bucket.put(f"{prefix}f{i:04d}", b"x", "text/plain"), range(1500)
            )
        )
    calls: Counter[str] = Counter()
    www.rt.bucket.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.update([model.name])
    )
    reply = www.call("GET", "/api/site/www/deploys", token=DEV)
    assert [row["deployId"] for row in reply.body] == [s["deployId"]]
    assert calls["ListObjectsV2"] == 1  # 1,500 objects, one deploy: one delimited page


def test_upload_path_query_decoding(www: Api) -> None:
    s = www.init("www")
    reply = www.call(
        "PUT", f"/api/deploy/{s['deployId']}/upload?path=a+b.txt", token=s["jwt"], body=b"x"
    )
    assert reply.body["received"] == "a b.txt"
    reply = www.call(
        "PUT",
        f"/api/deploy/{s['deployId']}/upload?path={quote('x;y.html')}",
        token=s["jwt"],
        body=b"x",
    )
    assert reply.body["received"] == "x;y.html"
