"""Deletion and recovery over HTTP (spec/api.md §9, G-11, G-12, G-14..G-17, DECISIONS API 2
and Q11): deploy delete, restore, trash listing, bare site delete and site purge.

Black box: every request goes through the local gateway to the real handler; the bucket,
Postgres and the audit log are then inspected directly. Faults are injected only at the S3
boundary (botocore event hooks on the runtime's client). The key template makes slug `www`
live under `www.example.org/`, so a handler that skips the slug → dirname conversion fails.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote

import pytest
from botocore.exceptions import ClientError

from artemis.db import aliases as aliases_db
from artemis.db.lock import site_lock
from artemis.deadlines import Deadline
from artemis.jobs.gc_site import run_gc_site
from artemis.keys import Dirname, Slug
from tests.integration.api.conftest import DEV, OUTSIDER, STAFF, Api, Reply

SITE = "www"
DIR = "www.example.org"
TRASH = "_trash/"
FILES = {"index.html": b"<h1>hello</h1>", "app.js": b"console.log(1)"}
MARKER = "_artemis_meta.json"
NOT_AN_ID = "20260101-120000-abc1234"  # well-formed, never deployed


# --- helpers ----------------------------------------------------------------------------------


def live_prefix(deploy_id: str, dirname: str = DIR) -> str:
    return f"{dirname}/deploys/{deploy_id}/"


def trash_prefix(deploy_id: str, dirname: str = DIR) -> str:
    return f"{TRASH}{dirname}/{deploy_id}/"


def objects(api: Api, prefix: str) -> dict[str, int]:
    """key → size of every object under `prefix`."""
    return {o.key: o.size for o in api.rt.bucket.list_keys(prefix)}


def audit_rows(api: Api, reply: Reply) -> list[tuple[Any, ...]]:
    """(action, site, deploy_id, outcome, detail, actor) of the rows this request wrote."""
    return api.sql(
        "SELECT action, site, deploy_id, outcome, detail, actor FROM audit_log"
        " WHERE request_id = %s ORDER BY id",
        [reply.headers["x-request-id"]],
    )


def outbox_count(api: Api) -> int:
    return int(api.sql("SELECT count(*) FROM outbox")[0][0])


def tombstone(api: Api, deploy_id: str, dirname: str = DIR) -> tuple[Any, ...] | None:
    rows = api.sql(
        "SELECT trashed_at, bytes, move_state FROM tombstones WHERE site = %s AND id = %s",
        [dirname, deploy_id],
    )
    return rows[0] if rows else None


def deploy_row(api: Api, deploy_id: str) -> tuple[Any, ...] | None:
    rows = api.sql(
        "SELECT state, has_marker, bytes, mtime FROM deploys WHERE site = %s AND id = %s",
        [DIR, deploy_id],
    )
    return rows[0] if rows else None


def alias_rows(api: Api, dirname: str = DIR) -> list[tuple[Any, ...]]:
    return api.sql("SELECT name, deploy_id FROM aliases WHERE site = %s ORDER BY name", [dirname])


def registered(api: Api, slug: str = SITE) -> bool:
    return bool(api.sql("SELECT 1 FROM sites WHERE slug = %s", [slug]))


def delete_deploy(api: Api, deploy_id: str, token: str = DEV, site: str = SITE) -> Reply:
    return api.call("DELETE", f"/api/site/{site}/deploys/{deploy_id}", token=token)


def restore(api: Api, deploy_id: str, token: str = DEV, site: str = SITE) -> Reply:
    return api.call("POST", f"/api/site/{site}/deploys/{deploy_id}/restore", token=token)


def delete_site(api: Api, slug: str = SITE, query: str = "", token: str = STAFF) -> Reply:
    return api.call("DELETE", f"/api/site/{slug}{query}", token=token)


def promote(api: Api, deploy_id: str, site: str = SITE) -> None:
    reply = api.call(
        "POST", f"/api/site/{site}/promote", token=DEV, json_body={"deployId": deploy_id}
    )
    assert reply.status == 200, reply.raw


def published_site(api: Api, slug: str = SITE) -> tuple[str, str]:
    """A registered site whose production alias names `old` and preview names `new`."""
    api.register(slug, ["web"])
    old = api.deploy(slug, "aaaaaaa", "preview", FILES)
    promote(api, old, slug)
    new = api.deploy(slug, "bbbbbbb", "preview", FILES)
    return old, new


def deleted_deploy(api: Api) -> tuple[str, dict[str, int]]:
    """A site with an unaliased deploy that has just been deleted; its objects before."""
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)  # the preview alias moves off the victim
    before = objects(api, live_prefix(victim))
    reply = delete_deploy(api, victim)
    assert reply.status == 200, reply.raw
    return victim, before


def copy_source_key(params: dict[str, Any]) -> str:
    """The source key of a CopyObject call (botocore may already have rendered it as
    `bucket/key`, URL-quoted)."""
    source = params["CopySource"]
    if isinstance(source, dict):
        return str(source["Key"])
    return unquote(str(source).split("?", 1)[0]).split("/", 1)[1]


@contextmanager
def s3_hook(api: Api, operation: str, callback: Callable[[dict[str, Any]], None]) -> Iterator[None]:
    """Run `callback(params)` before every S3 `operation` the service's client issues (the
    S3 boundary: botocore's own event system on the runtime's client)."""
    event = f"before-parameter-build.s3.{operation}"
    unique_id = f"test-deletion-{operation}-{id(callback)}"

    def hook(params: dict[str, Any], **_: Any) -> None:
        callback(params)

    events = api.rt.bucket.client.meta.events
    events.register(event, hook, unique_id=unique_id)
    try:
        yield
    finally:
        events.unregister(event, unique_id=unique_id)


@contextmanager
def s3_failing(
    api: Api, operation: str, when: Callable[[dict[str, Any]], bool]
) -> Iterator[list[dict[str, Any]]]:
    """Make S3 `operation` fail with InternalError whenever `when(params)`; yields the
    parameters of the calls it refused."""
    refused: list[dict[str, Any]] = []

    def refuse(params: dict[str, Any]) -> None:
        if when(params):
            refused.append(dict(params))
            error = {"Error": {"Code": "InternalError", "Message": "injected"}}
            raise ClientError(error, operation)  # type: ignore[arg-type]

    with s3_hook(api, operation, refuse):
        yield refused


@contextmanager
def failing_copies(api: Api, when: Callable[[str, str], bool]) -> Iterator[list[dict[str, Any]]]:
    """CopyObject fails whenever `when(source_key, destination_key)`."""
    with s3_failing(api, "CopyObject", lambda p: when(copy_source_key(p), p["Key"])) as refused:
        yield refused


@contextmanager
def recording_copies(api: Api) -> Iterator[list[tuple[str, str]]]:
    """Observe every CopyObject (source, destination) in the order issued."""
    seen: list[tuple[str, str]] = []
    guard = threading.Lock()

    def record(params: dict[str, Any]) -> None:
        with guard:
            seen.append((copy_source_key(params), params["Key"]))

    with s3_hook(api, "CopyObject", record):
        yield seen


def is_listing(prefix: str, *, probe: bool) -> Callable[[dict[str, Any]], bool]:
    """ListObjectsV2 of exactly `prefix`: the one-key emptiness probe, or a full listing."""

    def match(params: dict[str, Any]) -> bool:
        return bool(params.get("Prefix") == prefix and (params.get("MaxKeys") == 1) == probe)

    return match


# --- DELETE /api/site/{site}/deploys/{deployId} -------------------------------------------------


def test_delete_deploy_needs_a_registered_site_and_a_member(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)
    before = objects(api, live_prefix(victim))

    reply = delete_deploy(api, victim, site="nosuch")
    assert (reply.status, reply.code) == (403, "site_unauthorized")
    reply = delete_deploy(api, victim, token=OUTSIDER)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    reply = delete_deploy(api, victim, token=STAFF)  # registry team, not one of the site's teams
    assert (reply.status, reply.code) == (403, "user_unauthorized")

    assert objects(api, live_prefix(victim)) == before
    assert tombstone(api, victim) is None
    assert audit_rows(api, reply) == []


def test_gate_failures_at_github_answer_429_and_503_and_change_nothing(api: Api) -> None:
    # Set the scene without the API, so no membership answer is cached yet.
    api.sql("INSERT INTO sites (slug, teams) VALUES (%s, %s)", [SITE, ["web"]])
    victim = NOT_AN_ID
    api.rt.bucket.put(live_prefix(victim) + "index.html", b"<p>x</p>", "text/html")
    web = "/orgs/freeCodeCamp/teams/web/memberships/"
    staff = "/orgs/freeCodeCamp/teams/staff/memberships/"
    calls: list[tuple[str, Callable[[], Reply]]] = [
        (web, lambda: delete_deploy(api, victim)),
        (web, lambda: restore(api, victim)),
        (web, lambda: api.call("GET", f"/api/site/{SITE}/trash", token=DEV)),
        (staff, lambda: delete_site(api)),
        (staff, lambda: delete_site(api, query="?purge=true")),
    ]
    for membership, call in calls:
        for status, expected in (
            (429, (429, "rate_limited")),
            (500, (503, "upstream_unavailable")),
        ):
            api.github.fail(membership, status)
            reply = call()
            api.github.clear_faults()
            assert (reply.status, reply.code) == expected, (membership, status, reply.raw)
            assert audit_rows(api, reply) == []
    assert list(objects(api, "")) == [live_prefix(victim) + "index.html"]
    assert api.sql("SELECT count(*) FROM tombstones") == [(0,)]
    assert registered(api)


@pytest.mark.parametrize(
    "bad_id",
    [
        "latest",
        "2026-01-01",
        "20260101-120000-",
        "20260101-12000-abc1234",
        "20260101-120000-abc_123",
    ],
)
def test_delete_deploy_rejects_a_malformed_id(api: Api, bad_id: str) -> None:
    api.register(SITE, ["web"])
    reply = delete_deploy(api, bad_id)
    assert (reply.status, reply.code) == (400, "bad_request")
    assert api.sql("SELECT count(*) FROM tombstones") == [(0,)]


def test_delete_of_an_aliased_deploy_is_409_production_first(api: Api) -> None:
    api.register(SITE, ["web"])
    both = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    promote(api, both)  # production and preview both name it
    assert api.alias_object(DIR, "preview") == both
    before = objects(api, live_prefix(both))

    reply = delete_deploy(api, both)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "deploy_aliased"
    assert isinstance(reply.body["error"]["message"], str)
    assert {k: v for k, v in reply.body.items() if k != "error"} == {
        "site": SITE, "deployId": both, "alias": "production",
    }  # fmt: skip

    preview_only = api.deploy(SITE, "bbbbbbb", "preview", FILES)
    reply = delete_deploy(api, preview_only)
    assert reply.status == 409
    assert reply.body["error"]["code"] == "deploy_aliased"
    assert (reply.body["site"], reply.body["deployId"], reply.body["alias"]) == (
        SITE, preview_only, "preview",
    )  # fmt: skip

    assert objects(api, live_prefix(both)) == before
    assert objects(api, f"{TRASH}{DIR}/") == {}
    assert api.sql("SELECT count(*) FROM tombstones") == [(0,)]
    assert deploy_row(api, both) is not None


def test_delete_treats_a_whitespace_padded_alias_as_naming_the_deploy(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)
    api.rt.bucket.put(f"{DIR}/production", f"  {victim}\n".encode(), "text/plain")
    reply = delete_deploy(api, victim)
    assert (reply.status, reply.code) == (409, "deploy_aliased")
    assert reply.body["alias"] == "production"


def test_g11_unknown_deploy_is_404_and_leaves_no_tombstone(api: Api) -> None:
    api.register(SITE, ["web"])
    api.deploy(SITE, "aaaaaaa", "preview", FILES)
    outbox = outbox_count(api)

    reply = delete_deploy(api, NOT_AN_ID)
    assert (reply.status, reply.code) == (404, "deploy_not_found")
    assert tombstone(api, NOT_AN_ID) is None
    assert api.sql("SELECT count(*) FROM tombstones") == [(0,)]
    assert audit_rows(api, reply) == []
    assert outbox_count(api) == outbox
    # ...and so a later restore of it has nothing to resurrect.
    reply = restore(api, NOT_AN_ID)
    assert (reply.status, reply.code) == (410, "already_purged")
    assert deploy_row(api, NOT_AN_ID) is None


def test_delete_deploy_moves_its_bytes_to_trash_behind_a_tombstone(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    kept = api.deploy(SITE, "bbbbbbb", "preview", FILES)
    before = objects(api, live_prefix(victim))
    assert set(before) == {live_prefix(victim) + n for n in [*FILES, MARKER]}
    kept_before = objects(api, live_prefix(kept))
    outbox = outbox_count(api)

    reply = delete_deploy(api, victim)
    assert reply.status == 200, reply.raw
    assert reply.body == {"site": SITE, "deployId": victim, "status": "tombstoned", "moved": 3}

    assert objects(api, live_prefix(victim)) == {}
    assert objects(api, trash_prefix(victim)) == {
        trash_prefix(victim) + key[len(live_prefix(victim)) :]: size for key, size in before.items()
    }
    assert objects(api, live_prefix(kept)) == kept_before  # a neighbour is untouched
    row = tombstone(api, victim)
    assert row is not None
    assert row[1:] == (sum(before.values()), "moved")
    assert deploy_row(api, victim) is None
    assert deploy_row(api, kept) is not None
    assert audit_rows(api, reply) == [
        ("site.deploy.delete", SITE, victim, "success", {"moved": 3}, "local-dev")
    ]
    assert outbox_count(api) == outbox  # no event


def test_repeating_a_deploy_delete_resumes_and_keeps_the_recovery_clock(api: Api) -> None:
    victim, _ = deleted_deploy(api)
    api.sql(
        "UPDATE tombstones SET trashed_at = '2026-04-20 14:15:22.5+00' WHERE site = %s AND id = %s",
        [DIR, victim],
    )
    clock = tombstone(api, victim)
    assert clock is not None

    reply = delete_deploy(api, victim)
    assert reply.status == 200, reply.raw
    assert reply.body == {"site": SITE, "deployId": victim, "status": "tombstoned", "moved": 0}
    assert tombstone(api, victim) == clock
    assert audit_rows(api, reply) == [
        ("site.deploy.delete", SITE, victim, "success", {"moved": 0}, "local-dev")
    ]

    # A move left half-done (an object still live, the tombstone still pending) is resumed.
    straggler = live_prefix(victim) + "late.css"
    api.rt.bucket.put(straggler, b"body{}", "text/css")
    api.sql(
        "UPDATE tombstones SET move_state = 'pending' WHERE site = %s AND id = %s", [DIR, victim]
    )
    reply = delete_deploy(api, victim)
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == 1
    assert objects(api, live_prefix(victim)) == {}
    assert trash_prefix(victim) + "late.css" in objects(api, trash_prefix(victim))
    row = tombstone(api, victim)
    assert row is not None
    assert (row[0], row[2]) == (clock[0], "moved")


def test_a_failed_deploy_move_answers_502_and_leaves_the_tombstone_pending(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)
    with failing_copies(api, lambda src, _dst: src.endswith("/app.js")):
        reply = delete_deploy(api, victim)
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert "injected" not in reply.raw.decode()  # the dependency's text never leaks
    row = tombstone(api, victim)
    assert row is not None and row[2] == "pending"  # visible to the jobs that re-drive it
    assert list(objects(api, live_prefix(victim))) == [live_prefix(victim) + "app.js"]
    assert audit_rows(api, reply) == []  # audited only on success

    reply = delete_deploy(api, victim)  # the repeat finishes the move
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == 1
    row = tombstone(api, victim)
    assert row is not None and row[2] == "moved"


def test_delete_deploy_fails_502_when_an_alias_cannot_be_read(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)
    before = objects(api, live_prefix(victim))
    with s3_failing(api, "GetObject", lambda p: p["Key"] == f"{DIR}/production") as refused:
        reply = delete_deploy(api, victim)
    assert refused
    assert (reply.status, reply.code) == (502, "r2_get_failed")  # never read as "no alias"
    assert objects(api, live_prefix(victim)) == before
    assert tombstone(api, victim) is None
    assert deploy_row(api, victim) is not None


def test_deploy_delete_and_restore_take_the_site_lock(api: Api, short_lock_wait: float) -> None:
    victim, _ = deleted_deploy(api)
    other = api.sql("SELECT id FROM deploys WHERE site = %s", [DIR])[0][0]
    with site_lock(api.database_url, Dirname(DIR)):
        reply = restore(api, victim)
        assert (reply.status, reply.code) == (409, "site_locked")
        reply = delete_deploy(api, other)
        assert (reply.status, reply.code) == (409, "site_locked")
    assert objects(api, live_prefix(victim)) == {}
    assert tombstone(api, victim) is not None
    assert tombstone(api, other) is None
    assert objects(api, live_prefix(other)) != {}
    assert restore(api, victim).status == 200  # free again


# --- POST /api/site/{site}/deploys/{deployId}/restore -------------------------------------------


def test_restore_moves_bytes_back_and_leaves_aliases_alone(api: Api) -> None:
    victim, before = deleted_deploy(api)
    aliases_before = (api.alias_object(DIR, "production"), api.alias_object(DIR, "preview"))
    rows_before = alias_rows(api)
    outbox = outbox_count(api)

    reply = restore(api, victim)
    assert reply.status == 200, reply.raw
    size = sum(before.values())
    assert reply.body == {
        "site": SITE, "deployId": victim, "status": "restored", "moved": 3, "bytes": size,
    }  # fmt: skip
    assert objects(api, live_prefix(victim)) == before
    assert objects(api, trash_prefix(victim)) == {}
    assert tombstone(api, victim) is None
    row = deploy_row(api, victim)
    assert row is not None
    state, has_marker, stored_bytes, mtime = row
    assert (state, has_marker, stored_bytes) == ("active", True, size)
    assert abs(datetime.now(UTC) - mtime) < timedelta(minutes=1)  # restore restarts the clock
    assert (api.alias_object(DIR, "production"), api.alias_object(DIR, "preview")) == aliases_before
    assert alias_rows(api) == rows_before
    assert victim not in aliases_before
    assert audit_rows(api, reply) == [
        ("site.deploy.restore", SITE, victim, "success", {"moved": 3, "bytes": size}, "local-dev")
    ]
    assert outbox_count(api) == outbox


def test_repeating_a_restore_is_idempotent(api: Api) -> None:
    victim, before = deleted_deploy(api)
    assert restore(api, victim).status == 200

    reply = restore(api, victim)
    assert reply.status == 200, reply.raw
    assert reply.body == {
        "site": SITE, "deployId": victim, "status": "restored", "moved": 0,
        "bytes": sum(before.values()),
    }  # fmt: skip
    assert objects(api, live_prefix(victim)) == before
    assert audit_rows(api, reply) == [
        ("site.deploy.restore", SITE, victim, "idempotent", {"moved": 0}, "local-dev")
    ]


def test_g12_restore_of_a_never_finalized_deploy_has_no_marker(api: Api) -> None:
    api.register(SITE, ["web"])
    session = api.init(SITE, "ccccccc")
    unfinished = session["deployId"]
    assert api.upload(session, "index.html", b"<h1>draft</h1>").status == 200
    reply = delete_deploy(api, unfinished)
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == 1

    reply = restore(api, unfinished)
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == 1
    assert list(objects(api, live_prefix(unfinished))) == [live_prefix(unfinished) + "index.html"]
    row = deploy_row(api, unfinished)
    assert row is not None
    assert row[:2] == ("active", False)  # not fabricated: the marker object is absent
    # ...so promote still refuses it as unfinished (G-8), instead of serving a draft.
    reply = api.call(
        "POST", f"/api/site/{SITE}/promote", token=DEV, json_body={"deployId": unfinished}
    )
    assert reply.status == 422, reply.raw


def test_restore_with_no_tombstone_and_no_bytes_is_410_already_purged(api: Api) -> None:
    api.register(SITE, ["web"])
    reply = restore(api, NOT_AN_ID)
    assert (reply.status, reply.code) == (410, "already_purged")
    assert deploy_row(api, NOT_AN_ID) is None
    assert audit_rows(api, reply) == []


def test_g12_tombstone_without_bytes_anywhere_is_410_already_purged(api: Api) -> None:
    victim, _ = deleted_deploy(api)
    api.rt.bucket.delete_prefix(trash_prefix(victim))  # the hard delete ran, the row remains
    assert tombstone(api, victim) is not None

    reply = restore(api, victim)
    assert (reply.status, reply.code) == (410, "already_purged")
    assert deploy_row(api, victim) is None  # no row fabricated for bytes that do not exist
    assert tombstone(api, victim) is not None


def test_restore_for_a_deregistered_site_is_410_site_gone(api: Api) -> None:
    victim, before = deleted_deploy(api)
    api.sql("DELETE FROM sites WHERE slug = %s", [SITE])
    # The gate's registry snapshot (≤ 60 s old) still lists the site; the re-read under the
    # lock is what notices.
    reply = restore(api, victim)
    assert (reply.status, reply.code) == (410, "site_gone")
    assert objects(api, live_prefix(victim)) == {}
    assert len(objects(api, trash_prefix(victim))) == len(before)
    assert tombstone(api, victim) is not None
    assert deploy_row(api, victim) is None


def test_restore_needs_a_member_and_a_well_formed_id(api: Api) -> None:
    victim, _ = deleted_deploy(api)
    reply = restore(api, victim, token=OUTSIDER)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    reply = restore(api, victim, site="nosuch")
    assert (reply.status, reply.code) == (403, "site_unauthorized")
    reply = restore(api, "not-an-id")
    assert (reply.status, reply.code) == (400, "bad_request")
    assert tombstone(api, victim) is not None


def test_a_failed_restore_move_is_502_and_a_repeat_finishes_it(api: Api) -> None:
    victim, before = deleted_deploy(api)
    with failing_copies(api, lambda src, _dst: src.endswith("/app.js")) as refused:
        reply = restore(api, victim)
    assert refused
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert tombstone(api, victim) is not None  # still recoverable
    assert deploy_row(api, victim) is None
    assert audit_rows(api, reply) == []

    reply = restore(api, victim)
    assert reply.status == 200, reply.raw
    assert (reply.body["moved"], reply.body["bytes"]) == (1, sum(before.values()))
    assert objects(api, live_prefix(victim)) == before
    assert tombstone(api, victim) is None


def test_restore_records_zero_bytes_when_measuring_fails(api: Api) -> None:
    victim, before = deleted_deploy(api)
    with s3_failing(api, "ListObjectsV2", is_listing(live_prefix(victim), probe=False)) as refused:
        reply = restore(api, victim)
    assert refused
    assert reply.status == 200, reply.raw  # measuring is not a gate
    assert (reply.body["moved"], reply.body["bytes"]) == (3, 0)
    assert objects(api, live_prefix(victim)) == before
    row = deploy_row(api, victim)
    assert row is not None
    assert row[:3] == ("active", True, 0)  # the marker is still found
    assert audit_rows(api, reply)[0][3:5] == ("success", {"moved": 3, "bytes": 0})

    with s3_failing(api, "ListObjectsV2", is_listing(live_prefix(victim), probe=False)):
        reply = restore(api, victim)  # the idempotent answer measures the same way
    assert reply.status == 200, reply.raw
    assert (reply.body["moved"], reply.body["bytes"]) == (0, 0)


def test_restore_fails_502_when_the_live_bytes_probe_fails(api: Api) -> None:
    api.register(SITE, ["web"])
    deploy_id = api.deploy(SITE, "aaaaaaa", "preview", FILES)  # no tombstone: the probe decides
    with s3_failing(
        api, "ListObjectsV2", is_listing(live_prefix(deploy_id), probe=True)
    ) as refused:
        reply = restore(api, deploy_id)
    assert refused
    assert (reply.status, reply.code) == (502, "r2_has_prefix_failed")
    assert audit_rows(api, reply) == []
    reply = restore(api, deploy_id)  # a live, never-deleted deploy: idempotent success
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == 0
    assert audit_rows(api, reply)[0][3] == "idempotent"


# --- GET /api/site/{site}/trash -----------------------------------------------------------------


def test_trash_lists_newest_first_with_second_precision_times(api: Api) -> None:
    api.register(SITE, ["web"])
    first = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    second = api.deploy(SITE, "bbbbbbb", "preview", {"index.html": b"<p>2</p>"})
    api.deploy(SITE, "ccccccc", "preview", FILES)
    assert delete_deploy(api, first).status == 200
    assert delete_deploy(api, second).status == 200
    api.sql(
        "UPDATE tombstones SET trashed_at = '2026-04-20 14:15:22.987654+00' WHERE id = %s", [first]
    )
    api.sql(
        "UPDATE tombstones SET trashed_at = '2026-04-21 09:00:01.000001+00' WHERE id = %s", [second]
    )
    # Another site's tombstone (by dirname) is not listed.
    api.sql(
        "INSERT INTO tombstones (site, id, bytes) VALUES ('docs.example.org', %s, 5)", [NOT_AN_ID]
    )
    sizes = {
        row[0]: row[1] for row in api.sql("SELECT id, bytes FROM tombstones WHERE site = %s", [DIR])
    }

    reply = api.call("GET", f"/api/site/{SITE}/trash", token=DEV)
    assert reply.status == 200, reply.raw
    assert reply.body == [
        {"deployId": second, "trashedAt": "2026-04-21T09:00:01Z", "expiresAt": "2026-04-28T09:00:01Z",
         "bytes": sizes[second]},
        {"deployId": first, "trashedAt": "2026-04-20T14:15:22Z", "expiresAt": "2026-04-27T14:15:22Z",
         "bytes": sizes[first]},
    ]  # fmt: skip
    assert sizes[first] > sizes[second] > 0


def test_trash_of_a_fresh_delete_expires_recovery_days_later(api: Api) -> None:
    victim, _ = deleted_deploy(api)
    reply = api.call("GET", f"/api/site/{SITE}/trash", token=DEV)
    assert reply.status == 200, reply.raw
    [entry] = reply.body
    assert entry["deployId"] == victim
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    trashed = datetime.strptime(entry["trashedAt"], fmt).replace(tzinfo=UTC)
    expires = datetime.strptime(entry["expiresAt"], fmt).replace(tzinfo=UTC)
    assert expires - trashed == timedelta(days=7)
    assert abs(datetime.now(UTC) - trashed) < timedelta(minutes=1)


def test_trash_needs_a_member(api: Api) -> None:
    deleted_deploy(api)
    reply = api.call("GET", f"/api/site/{SITE}/trash", token=OUTSIDER)
    assert (reply.status, reply.code) == (403, "user_unauthorized")
    reply = api.call("GET", "/api/site/nosuch/trash", token=DEV)
    assert (reply.status, reply.code) == (403, "site_unauthorized")


def test_trash_lists_the_site_wide_tombstone_after_purge_and_reregistration(api: Api) -> None:
    published_site(api)
    assert delete_site(api, query="?purge=true").status == 200
    api.register(SITE, ["web"])
    reply = api.call("GET", f"/api/site/{SITE}/trash", token=DEV)
    assert reply.status == 200, reply.raw
    assert [(e["deployId"], e["bytes"]) for e in reply.body] == [("", 0)]


# --- DELETE /api/site/{slug} (bare) -------------------------------------------------------------


def test_site_delete_needs_the_registry_team(api: Api) -> None:
    published_site(api)
    for query in ("", "?purge=true"):
        for token in (DEV, OUTSIDER):
            reply = delete_site(api, query=query, token=token)
            assert (reply.status, reply.code) == (403, "user_unauthorized"), (query, token)
            assert audit_rows(api, reply) == []
    assert registered(api)
    assert api.alias_object(DIR, "production") is not None
    assert len(alias_rows(api)) == 2


def test_site_delete_checks_the_slug_and_that_it_exists(api: Api) -> None:
    for slug in ("Www", "-www", "a_b", "x" * 64):
        for query in ("", "?purge=true"):
            reply = delete_site(api, slug, query)
            assert (reply.status, reply.code) == (400, "invalid_slug"), (slug, query)
            assert audit_rows(api, reply) == []
    reply = delete_site(api, "nosuch")
    assert (reply.status, reply.code) == (404, "not_found")
    assert audit_rows(api, reply) == []


def test_g15_bare_delete_unpublishes_and_keeps_bytes(api: Api) -> None:
    old, new = published_site(api)
    deploy_bytes = objects(api, f"{DIR}/deploys/")
    assert len(deploy_bytes) == 6

    reply = delete_site(api)
    assert reply.status == 204, reply.raw
    assert reply.raw == b""
    # Unpublished: both alias objects are in trash, none is live, the mirror rows are gone.
    assert api.alias_object(DIR, "production") is None
    assert api.alias_object(DIR, "preview") is None
    assert api.rt.bucket.get_alias(f"{TRASH}{DIR}/production") == old
    assert api.rt.bucket.get_alias(f"{TRASH}{DIR}/preview") == new
    assert alias_rows(api) == []
    assert not registered(api)
    # Deploy bytes stay where they were; nothing else moved to trash.
    assert objects(api, f"{DIR}/deploys/") == deploy_bytes
    assert set(objects(api, TRASH)) == {f"{TRASH}{DIR}/production", f"{TRASH}{DIR}/preview"}
    assert api.sql("SELECT count(*) FROM tombstones") == [(0,)]
    assert audit_rows(api, reply) == [("site.delete", SITE, "", "success", {}, "local-staff")]
    # The gate sees the deregistration at once.
    reply = api.call("GET", f"/api/site/{SITE}/alias/production", token=DEV)
    assert (reply.status, reply.code) == (403, "site_unauthorized")
    # Re-register and promote: the site is back.
    api.register(SITE, ["web"])
    promote(api, old)
    assert api.alias_object(DIR, "production") == old

    reply = delete_site(api, "nosuch")  # an absent slug stays a 404
    assert (reply.status, reply.code) == (404, "not_found")


def test_bare_delete_of_a_site_that_never_published_is_204(api: Api) -> None:
    api.register(SITE, ["web"])
    reply = delete_site(api)
    assert reply.status == 204, reply.raw
    assert not registered(api)
    assert objects(api, "") == {}


def test_g15_bare_delete_aborts_when_unpublishing_fails(api: Api) -> None:
    old, _ = published_site(api)
    with failing_copies(api, lambda src, _dst: src == f"{DIR}/production"):
        reply = delete_site(api)
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert registered(api)
    assert len(alias_rows(api)) == 2
    assert api.alias_object(DIR, "production") == old  # still serving
    assert audit_rows(api, reply) == []


def test_g16_bare_delete_takes_the_site_lock(api: Api, short_lock_wait: float) -> None:
    published_site(api)
    started = time.monotonic()
    with site_lock(api.database_url, Dirname(DIR)):
        reply = delete_site(api)
    waited = time.monotonic() - started
    assert (reply.status, reply.code) == (409, "site_locked")
    assert short_lock_wait * 0.9 <= waited < 20  # it waited for the lock, then gave up
    assert registered(api)
    assert len(alias_rows(api)) == 2
    assert api.alias_object(DIR, "production") is not None
    assert audit_rows(api, reply) == []

    # Another site's lock does not block it; once ours is free the delete goes through.
    with site_lock(api.database_url, Dirname("docs.example.org")):
        assert delete_site(api).status == 204
    assert not registered(api)


def test_g16_bare_delete_waits_for_the_lock_holder(api: Api) -> None:
    """Without shortening anything: the delete blocks while the lock is held, then proceeds."""
    published_site(api)
    replies: list[Reply] = []
    with site_lock(api.database_url, Dirname(DIR)):
        worker = threading.Thread(target=lambda: replies.append(delete_site(api)))
        worker.start()
        worker.join(timeout=1.5)
        assert worker.is_alive()  # still waiting for the lock
        assert registered(api)
        assert api.alias_object(DIR, "production") is not None
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert [r.status for r in replies] == [204]
    assert not registered(api)


# --- DELETE /api/site/{slug}?purge=true ---------------------------------------------------------


def test_purge_moves_the_whole_site_to_trash(api: Api) -> None:
    old, new = published_site(api)
    api.rt.bucket.put(f"{DIR}/robots.txt", b"x", "text/plain")  # anything under the dirname
    api.rt.bucket.put("www2.example.org/deploys/x/index.html", b"y", "text/html")  # a neighbour
    tree = objects(api, f"{DIR}/")
    assert len(tree) == 9  # 2 deploys x 3, 2 aliases, robots.txt
    outbox = outbox_count(api)

    with recording_copies(api) as copies:
        reply = delete_site(api, query="?purge=true")
    assert reply.status == 200, reply.raw
    assert reply.body == {"slug": SITE, "status": "purged", "moved": len(tree)}
    # The aliases move first (the site goes dark before the bulk move), to <trash> + key.
    assert copies[:2] == [
        (f"{DIR}/production", f"{TRASH}{DIR}/production"),
        (f"{DIR}/preview", f"{TRASH}{DIR}/preview"),
    ]
    assert objects(api, f"{DIR}/") == {}
    assert objects(api, f"{TRASH}{DIR}/") == {TRASH + key: size for key, size in tree.items()}
    assert api.rt.bucket.get_alias(f"{TRASH}{DIR}/production") == old
    assert api.rt.bucket.get_alias(f"{TRASH}{DIR}/preview") == new
    assert objects(api, "www2.example.org/") == {"www2.example.org/deploys/x/index.html": 1}
    # Postgres: a site-wide tombstone, no alias or deploy rows, no registry row.
    row = tombstone(api, "")
    assert row is not None and row[1:] == (0, "moved")
    assert alias_rows(api) == []
    assert api.sql("SELECT count(*) FROM deploys WHERE site = %s", [DIR]) == [(0,)]
    assert not registered(api)
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "success", {"moved": len(tree)}, "local-staff")
    ]
    assert outbox_count(api) == outbox


def test_repeat_purge_of_an_orphaned_site_keeps_the_recovery_clock(api: Api) -> None:
    published_site(api)
    assert delete_site(api, query="?purge=true").status == 200
    api.sql("UPDATE tombstones SET trashed_at = '2026-04-20 14:15:22+00' WHERE site = %s", [DIR])
    clock = tombstone(api, "")
    assert clock is not None
    straggler = f"{DIR}/deploys/20260420-141522-zzzzzzz/index.html"
    api.rt.bucket.put(straggler, b"late", "text/html")  # e.g. left by a stalled earlier move

    reply = delete_site(api, query="?purge=true")  # the registry row is already gone
    assert reply.status == 200, reply.raw
    assert reply.body == {"slug": SITE, "status": "purged", "moved": 1}
    assert objects(api, f"{DIR}/") == {}
    assert TRASH + straggler in objects(api, f"{TRASH}{DIR}/")
    row = tombstone(api, "")
    assert row is not None
    assert row[0] == clock[0]  # DECISIONS Q11: never reset
    assert row[2] == "moved"
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "success", {"moved": 1}, "local-staff")
    ]

    # ...but a bare delete of the absent slug is still a 404.
    reply = delete_site(api)
    assert (reply.status, reply.code) == (404, "not_found")


def test_g17_purge_parameter_values(api: Api) -> None:
    for slug in ("www", "docs", "blog"):
        published_site(api, slug)

    reply = delete_site(api, "www", "?purge=TRUE")
    assert reply.status == 200, reply.raw
    assert reply.body["status"] == "purged"
    assert objects(api, "www.example.org/") == {}
    assert tombstone(api, "", "www.example.org") is not None

    reply = delete_site(api, "docs", "?purge=false")
    assert reply.status == 204, reply.raw
    assert not registered(api, "docs")
    assert len(objects(api, "docs.example.org/deploys/")) == 6  # a bare delete: bytes stay
    assert api.alias_object("docs.example.org", "production") is None
    assert tombstone(api, "", "docs.example.org") is None
    assert [r[0] for r in audit_rows(api, reply)] == ["site.delete"]

    for value in ("yes", "1", ""):
        reply = delete_site(api, "blog", f"?purge={value}")
        assert (reply.status, reply.code) == (400, "bad_request"), value
        assert audit_rows(api, reply) == []
    assert registered(api, "blog")
    assert api.alias_object("blog.example.org", "production") is not None
    assert len(objects(api, "blog.example.org/")) == 8


def test_purge_failing_mid_move_writes_one_failure_row_and_resumes(api: Api) -> None:
    published_site(api)
    tree = objects(api, f"{DIR}/")
    assert len(tree) == 8
    with failing_copies(api, lambda src, _dst: src.endswith("/app.js")) as refused:
        reply = delete_site(api, query="?purge=true")
    assert refused, "the fault was never hit"
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert "injected" not in reply.raw.decode()
    stuck = objects(api, f"{DIR}/")
    assert sorted(stuck) == sorted(k for k in tree if k.endswith("/app.js"))
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "failure", {"stage": "move", "moved": len(tree) - len(stuck)},
         "local-staff"),
    ]  # fmt: skip
    assert registered(api)  # not deregistered while bytes remain live
    row = tombstone(api, "")
    assert row is not None and row[2] == "pending"
    assert api.alias_object(DIR, "production") is None  # but already dark

    reply = delete_site(api, query="?purge=true")
    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == len(stuck)
    assert objects(api, f"{DIR}/") == {}
    assert not registered(api)
    row = tombstone(api, "")
    assert row is not None and row[2] == "moved"
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "success", {"moved": len(stuck)}, "local-staff")
    ]


def test_purge_failing_to_unpublish_writes_one_failure_row(api: Api) -> None:
    published_site(api)
    with failing_copies(api, lambda src, _dst: src == f"{DIR}/preview"):
        reply = delete_site(api, query="?purge=true")
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    # The production alias had already moved when the preview move failed.
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "failure", {"stage": "unpublish", "moved": 1}, "local-staff")
    ]
    assert api.alias_object(DIR, "production") is None
    assert api.alias_object(DIR, "preview") is not None
    assert len(objects(api, f"{DIR}/deploys/")) == 6  # the bulk move never started
    assert registered(api)


def test_purge_takes_the_site_lock(api: Api, short_lock_wait: float) -> None:
    published_site(api)
    tree = objects(api, f"{DIR}/")
    with site_lock(api.database_url, Dirname(DIR)):
        reply = delete_site(api, query="?purge=true")
    assert (reply.status, reply.code) == (409, "site_locked")
    assert audit_rows(api, reply) == []  # no audit, nothing changed
    assert objects(api, f"{DIR}/") == tree
    assert tombstone(api, "") is None
    assert registered(api)


def test_purge_failing_to_verify_writes_one_failure_row(api: Api) -> None:
    published_site(api)
    tree = objects(api, f"{DIR}/")
    with s3_failing(api, "ListObjectsV2", is_listing(f"{DIR}/", probe=True)) as refused:
        reply = delete_site(api, query="?purge=true")
    assert refused
    assert (reply.status, reply.code) == (502, "r2_verify_failed")
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "failure", {"stage": "verify", "moved": len(tree)}, "local-staff")
    ]
    assert objects(api, f"{DIR}/") == {}
    assert registered(api)  # deregistered only after a successful verify
    row = tombstone(api, "")
    assert row is not None and row[2] == "pending"


def test_purge_that_finds_objects_left_is_502_incomplete_and_repeatable(api: Api) -> None:
    published_site(api)
    tree = objects(api, f"{DIR}/")
    late = f"{DIR}/deploys/20260420-141522-zzzzzzz/index.html"
    arrivals: list[str] = []

    def racing_upload(params: dict[str, Any]) -> None:
        # An upload (which takes no lock) lands after the bulk move, before the verify.
        if is_listing(f"{DIR}/", probe=True)(params) and not arrivals:
            arrivals.append(late)
            api.rt.bucket.put(late, b"late", "text/html")

    with s3_hook(api, "ListObjectsV2", racing_upload):
        reply = delete_site(api, query="?purge=true")
    assert arrivals
    assert (reply.status, reply.code) == (502, "r2_move_incomplete")
    assert audit_rows(api, reply) == [
        ("site.purge", SITE, "", "failure", {"stage": "incomplete", "moved": len(tree)},
         "local-staff"),
    ]  # fmt: skip
    assert registered(api)

    reply = delete_site(api, query="?purge=true")
    assert reply.status == 200, reply.raw
    assert reply.body == {"slug": SITE, "status": "purged", "moved": 1}
    assert objects(api, f"{DIR}/") == {}
    assert not registered(api)


# --- the content index (issue 13): rows leave with their deploy, come back on restore ----------

OWN = {"own.txt": b"only the victim holds this", "own.css": b"body { color: teal }"}


def index_rows(api: Api, deploy_id: str, dirname: str = DIR) -> dict[str, tuple[str, int]]:
    """path → (sha256 hex, size) of the deploy's content index rows."""
    rows = api.sql(
        "SELECT path, sha256, size FROM deploy_files WHERE site = %s AND deploy_id = %s",
        [dirname, deploy_id],
    )
    return {p: (bytes(d).hex(), s) for p, d, s in rows}


