"""Named previews over the wire: finalize with `alias`, the previews routes (list, read,
remove), promote from a named preview, the per-site cap, the name rule, gates, audit rows,
concurrency and a removal interrupted between its two writes. Every call goes over HTTP to the
real handler against real Postgres and moto S3."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from artemis import runtime
from artemis.db.lock import site_lock
from artemis.keys import Dirname
from tests.integration.api.conftest import DEV, OUTSIDER, Api, Reply

SITE = "www"
DIR = "www.example.org"
DIRNAME = Dirname(DIR)
FILES = {"index.html": b"<h1>pr</h1>", "app.js": b"1"}


def _url(name: str) -> str:
    return f"https://{name}--{SITE}.preview.example.org"


def _rid() -> str:
    return f"preview-test-{uuid.uuid4().hex}"


def _expect(reply: Reply, status: int, code: str | None = None) -> None:
    assert reply.status == status, reply.raw
    if code is not None:
        assert reply.code == code, reply.raw


@pytest.fixture
def site(api: Api) -> Api:
    api.register(SITE, ["web"])
    return api


def _staged(api: Api) -> dict[str, Any]:
    """An initialized deploy with its files uploaded, not finalized."""
    session = api.init(SITE, uuid.uuid4().hex[:7])
    for path, data in FILES.items():
        _expect(api.upload(session, path, data), 200)
    return session


def _finalize(api: Api, session: dict[str, Any], body: dict[str, Any], rid: str = "") -> Reply:
    return api.call(
        "POST", f"/api/deploy/{session['deployId']}/finalize", token=session["jwt"],
        json_body={"files": list(FILES), **body}, headers={"X-Request-ID": rid} if rid else None,
    )  # fmt: skip


def _publish(api: Api, name: str) -> str:
    session = _staged(api)
    _expect(_finalize(api, session, {"mode": "preview", "alias": name}), 200)
    deploy_id: str = session["deployId"]
    return deploy_id


def _object(api: Api, name: str) -> str | None:
    return api.rt.bucket.get_alias(f"{DIR}/previews/{name}")


def _row(api: Api, name: str) -> tuple[Any, ...] | None:
    rows = api.sql(
        "SELECT deploy_id, updated_by FROM aliases WHERE site = %s AND name = %s", [DIR, name]
    )
    return rows[0] if rows else None


def _audit(api: Api, rid: str) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT action, site, deploy_id, outcome, actor, detail FROM audit_log"
        " WHERE request_id = %s ORDER BY id",
        [rid],
    )


def _marker_written(api: Api, deploy_id: str) -> bool:
    key = f"{DIR}/deploys/{deploy_id}/_artemis_meta.json"
    return api.rt.bucket.head(key) is not None


# --- finalize with alias ---------------------------------------------------------------------


def test_finalize_to_a_named_preview_publishes_it_beside_the_preview_alias(site: Api) -> None:
    preview = site.deploy(SITE, mode="preview")
    session = _staged(site)
    rid = _rid()
    reply = _finalize(site, session, {"alias": "pr-12"}, rid)  # mode absent means preview
    _expect(reply, 200)
    deploy_id = session["deployId"]
    assert reply.body == {
        "url": _url("pr-12"), "deployId": deploy_id, "mode": "preview", "alias": "pr-12",
    }  # fmt: skip
    assert _object(site, "pr-12") == deploy_id
    assert _row(site, "pr-12") == (deploy_id, "local-dev")
    assert site.alias_object(DIR, "preview") == preview  # the preview alias is untouched
    (action, slug, audited, outcome, actor, detail) = _audit(site, rid)[0]
    assert (action, slug, audited, outcome, actor) == (
        "deploy.finalize", SITE, deploy_id, "success", "local-dev",
    )  # fmt: skip
    assert detail["alias"] == "pr-12" and detail["mode"] == "preview"


def test_finalize_without_alias_answers_as_before(site: Api) -> None:
    session = _staged(site)
    reply = _finalize(site, session, {"mode": "preview"})
    _expect(reply, 200)
    assert set(reply.body) == {"url", "deployId", "mode"}


HOSTILE_NAMES = [
    "", "PR-12", "..", "production", "preview", "x" * 41, "prévia", "a/b", " pr-1", "pr-1\n",
    "-pr", "pr-", "pr_1", "%2e%2e",
]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_finalize_refuses_a_hostile_alias_and_writes_nothing(site: Api, name: str) -> None:
    session = _staged(site)
    _expect(_finalize(site, session, {"alias": name}), 400, "invalid_alias")
    assert not _marker_written(site, session["deployId"])
    assert site.sql("SELECT name FROM aliases WHERE site = %s", [DIR]) == []
    assert site.rt.bucket.list_keys(f"{DIR}/previews/") == []


@pytest.mark.parametrize("alias", [12, ["pr-1"], {"name": "pr-1"}, True])
def test_finalize_refuses_an_alias_of_the_wrong_type(site: Api, alias: Any) -> None:
    session = _staged(site)
    _expect(_finalize(site, session, {"alias": alias}), 400, "bad_request")
    assert not _marker_written(site, session["deployId"])


def test_an_alias_with_mode_production_is_refused(site: Api) -> None:
    session = _staged(site)
    _expect(_finalize(site, session, {"mode": "production", "alias": "pr-1"}), 400, "bad_request")
    assert site.alias_object(DIR, "production") is None
    assert not _marker_written(site, session["deployId"])


def test_two_concurrent_named_previews_both_stay_live_and_a_third_moves_the_first(
    site: Api,
) -> None:
    first, second = _staged(site), _staged(site)
    with ThreadPoolExecutor(2) as pool:
        replies = list(
            pool.map(
                lambda job: _finalize(site, job[0], {"alias": job[1]}),
                [(first, "pr-1"), (second, "pr-2")],
            )
        )
    assert [r.status for r in replies] == [200, 200]
    assert _object(site, "pr-1") == first["deployId"]
    assert _object(site, "pr-2") == second["deployId"]
    third = _publish(site, "pr-1")
    assert _object(site, "pr-1") == third
    assert _object(site, "pr-2") == second["deployId"]
    released = site.sql(
        "SELECT id FROM deploys WHERE site = %s AND alias_released_at IS NOT NULL", [DIR]
    )
    assert released == [(first["deployId"],)]  # the deploy pr-1 left is stamped released


# --- the per-site cap ----------------------------------------------------------------------


@pytest.fixture
def cap_of_two(site: Api, monkeypatch: pytest.MonkeyPatch) -> Api:
    monkeypatch.setenv("PREVIEW_MAX_PER_SITE", "2")
    runtime.reset()
    return site


def test_the_cap_refuses_a_new_name_but_not_a_move(cap_of_two: Api) -> None:
    site = cap_of_two
    _publish(site, "pr-1")
    _publish(site, "pr-2")
    session = _staged(site)
    reply = _finalize(site, session, {"alias": "pr-3"})
    _expect(reply, 409, "preview_limit")
    assert reply.body["error"]["limit"] == 2
    assert "2" in reply.body["error"]["message"]
    assert _object(site, "pr-3") is None and _row(site, "pr-3") is None
    assert not _marker_written(site, session["deployId"])  # refused before the marker
    moved = _publish(site, "pr-1")  # an existing name still moves
    assert _object(site, "pr-1") == moved
    _expect(site.call("DELETE", f"/api/site/{SITE}/previews/pr-2", token=DEV), 200)
    _expect(_finalize(site, session, {"alias": "pr-3"}), 200)  # the same session, room again
    assert _object(site, "pr-3") == session["deployId"]


def test_concurrent_finalizes_cannot_both_take_the_last_place(
    site: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PREVIEW_MAX_PER_SITE", "1")
    runtime.reset()
    sessions = [_staged(site) for _ in range(3)]
    with ThreadPoolExecutor(3) as pool:
        replies = list(
            pool.map(
                lambda pair: _finalize(site, pair[0], {"alias": f"pr-{pair[1]}"}),
                [(s, i) for i, s in enumerate(sessions)],
            )
        )
    assert sorted(r.status for r in replies) == [200, 409, 409]
    assert site.sql("SELECT count(*) FROM aliases WHERE site = %s", [DIR]) == [(1,)]
    assert len(site.rt.bucket.list_keys(f"{DIR}/previews/")) == 1


# --- GET /api/site/{site}/previews and /previews/{name} -------------------------------------


def test_list_and_read_show_each_named_preview(site: Api) -> None:
    assert site.call("GET", f"/api/site/{SITE}/previews", token=DEV).body == []
    one = _publish(site, "pr-1")
    two = _publish(site, "feature-x")
    reply = site.call("GET", f"/api/site/{SITE}/previews", token=DEV)
    _expect(reply, 200)
    assert [(p["name"], p["deployId"], p["url"], p["updatedBy"]) for p in reply.body] == [
        ("feature-x", two, _url("feature-x"), "local-dev"),
        ("pr-1", one, _url("pr-1"), "local-dev"),
    ]
    for entry in reply.body:  # expiresAt is updatedAt + PREVIEW_TTL (14 days by default)
        assert entry["expiresAt"] > entry["updatedAt"]
    read = site.call("GET", f"/api/site/{SITE}/previews/pr-1", token=DEV)
    _expect(read, 200)
    assert read.body == next(p for p in reply.body if p["name"] == "pr-1")
    assert site.alias_object(DIR, "preview") is None  # named previews leave it alone


def test_read_of_a_missing_preview_is_404(site: Api) -> None:
    _expect(site.call("GET", f"/api/site/{SITE}/previews/pr-9", token=DEV), 404, "no_alias")


@pytest.mark.parametrize("name", ["PR-1", "production", "preview", "x" * 41, "a..b", "-x"])
@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_a_hostile_name_in_the_path_is_400_before_authorization(
    site: Api, name: str, method: str
) -> None:
    reply = site.call(method, f"/api/site/{SITE}/previews/{name}", token=OUTSIDER)
    _expect(reply, 400, "invalid_alias")


@pytest.mark.parametrize(("method", "tail"), [("GET", ""), ("GET", "/pr-1"), ("DELETE", "/pr-1")])
def test_preview_routes_are_gated_per_site(site: Api, method: str, tail: str) -> None:
    deploy_id = _publish(site, "pr-1")
    path = f"/api/site/{SITE}/previews{tail}"
    _expect(site.call(method, path), 401, "missing_bearer")
    _expect(site.call(method, path, token=OUTSIDER), 403, "user_unauthorized")
    _expect(
        site.call(method, f"/api/site/nosuchsite/previews{tail}", token=DEV),
        403, "site_unauthorized",
    )  # fmt: skip
    assert _object(site, "pr-1") == deploy_id  # nothing removed by a refused call


# --- DELETE /api/site/{site}/previews/{name} ------------------------------------------------


def test_remove_unpublishes_and_keeps_the_deploy(site: Api) -> None:
    deploy_id = _publish(site, "pr-1")
    other = _publish(site, "pr-2")
    outbox_before = site.sql("SELECT count(*) FROM outbox")[0][0]
    rid = _rid()
    reply = site.call(
        "DELETE", f"/api/site/{SITE}/previews/pr-1", token=DEV, headers={"X-Request-ID": rid}
    )
    _expect(reply, 200)
    assert reply.body == {"name": "pr-1", "deployId": deploy_id, "status": "removed"}
    assert _object(site, "pr-1") is None and _row(site, "pr-1") is None
    assert _object(site, "pr-2") == other  # the other preview stays
    assert site.rt.bucket.has_prefix(f"{DIR}/deploys/{deploy_id}/")  # the deploy stays, for GC
    assert site.sql(
        "SELECT alias_released_at IS NOT NULL FROM deploys WHERE site = %s AND id = %s",
        [DIR, deploy_id],
    ) == [(True,)]
    assert site.sql("SELECT count(*) FROM outbox")[0][0] == outbox_before + 1
    assert _audit(site, rid) == [
        ("site.preview.remove", SITE, deploy_id, "success", "local-dev", {"name": "pr-1"})
    ]
    _expect(site.call("DELETE", f"/api/site/{SITE}/previews/pr-1", token=DEV), 404, "no_alias")


def test_remove_finishes_one_interrupted_between_object_and_row(site: Api) -> None:
    """A removal whose index write failed left the row without its object: repeating the call
    removes the row (the state a crash between the two writes leaves)."""
    deploy_id = _publish(site, "pr-1")
    site.rt.bucket.delete_object(f"{DIR}/previews/pr-1")  # the first write of the removal
    assert _row(site, "pr-1") is not None
    reply = site.call("DELETE", f"/api/site/{SITE}/previews/pr-1", token=DEV)
    _expect(reply, 200)
    assert reply.body["deployId"] == deploy_id
    assert _row(site, "pr-1") is None


def test_remove_waits_for_the_site_lock(site: Api, short_lock_wait: float) -> None:
    deploy_id = _publish(site, "pr-1")
    with site_lock(site.database_url, DIRNAME):
        reply = site.call("DELETE", f"/api/site/{SITE}/previews/pr-1", token=DEV)
    _expect(reply, 409, "site_locked")
    assert _object(site, "pr-1") == deploy_id and _row(site, "pr-1") is not None


def test_remove_racing_a_finalize_to_the_same_name_leaves_a_consistent_pair(site: Api) -> None:
    """Both hold the site lock: whichever runs second wins, and object and row agree."""
    _publish(site, "pr-1")
    session = _staged(site)
    with ThreadPoolExecutor(2) as pool:
        removal = pool.submit(site.call, "DELETE", f"/api/site/{SITE}/previews/pr-1", token=DEV)
        finalize = pool.submit(_finalize, site, session, {"alias": "pr-1"})
        assert finalize.result().status == 200
        assert removal.result().status in (200, 404)
    obj, row = _object(site, "pr-1"), _row(site, "pr-1")
    assert (obj is None and row is None) or (obj == session["deployId"] == row[0])  # type: ignore[index]


# --- promote from a named preview ----------------------------------------------------------


def test_promote_from_a_preview_with_its_deploy_id_is_a_guard(site: Api) -> None:
    reviewed = _publish(site, "pr-7")
    _expect(
        site.call("POST", f"/api/site/{SITE}/promote", token=DEV,
                  json_body={"preview": "pr-7", "deployId": reviewed}),
        200,
    )  # fmt: skip
    assert site.alias_object(DIR, "production") == reviewed
    newer = _publish(site, "pr-7")  # a push moved the preview after the review
    reply = site.call("POST", f"/api/site/{SITE}/promote", token=DEV,
                      json_body={"preview": "pr-7", "deployId": reviewed})  # fmt: skip
    _expect(reply, 409, "preview_moved")
    assert (reply.body["preview"], reply.body["current"]) == ("pr-7", newer)
    assert site.alias_object(DIR, "production") == reviewed


def test_promote_takes_the_deploy_a_named_preview_names(site: Api) -> None:
    deploy_id = _publish(site, "pr-7")
    rid = _rid()
    reply = site.call(
        "POST", f"/api/site/{SITE}/promote", token=DEV, json_body={"preview": "pr-7"},
        headers={"X-Request-ID": rid},
    )  # fmt: skip
    _expect(reply, 200)
    assert reply.body == {"url": "https://www.example.org", "deployId": deploy_id}
    assert site.alias_object(DIR, "production") == deploy_id
    assert _object(site, "pr-7") == deploy_id  # the preview keeps serving
    assert _audit(site, rid) == [
        ("site.promote", SITE, deploy_id, "success", "local-dev", {"preview": "pr-7"})
    ]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"preview": "pr-404"}, 404, "no_alias"),
        ({"preview": "PR-7"}, 400, "invalid_alias"),
        ({"preview": "production"}, 400, "invalid_alias"),
        ({"preview": "pr-7", "deployId": "20260101-000000-abc1234"}, 409, "preview_moved"),
        ({"preview": 7}, 400, "bad_request"),
    ],
)
def test_promote_from_a_preview_refuses_bad_names(
    site: Api, body: dict[str, Any], status: int, code: str
) -> None:
    _publish(site, "pr-7")
    _expect(site.call("POST", f"/api/site/{SITE}/promote", token=DEV, json_body=body), status, code)
    assert site.alias_object(DIR, "production") is None
