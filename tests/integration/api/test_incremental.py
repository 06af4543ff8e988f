"""Incremental deploys over HTTP: the digests route copies what the site already holds inside
the bucket and asks for the rest; digests are verified (by the server's own hashing or by S3
computing the digest of a copy), never taken from the client."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests

from artemis.keys import Slug, finalize_digests, finalize_record
from artemis.services import content
from tests.integration.api.conftest import DEV, UPLOAD_MAX_BYTES, Api

V1 = {
    "index.html": b"<h1>v1</h1>",
    "app.js": b"console.log('app')",
    "css/site.css": b"body { color: red }",
}


@pytest.fixture
def www(api: Api) -> Api:
    api.register("www", ["web"])
    return api


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"path": path, "sha256": sha(data), "size": len(data), **extra}


def digests(api: Api, session: dict[str, Any], files: list[dict[str, Any]]) -> Any:
    return api.call(
        "POST", f"/api/deploy/{session['deployId']}/digests", token=session["jwt"],
        json_body={"files": files},
    )  # fmt: skip


def dirname(api: Api, slug: str) -> str:
    return api.rt.settings.key_layout.dirname(Slug(slug))


def key(api: Api, slug: str, deploy_id: str, path: str) -> str:
    return api.rt.settings.key_layout.deploy_prefix(dirname(api, slug), deploy_id) + path  # type: ignore[arg-type]


def index_rows(api: Api, deploy_id: str) -> dict[str, tuple[str, int]]:
    rows = api.sql("SELECT path, sha256, size FROM deploy_files WHERE deploy_id = %s", [deploy_id])
    return {p: (bytes(d).hex(), s) for p, d, s in rows}


def deploy_keys(api: Api, slug: str, deploy_id: str) -> list[str]:
    prefix = key(api, slug, deploy_id, "")
    return sorted(o.key[len(prefix) :] for o in api.rt.bucket.list_keys(prefix))


# --- the happy paths ----------------------------------------------------------------------
def test_uploads_are_indexed_by_the_servers_own_digest(www: Api) -> None:
    first = www.deploy("www", files=V1)
    assert index_rows(www, first) == {p: (sha(d), len(d)) for p, d in V1.items()}
    marker = www.rt.bucket.get(key(www, "www", first, "_artemis_meta.json"))
    assert finalize_digests(marker) == {p: sha(d) for p, d in V1.items()}


def test_an_unchanged_tree_is_copied_inside_the_bucket_and_uploads_nothing(www: Api) -> None:
    first = www.deploy("www", files=V1)
    s = www.init("www")
    reply = digests(www, s, [entry(p, d) for p, d in V1.items()])
    assert reply.status == 200, reply.raw
    assert reply.body == {"upload": [], "copied": list(V1), "remaining": []}
    for path, data in V1.items():
        assert www.rt.bucket.get(key(www, "www", s["deployId"], path)) == data
    # the copy carries its path's content type, not its source's
    head = www.rt.bucket.client.head_object(
        Bucket=www.rt.bucket.name, Key=key(www, "www", s["deployId"], "css/site.css")
    )
    assert head["ContentType"].startswith("text/css")
    assert index_rows(www, s["deployId"]) == index_rows(www, first)
    assert www.finalize(s, list(V1)).status == 200
    # the copies are in the new prefix, not referenced across prefixes
    assert deploy_keys(www, "www", s["deployId"]) == sorted([*V1, "_artemis_meta.json"])


def test_a_changed_file_is_asked_for_and_the_rest_copied(www: Api) -> None:
    www.deploy("www", files=V1)
    v2 = {**V1, "app.js": b"console.log('v2')", "new.txt": b"brand new"}
    s = www.init("www")
    reply = digests(www, s, [entry(p, d) for p, d in v2.items()])
    assert sorted(reply.body["upload"]) == ["app.js", "new.txt"]
    assert sorted(reply.body["copied"]) == ["css/site.css", "index.html"]
    for path in reply.body["upload"]:
        assert www.upload(s, path, v2[path]).status == 200
    assert www.finalize(s, list(v2)).status == 200
    for path, data in v2.items():
        assert www.rt.bucket.get(key(www, "www", s["deployId"], path)) == data


def test_same_content_at_a_new_path_is_copied(www: Api) -> None:
    www.deploy("www", files=V1)
    s = www.init("www")
    reply = digests(www, s, [entry("renamed/app.js", V1["app.js"])])
    assert reply.body["copied"] == ["renamed/app.js"]
    assert www.rt.bucket.get(key(www, "www", s["deployId"], "renamed/app.js")) == V1["app.js"]


def test_a_repeated_call_answers_copied_without_copying_again(www: Api) -> None:
    www.deploy("www", files=V1)
    s = www.init("www")
    files = [entry(p, d) for p, d in V1.items()]
    assert digests(www, s, files).body["copied"] == list(V1)
    www.rt.bucket.client.delete_object(
        Bucket=www.rt.bucket.name, Key=key(www, "www", s["deployId"], "app.js")
    )
    # held by the index already: not copied again (finalize's listing check is what catches
    # an object that went missing since)
    assert digests(www, s, files).body["copied"] == list(V1)
    reply = www.finalize(s, list(V1))
    assert (reply.status, reply.code) == (422, "verify_failed")
    assert reply.body["error"]["missing"] == ["app.js"]


def test_a_manifest_in_chunks_and_the_copy_budget_resumes(
    www: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"f/{i:03d}.txt": f"file {i}".encode() for i in range(30)} | {"index.html": b"i"}
    www.deploy("www", files=files)
    monkeypatch.setattr(content, "COPY_BATCH", 7)
    s = www.init("www")
    manifest = [entry(p, d) for p, d in files.items()]
    copied: list[str] = []
    calls = 0
    for chunk in (manifest[:16], manifest[16:]):
        pending = chunk
        while pending:
            calls += 1
            body = digests(www, s, pending).body
            assert body["upload"] == []
            assert len(body["copied"]) <= 7
            copied += body["copied"]
            pending = [e for e in chunk if e["path"] in set(body["remaining"])]
    assert sorted(copied) == sorted(files)
    assert calls == 3 + 3  # 16 = 7+7+2, 15 = 7+7+1
    assert www.finalize(s, list(files)).status == 200


def test_a_large_manifest_needs_chunks(www: Api) -> None:
    s = www.init("www")
    too_many = [entry(f"f{i}", b"x") for i in range(content.MAX_DIGEST_FILES + 1)]
    reply = digests(www, s, too_many)
    assert (reply.status, reply.code) == (400, "bad_request")
    reply = digests(www, s, too_many[: content.MAX_DIGEST_FILES])
    assert reply.status == 200
    assert len(reply.body["upload"]) == content.MAX_DIGEST_FILES


# --- where content may come from ------------------------------------------------------------
def test_a_digest_held_only_by_another_site_is_uploaded_never_copied(www: Api) -> None:
    www.register("docs", ["web"])
    www.deploy("docs", files=V1)
    s = www.init("www")
    reply = digests(www, s, [entry(p, d) for p, d in V1.items()])
    assert reply.body == {"upload": list(V1), "copied": [], "remaining": []}
    assert deploy_keys(www, "www", s["deployId"]) == []


def test_an_unfinalized_deploy_is_never_a_source(www: Api) -> None:
    pending = www.init("www")
    for path, data in V1.items():
        assert www.upload(pending, path, data).status == 200
    s = www.init("www")
    assert digests(www, s, [entry(p, d) for p, d in V1.items()]).body["upload"] == list(V1)


def test_a_deleted_deploy_is_never_a_source(www: Api) -> None:
    first = www.deploy("www", files=V1)
    www.deploy("www", files={"index.html": b"<h1>other</h1>"})  # moves the preview alias off
    reply = www.call("DELETE", f"/api/site/www/deploys/{first}", token=DEV)
    assert reply.status == 200, reply.raw
    s = www.init("www")
    body = digests(www, s, [entry("app.js", V1["app.js"])]).body
    assert body == {"upload": ["app.js"], "copied": [], "remaining": []}


def test_a_source_that_vanished_falls_back_to_upload(www: Api) -> None:
    """GC moved the source to trash between the lookup and the copy: the object is gone while
    the index still names it. The file is asked for; nothing is left at its key."""
    first = www.deploy("www", files=V1)
    www.rt.bucket.client.delete_object(
        Bucket=www.rt.bucket.name, Key=key(www, "www", first, "app.js")
    )
    s = www.init("www")
    body = digests(www, s, [entry(p, d) for p, d in V1.items()]).body
    assert body["upload"] == ["app.js"]
    assert sorted(body["copied"]) == ["css/site.css", "index.html"]
    assert "app.js" not in deploy_keys(www, "www", s["deployId"])
    assert "app.js" not in index_rows(www, s["deployId"])


# --- lying clients ------------------------------------------------------------------------
def test_uploaded_bytes_are_indexed_under_their_own_digest_not_the_claimed_one(www: Api) -> None:
    www.deploy("www", files=V1)
    s = www.init("www")
    # the client claims app.js holds V1's app.js, then uploads other bytes under that path
    assert digests(www, s, [entry("app.js", V1["app.js"])]).body["copied"] == ["app.js"]
    evil = b"alert('not what the digest said')"
    assert www.upload(s, "app.js", evil).status == 200
    assert www.upload(s, "index.html", b"i").status == 200
    assert index_rows(www, s["deployId"])["app.js"] == (sha(evil), len(evil))
    assert www.finalize(s, ["index.html", "app.js"]).status == 200
    # a later deploy asking for V1's app.js gets V1's bytes, never the liar's
    later = www.init("www")
    assert digests(www, later, [entry("app.js", V1["app.js"])]).body["copied"] == ["app.js"]
    assert www.rt.bucket.get(key(www, "www", later["deployId"], "app.js")) == V1["app.js"]


def test_a_source_overwritten_after_finalize_is_never_copied(www: Api) -> None:
    """A presigned POST cannot be recalled: one issued without a digest and sent after finalize
    replaces a finalized file's bytes while the index still holds the old digest. The copy is
    checked by S3's own digest of it, so the later deploy is asked for the file instead."""
    s = www.init("www")
    for path, data in V1.items():
        assert www.upload(s, path, data).status == 200
    presign = www.call(
        "POST", f"/api/deploy/{s['deployId']}/uploads", token=s["jwt"],
        json_body={"files": [{"path": "app.js", "size": 5}]},
    )  # fmt: skip
    assert presign.status == 200
    # the presign without a digest dropped app.js's row: its bytes are no longer known
    assert "app.js" not in index_rows(www, s["deployId"])
    assert www.upload(s, "app.js", V1["app.js"]).status == 200  # known again
    assert www.finalize(s, list(V1)).status == 200
    [post] = presign.body["uploads"]
    resp = requests.post(
        post["url"], data=post["fields"], files={"file": ("f", b"EVIL!")}, timeout=30
    )
    assert resp.status_code in (200, 201, 204)
    later = www.init("www")
    body = digests(www, later, [entry("app.js", V1["app.js"])]).body
    assert body == {"upload": ["app.js"], "copied": [], "remaining": []}
    assert deploy_keys(www, "www", later["deployId"]) == []