def site_index_count(api: Api, dirname: str = DIR) -> int:
    return int(api.sql("SELECT count(*) FROM deploy_files WHERE site = %s", [dirname])[0][0])


def offer(api: Api, files: dict[str, bytes], site: str = SITE) -> dict[str, Any]:
    """What a new deploy's POST /digests answers for `files` (and its session)."""
    session = api.init(site)
    manifest = [
        {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)}
        for p, d in files.items()
    ]
    reply = api.call("POST", f"/api/deploy/{session['deployId']}/digests", token=session["jwt"],
                     json_body={"files": manifest})  # fmt: skip
    assert reply.status == 200, reply.raw
    body: dict[str, Any] = reply.body
    return {**body, "deployId": session["deployId"]}


def indexed_victim(api: Api) -> tuple[str, str]:
    """A site whose unaliased `victim` alone holds OWN; `kept` (the preview) holds FILES."""
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", {**FILES, **OWN})
    kept = api.deploy(SITE, "bbbbbbb", "preview", FILES)
    return victim, kept


def expected_rows(files: dict[str, bytes]) -> dict[str, tuple[str, int]]:
    return {p: (hashlib.sha256(d).hexdigest(), len(d)) for p, d in files.items()}


def test_a_deploy_delete_drops_its_index_rows_and_its_content_is_asked_for(api: Api) -> None:
    victim, kept = indexed_victim(api)
    assert index_rows(api, victim) == expected_rows({**FILES, **OWN})
    assert offer(api, OWN)["copied"] == list(OWN)  # a copy source, before

    assert delete_deploy(api, victim).status == 200

    assert index_rows(api, victim) == {}
    assert index_rows(api, kept) == expected_rows(FILES)  # a neighbour keeps its rows
    answer = offer(api, {**OWN, "index.html": FILES["index.html"]})
    assert sorted(answer["upload"]) == sorted(OWN)  # only the deleted deploy held it
    assert answer["copied"] == ["index.html"]  # still held by a live deploy


def test_a_failed_delete_move_has_already_dropped_the_rows(api: Api) -> None:
    """The rows leave in the tombstone's transaction: a move that fails part-way leaves bytes
    at the live prefix, but never an index row offering them."""
    victim, _ = indexed_victim(api)
    with failing_copies(api, lambda src, _dst: src.endswith("/own.txt")):
        reply = delete_deploy(api, victim)
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert live_prefix(victim) + "own.txt" in objects(api, live_prefix(victim))
    assert index_rows(api, victim) == {}
    assert offer(api, OWN)["upload"] == list(OWN)


def test_restore_writes_the_rows_back_from_the_marker_and_is_a_source_again(api: Api) -> None:
    victim, _ = indexed_victim(api)
    before = index_rows(api, victim)
    assert delete_deploy(api, victim).status == 200
    assert index_rows(api, victim) == {}
    assert offer(api, OWN)["upload"] == list(OWN)

    reply = restore(api, victim)
    assert reply.status == 200, reply.raw

    assert index_rows(api, victim) == before == expected_rows({**FILES, **OWN})
    answer = offer(api, OWN)
    assert answer["copied"] == list(OWN) and answer["upload"] == []
    for path, data in OWN.items():  # the copies are the restored deploy's bytes
        assert api.rt.bucket.get(live_prefix(answer["deployId"]) + path) == data
    assert restore(api, victim).status == 200  # the idempotent repeat changes no row
    assert index_rows(api, victim) == before