# --- hostile requests ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("files", "status", "code"),
    [
        ([], 400, "bad_request"),
        ([{"path": "a", "sha256": "ab" * 32}], 400, "bad_request"),  # no size
        ([{"path": "a", "size": 1}], 400, "bad_request"),  # no digest
        ([{"path": "a", "size": 1, "sha256": "AB" * 32}], 400, "bad_request"),  # upper case
        ([{"path": "a", "size": 1, "sha256": "ab" * 31}], 400, "bad_request"),  # short
        ([{"path": "a", "size": 1, "sha256": "zz" * 32}], 400, "bad_request"),  # not hex
        ([{"path": "a", "size": -1, "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "a", "size": "1", "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "../x", "size": 1, "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "/etc/passwd", "size": 1, "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "_artemis_meta.json", "size": 1, "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "a" * 2000, "size": 1, "sha256": "ab" * 32}], 400, "bad_request"),
        ([{"path": "a", "size": UPLOAD_MAX_BYTES + 1, "sha256": "ab" * 32}], 413, "too_large"),
    ],
)
def test_hostile_manifests_are_refused_and_copy_nothing(
    www: Api, files: list[dict[str, Any]], status: int, code: str
) -> None:
    www.deploy("www", files={"index.html": b"i", "a": b"x"})
    s = www.init("www")
    reply = digests(www, s, files)
    assert (reply.status, reply.code) == (status, code), reply.raw
    assert deploy_keys(www, "www", s["deployId"]) == []
    assert index_rows(www, s["deployId"]) == {}


def test_a_path_listed_twice_takes_its_last_entry(www: Api) -> None:
    www.deploy("www", files=V1)
    s = www.init("www")
    reply = digests(www, s, [entry("x.js", b"never held"), entry("x.js", V1["app.js"])])
    assert reply.body == {"upload": [], "copied": ["x.js"], "remaining": []}
    assert www.rt.bucket.get(key(www, "www", s["deployId"], "x.js")) == V1["app.js"]


def test_a_body_that_is_not_json_is_400(www: Api) -> None:
    s = www.init("www")
    reply = www.call(
        "POST", f"/api/deploy/{s['deployId']}/digests", token=s["jwt"], body=b"\x00not json"
    )
    assert (reply.status, reply.code) == (400, "bad_request")


def test_digests_need_the_deploys_own_session(www: Api) -> None:
    first = www.deploy("www", files=V1)
    s = www.init("www")
    reply = www.call(
        "POST", f"/api/deploy/{first}/digests", token=s["jwt"],
        json_body={"files": [entry("app.js", V1["app.js"])]},
    )  # fmt: skip
    assert (reply.status, reply.code) == (403, "jwt_wrong_deploy")
    reply = www.call(
        "POST", f"/api/deploy/{s['deployId']}/digests", token=DEV,
        json_body={"files": [entry("app.js", V1["app.js"])]},
    )  # fmt: skip
    assert reply.status in (401, 403) and reply.code == "jwt_invalid"


def test_a_finalized_deploy_takes_no_copies(www: Api) -> None:
    first = www.deploy("www", files=V1)
    s = www.init("www")
    assert www.upload(s, "index.html", b"<h1>v2</h1>").status == 200
    assert www.finalize(s, ["index.html"]).status == 200
    reply = digests(www, s, [entry("app.js", V1["app.js"])])
    assert (reply.status, reply.code) == (409, "deploy_finalized")
    assert deploy_keys(www, "www", s["deployId"]) == ["_artemis_meta.json", "index.html"]
    assert first != s["deployId"]


def test_a_deleted_deploy_takes_no_copies(www: Api) -> None:
    www.deploy("www", files=V1)
    s = www.init("www")
    assert www.upload(s, "index.html", b"x").status == 200
    reply = www.call("DELETE", f"/api/site/www/deploys/{s['deployId']}", token=DEV)
    assert reply.status == 200, reply.raw
    reply = digests(www, s, [entry("app.js", V1["app.js"])])
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    assert deploy_keys(www, "www", s["deployId"]) == []


# --- races and crashes ----------------------------------------------------------------------
def test_a_finalize_racing_a_copy_never_finalizes_around_it(www: Api) -> None:
    """The digests call holds the deploy's shared lock while it copies, as an upload does: a
    finalize waits for the copies (its listing then records them), or refuses the call once
    it committed. Either way no copy lands in a finalized deploy unrecorded."""
    files = {f"f/{i:03d}.txt": f"file {i}".encode() for i in range(200)} | {"index.html": b"i"}
    www.deploy("www", files=files)
    s = www.init("www")
    assert www.upload(s, "index.html", b"<h1>v2</h1>").status == 200
    manifest = [entry(p, d) for p, d in files.items() if p != "index.html"]
    with ThreadPoolExecutor(2) as pool:
        copying = pool.submit(digests, www, s, manifest)
        finalizing = pool.submit(www.finalize, s, ["index.html"])
        copy_reply, final_reply = copying.result(), finalizing.result()
    assert final_reply.status == 200, final_reply.raw
    marker = www.rt.bucket.get(key(www, "www", s["deployId"], "_artemis_meta.json"))
    recorded = set(finalize_record(marker) or {})
    held = set(deploy_keys(www, "www", s["deployId"])) - {"_artemis_meta.json"}
    if copy_reply.status == 200:
        assert sorted(copy_reply.body["copied"]) == sorted(p for p in files if p != "index.html")
    else:
        assert copy_reply.code in ("deploy_finalized", "deploy_busy")
    assert held == recorded  # nothing in the prefix the finalize did not see


def test_a_crash_between_the_copies_and_the_index_write_is_repaired_by_repeating(
    www: Api,
) -> None:
    """The copies land, then the index write fails (a real Postgres error, raised by a
    trigger): the call answers 502 and records nothing. Repeating it copies again over the same
    keys and records them; finalize then verifies every file."""
    www.deploy("www", files=V1)
    s = www.init("www")
    www.sql(
        "CREATE FUNCTION refuse_index() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN RAISE EXCEPTION 'index down'; END $$;"
        " CREATE TRIGGER refuse_index BEFORE INSERT ON deploy_files"
        " FOR EACH ROW EXECUTE FUNCTION refuse_index()"
    )
    try:
        reply = digests(www, s, [entry(p, d) for p, d in V1.items()])
    finally:
        www.sql("DROP TRIGGER refuse_index ON deploy_files; DROP FUNCTION refuse_index()")
    assert (reply.status, reply.code) == (502, "content_index_failed")
    assert index_rows(www, s["deployId"]) == {}
    reply = digests(www, s, [entry(p, d) for p, d in V1.items()])
    assert reply.body == {"upload": [], "copied": list(V1), "remaining": []}
    assert www.finalize(s, list(V1)).status == 200
    for path, data in V1.items():
        assert www.rt.bucket.get(key(www, "www", s["deployId"], path)) == data