def test_restore_never_trusts_a_marker_digest_for_an_object_rewritten_since(api: Api) -> None:
    """An object written after finalize (a presigned POST cannot be recalled) is not what
    the marker's digest was computed from: its ETag differs, so it comes back without a row."""
    victim, _ = indexed_victim(api)
    api.rt.bucket.put(live_prefix(victim) + "own.txt", b"written after finalize", "text/plain")
    assert delete_deploy(api, victim).status == 200

    assert restore(api, victim).status == 200

    assert index_rows(api, victim) == expected_rows({**FILES, "own.css": OWN["own.css"]})
    answer = offer(api, {"own.txt": OWN["own.txt"], "later.txt": b"written after finalize"})
    assert answer["upload"] == ["own.txt", "later.txt"]


def test_restore_of_a_marker_without_digests_has_no_rows(api: Api) -> None:
    """A deploy finalized before the index existed: restored, live, and never a copy source
    until backfill rebuilds its rows."""
    victim, _ = indexed_victim(api)
    marker_key = live_prefix(victim) + MARKER
    marker = json.loads(api.rt.bucket.get(marker_key) or b"{}")
    del marker["digests"]
    api.rt.bucket.put(marker_key, json.dumps(marker).encode(), "application/json")
    assert delete_deploy(api, victim).status == 200

    assert restore(api, victim).status == 200

    assert index_rows(api, victim) == {}
    row = deploy_row(api, victim)
    assert row is not None and row[:2] == ("active", True)
    assert offer(api, OWN)["upload"] == list(OWN)


def test_restore_of_a_never_finalized_deploy_has_no_rows(api: Api) -> None:
    api.register(SITE, ["web"])
    session = api.init(SITE, "ccccccc")
    assert api.upload(session, "index.html", b"<h1>draft</h1>").status == 200
    assert index_rows(api, session["deployId"]) != {}
    assert delete_deploy(api, session["deployId"]).status == 200
    assert index_rows(api, session["deployId"]) == {}

    assert restore(api, session["deployId"]).status == 200

    assert index_rows(api, session["deployId"]) == {}  # no marker vouches for anything


def test_purge_drops_every_index_row_of_the_site_and_only_of_it(api: Api) -> None:
    published_site(api)
    api.register("docs", ["web"])
    neighbour = api.deploy("docs", files=FILES)
    docs_dir = api.rt.settings.key_layout.dirname(Slug("docs"))
    assert site_index_count(api) == 2 * len(FILES)

    reply = delete_site(api, query="?purge=true")
    assert reply.status == 200, reply.raw

    assert site_index_count(api) == 0
    assert index_rows(api, neighbour, docs_dir) == expected_rows(FILES)


def test_a_failed_purge_move_has_already_dropped_the_rows(api: Api) -> None:
    published_site(api)
    with failing_copies(api, lambda src, _dst: src.endswith("/app.js")):
        reply = delete_site(api, query="?purge=true")
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    assert site_index_count(api) == 0


def test_a_bare_site_delete_keeps_the_index_rows_of_the_deploys_it_keeps(api: Api) -> None:
    """The bare delete removes no deploy (its bytes and rows stay, so the site comes back by
    registering and promoting), so nothing leaves the index either."""
    old, new = published_site(api)
    assert delete_site(api).status == 204
    assert index_rows(api, old) == index_rows(api, new) == expected_rows(FILES)
    api.register(SITE, ["web"])
    assert offer(api, FILES)["copied"] == list(FILES)


def test_a_gc_collected_deploy_is_asked_for_and_a_source_again_once_restored(api: Api) -> None:
    """End to end: GC collects the deploy (its rows leave with the tombstone), a later
    deploy's digests are asked for; the restore writes the rows back and they are copied."""
    victim, _ = indexed_victim(api)
    for sha in ("ccccccc", "ddddddd", "eeeeeee"):  # three newer deploys keep their keep-N slots
        api.deploy(SITE, sha, "preview", FILES)
    later = datetime.now(UTC) + timedelta(days=30)  # past the grace and the retention

    result = run_gc_site(api.rt, Dirname(DIR), now=later, deadline=Deadline.after(600),
                         dry_run=False)  # fmt: skip

    assert victim in result.tombstoned
    assert result.index_rows_dropped >= len(FILES) + len(OWN)
    assert objects(api, live_prefix(victim)) == {}
    assert index_rows(api, victim) == {}
    assert offer(api, OWN)["upload"] == list(OWN)

    assert restore(api, victim).status == 200

    assert index_rows(api, victim) == expected_rows({**FILES, **OWN})
    answer = offer(api, OWN)
    assert answer["copied"] == list(OWN) and answer["upload"] == []
    for path, data in OWN.items():
        assert api.rt.bucket.get(live_prefix(answer["deployId"]) + path) == data


# --- named previews are aliases too (issue 14) ---------------------------------------------------


def named_preview(api: Api, name: str, deploy_id: str, *, row: bool = True) -> str:
    """Publish `deploy_id` as the named preview `name` (object, and the row unless told not);
    return the alias object's key."""
    site = Dirname(DIR)
    key = api.rt.settings.key_layout.alias_key(site, name)
    api.rt.bucket.put_alias(key, deploy_id)
    if row:
        with api.rt.db.transaction() as conn:
            aliases_db.upsert(conn, site, name, deploy_id, datetime.now(UTC), by="octocat")
    return key


def test_delete_of_a_deploy_a_named_preview_names_is_409_naming_it(api: Api) -> None:
    api.register(SITE, ["web"])
    victim = api.deploy(SITE, "aaaaaaa", "preview", FILES)
    api.deploy(SITE, "bbbbbbb", "preview", FILES)  # no fixed alias names the victim any more
    named_preview(api, "pr-9", victim, row=False)  # the object alone decides
    named_preview(api, "pr-12", victim)
    before = objects(api, live_prefix(victim))

    reply = delete_deploy(api, victim)

    assert (reply.status, reply.code) == (409, "deploy_aliased")
    assert {k: v for k, v in reply.body.items() if k != "error"} == {
        "site": SITE,
        "deployId": victim,
        "alias": "pr-12",
    }  # fmt: skip  (named previews by name: "pr-12" < "pr-9")
    assert objects(api, live_prefix(victim)) == before
    assert tombstone(api, victim) is None
    assert audit_rows(api, reply) == []


def test_restore_refuses_while_a_named_preview_names_the_trashed_deploy(api: Api) -> None:
    victim, _ = deleted_deploy(api)
    key = named_preview(api, "pr-3", victim)  # object and row: drift, never served from trash

    reply = restore(api, victim)
    assert (reply.status, reply.code) == (409, "deploy_aliased")
    assert reply.body["alias"] == "pr-3"

    api.rt.bucket.delete_object(key)  # the row alone still refuses
    reply = restore(api, victim)
    assert (reply.status, reply.code, reply.body["alias"]) == (409, "deploy_aliased", "pr-3")
    assert tombstone(api, victim) is not None

    api.sql("DELETE FROM aliases WHERE site = %s AND name = 'pr-3'", [DIR])
    assert restore(api, victim).status == 200


def test_bare_delete_unpublishes_the_named_previews_too(api: Api) -> None:
    old, new = published_site(api)
    layout = api.rt.settings.key_layout
    site = Dirname(DIR)
    keys = {"pr-1": named_preview(api, "pr-1", old), "pr-2": named_preview(api, "pr-2", new)}

    reply = delete_site(api)

    assert reply.status == 204, reply.raw
    for name, key in keys.items():
        assert api.rt.bucket.get_alias(key) is None  # no longer served
        assert api.rt.bucket.get_alias(layout.alias_trash_key(site, name)) == (
            old if name == "pr-1" else new
        )
    assert objects(api, layout.named_alias_prefix(site)) == {}
    assert alias_rows(api) == []
    assert len(objects(api, f"{DIR}/deploys/")) == 6  # deploy bytes stay


def test_purge_unpublishes_the_named_previews_before_the_bulk_move(api: Api) -> None:
    old, _ = published_site(api)
    layout = api.rt.settings.key_layout
    site = Dirname(DIR)
    key = named_preview(api, "pr-1", old)
    tree = objects(api, f"{DIR}/")

    with recording_copies(api) as copies:
        reply = delete_site(api, query="?purge=true")

    assert reply.status == 200, reply.raw
    assert reply.body["moved"] == len(tree)  # the named preview's object counted once
    assert copies[:3] == [
        (f"{DIR}/production", f"{TRASH}{DIR}/production"),
        (f"{DIR}/preview", f"{TRASH}{DIR}/preview"),
        (key, layout.alias_trash_key(site, "pr-1")),
    ]
    assert api.rt.bucket.get_alias(key) is None
    assert api.rt.bucket.get_alias(layout.alias_trash_key(site, "pr-1")) == old
    assert alias_rows(api) == []
