"""Deleted deploys stay deleted, uploads never land in a finalized deploy, and drift and
reconcile report the shapes that would mean otherwise.

Black box over HTTP through the local gateway (real handler, Postgres, moto S3); faults are
injected only at the S3 boundary; drift and reconcile run their real read-only snapshots.
"""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from artemis.deadlines import Deadline
from artemis.jobs.drift import sweep_site
from artemis.jobs.reconcile import run_reconcile
from artemis.keys import Dirname
from artemis.readonly import ReadOnlyBucket, ReadOnlyDatabase
from tests.integration.api.conftest import DEV, Api, Reply
from tests.integration.api.test_deletion import (
    DIR,
    FILES,
    MARKER,
    SITE,
    delete_deploy,
    failing_copies,
    live_prefix,
    objects,
    restore,
    tombstone,
    trash_prefix,
)


def presign(api: Api, session: dict[str, Any], path: str = "big.bin") -> Reply:
    return api.call(
        "POST", f"/api/deploy/{session['deployId']}/uploads", token=session["jwt"],
        json_body={"files": [{"path": path, "size": 10}]},
    )  # fmt: skip


def marker_record(api: Api, deploy_id: str) -> dict[str, str]:
    body = api.rt.bucket.get(live_prefix(deploy_id) + MARKER)
    assert body is not None
    files: dict[str, str] = json.loads(body)["files"]
    return files


def held(api: Api, deploy_id: str) -> dict[str, str]:
    """relative key → ETag of every object at the deploy's live prefix but the marker."""
    prefix = live_prefix(deploy_id)
    return {
        o.key[len(prefix) :]: o.etag
        for o in api.rt.bucket.list_keys(prefix)
        if o.key != prefix + MARKER
    }


def classify_now(api: Api) -> dict[str, list[str]]:
    """The drift sweep's classification of the site (read-only, as the nightly run does)."""
    rt = api.rt
    result = sweep_site(
        ReadOnlyBucket(rt.bucket), ReadOnlyDatabase(rt.db), rt.settings.key_layout, Dirname(DIR),
        as_of=datetime.now(UTC), grace=timedelta(hours=1), cap=100,
    )  # fmt: skip
    assert not result.unreadable, result
    return result.classification.to_json()


def reconcile_dry(api: Api) -> dict[str, Any]:
    deadline = Deadline(time.monotonic() + 60)
    report = run_reconcile(api.rt, SITE, apply=False, now=datetime.now(UTC), deadline=deadline)
    assert report.plan is not None
    return report.plan.classification.to_json()


def a_deleted_finalized_deploy(api: Api) -> tuple[str, dict[str, Any], str]:
    """A finalized deploy (its session kept) deleted after production moved to another one."""
    api.register(SITE, ["web"])
    session = api.init(SITE)
    victim = session["deployId"]
    for path, data in FILES.items():
        assert api.upload(session, path, data).status == 200
    assert api.finalize(session, list(FILES), "production").status == 200
    live = api.deploy(SITE, mode="production")
    assert delete_deploy(api, victim).status == 200
    return victim, session, live


# --- item 1: a deleted deploy cannot come back --------------------------------------------------


def test_a_deleted_deploys_session_cannot_upload_presign_or_finalize(api: Api) -> None:
    victim, session, live = a_deleted_finalized_deploy(api)
    trashed = objects(api, trash_prefix(victim))

    reply = api.upload(session, "index.html", b"<h1>resurrected</h1>")
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    reply = presign(api, session)
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    reply = api.finalize(session, ["index.html"], "production")
    assert (reply.status, reply.code) == (410, "deploy_deleted")

    assert objects(api, live_prefix(victim)) == {}
    assert objects(api, trash_prefix(victim)) == trashed
    assert api.alias_object(DIR, "production") == live
    trash = api.call("GET", f"/api/site/{SITE}/trash", token=DEV).body
    assert [entry["deployId"] for entry in trash] == [victim]
    # ...and a restore then brings back exactly what was deleted, with no alias move.
    reply = restore(api, victim)
    assert reply.status == 200, reply.raw
    assert api.alias_object(DIR, "production") == live


def test_a_crash_between_the_tombstone_and_the_move_still_refuses_the_session(api: Api) -> None:
    api.register(SITE, ["web"])
    session = api.init(SITE)
    victim = session["deployId"]
    assert api.upload(session, "index.html", b"<h1>draft</h1>").status == 200
    with failing_copies(api, lambda _src, _dst: True) as refused:  # the move dies at once
        reply = delete_deploy(api, victim)
    assert refused
    assert (reply.status, reply.code) == (502, "r2_move_failed")
    row = tombstone(api, victim)
    assert row is not None and row[2] == "pending"
    before = objects(api, live_prefix(victim))

    reply = api.upload(session, "index.html", b"<h1>resurrected</h1>")
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    assert (presign(api, session).status, presign(api, session).code) == (410, "deploy_deleted")
    reply = api.finalize(session, ["index.html"], "production")
    assert (reply.status, reply.code) == (410, "deploy_deleted")
    assert objects(api, live_prefix(victim)) == before
    assert api.alias_object(DIR, "production") is None
    # A restore refuses to merge over the bytes the move left behind; repeating the delete
    # finishes the move, and then the restore works.
    reply = restore(api, victim)
    assert (reply.status, reply.code) == (409, "restore_target_occupied")
    assert delete_deploy(api, victim).status == 200
    assert restore(api, victim).status == 200


def test_restore_never_writes_over_objects_at_the_live_prefix(api: Api) -> None:
    victim, _, live = a_deleted_finalized_deploy(api)
    trashed = objects(api, trash_prefix(victim))
    # Bytes written after the delete (a presigned POST cannot be recalled).
    api.rt.bucket.put(live_prefix(victim) + "index.html", b"<h1>late</h1>", "text/html")

    reply = restore(api, victim)
    assert (reply.status, reply.code) == (409, "restore_target_occupied")
    assert api.rt.bucket.get(live_prefix(victim) + "index.html") == b"<h1>late</h1>"
    assert objects(api, trash_prefix(victim)) == trashed
    assert tombstone(api, victim) is not None
    assert api.alias_object(DIR, "production") == live


def test_restore_never_writes_under_an_alias_that_names_the_deleted_deploy(api: Api) -> None:
    victim, _, _ = a_deleted_finalized_deploy(api)
    trashed = objects(api, trash_prefix(victim))
    api.rt.bucket.put_alias(f"{DIR}/production", victim)  # the state the old bug produced

    reply = restore(api, victim)
    assert (reply.status, reply.code) == (409, "deploy_aliased")
    assert reply.body["alias"] == "production"
    assert objects(api, live_prefix(victim)) == {}
    assert objects(api, trash_prefix(victim)) == trashed


def test_drift_and_reconcile_report_an_alias_naming_a_tombstoned_deploy(api: Api) -> None:
    victim, _, _ = a_deleted_finalized_deploy(api)
    assert classify_now(api)["aliased_tombstoned"] == []
    # What the old code let a deleted deploy's session do: bytes and production back.
    api.rt.bucket.put(live_prefix(victim) + "index.html", b"<h1>back</h1>", "text/html")
    api.rt.bucket.put(live_prefix(victim) + MARKER, b"{}", "application/json")
    api.rt.bucket.put_alias(f"{DIR}/production", victim)
    api.sql(
        "INSERT INTO deploys (site, id, mtime, state, has_marker) VALUES (%s, %s, now(),"
        " 'active', true)",
        [DIR, victim],
    )

    found = classify_now(api)
    assert found["aliased_tombstoned"] == [victim]
    assert victim not in found["reindex"] + found["aliased_missing"] + found["tombstone"]
    assert reconcile_dry(api)["aliased_tombstoned"] == [victim]


def test_concurrent_uploads_and_a_delete_leave_nothing_at_the_live_prefix(api: Api) -> None:
    api.register(SITE, ["web"])
    for _ in range(5):
        session = api.init(SITE)
        victim = session["deployId"]
        assert api.upload(session, "index.html", b"<p>0</p>").status == 200
        barrier = threading.Barrier(5)

        def upload(
            n: int, session: dict[str, Any] = session, barrier: threading.Barrier = barrier
        ) -> tuple[str, Reply]:
            barrier.wait()
            path = f"f{n}.js"
            return path, api.upload(session, path, b"x" * n, "text/javascript")

        def remove(victim: str = victim, barrier: threading.Barrier = barrier) -> Reply:
            barrier.wait()
            return delete_deploy(api, victim)

        with ThreadPoolExecutor(max_workers=5) as pool:
            uploads = [pool.submit(upload, n) for n in range(1, 5)]
            deleted = pool.submit(remove)
            results = [f.result() for f in uploads]
            assert deleted.result().status in (200, 409), deleted.result().raw
        if deleted.result().status == 409:  # busy: an upload held the lock; delete again
            assert deleted.result().code == "deploy_busy"
            assert delete_deploy(api, victim).status == 200
        assert objects(api, live_prefix(victim)) == {}
        in_trash = objects(api, trash_prefix(victim))
        for path, reply in results:
            assert reply.status in (200, 409, 410), reply.raw
            if reply.status == 200:  # it landed before the tombstone, so it moved with it
                assert trash_prefix(victim) + path in in_trash
        assert api.upload(session, "late.js", b"x").code == "deploy_deleted"


# --- item 2: uploads racing finalize --------------------------------------------------------------


@pytest.mark.parametrize("round_", range(12))
def test_an_upload_racing_finalize_never_lands_outside_finalizes_record(
    api: Api, round_: int
) -> None:
    if not api.sql("SELECT 1 FROM sites WHERE slug = %s", [SITE]):
        api.register(SITE, ["web"])
    session = api.init(SITE)
    deploy_id = session["deployId"]
    assert api.upload(session, "index.html", b"<h1>v</h1>").status == 200
    finalized = threading.Event()
    go = threading.Event()  # finalize starts after a few uploads, a different number each round
    uploaded = iter(range(10**6))
    start_after = round_ % 6
    barrier = threading.Barrier(3)
    accepted_after: list[str] = []

    def uploader(worker: int) -> list[tuple[str, int, str | None]]:
        barrier.wait()
        answers = []
        for n in range(40):
            path = f"w{worker}/{n}.js"
            done_before = finalized.is_set()
            reply = api.upload(session, path, f"{round_}-{worker}-{n}".encode(), "text/javascript")
            answers.append((path, reply.status, reply.code))
            if next(uploaded) >= start_after:
                go.set()
            if reply.status == 200 and done_before:
                accepted_after.append(path)
            if reply.code == "deploy_finalized":
                break
        return answers

    def finalizer() -> Reply:
        barrier.wait()
        assert go.wait(timeout=60)
        reply = api.finalize(session, ["index.html"])
        finalized.set()
        return reply

    with ThreadPoolExecutor(max_workers=3) as pool:
        workers = [pool.submit(uploader, w) for w in range(2)]
        fin = pool.submit(finalizer)
        answers = [a for w in workers for a in w.result()]
        assert fin.result().status == 200, fin.result().raw

    record = marker_record(api, deploy_id)
    assert held(api, deploy_id) == record  # nothing in the prefix that finalize did not list
    assert accepted_after == []  # after finalize answered, no upload was accepted
    for path, status, code in answers:
        assert (status, code) in ((200, None), (409, "deploy_finalized"), (409, "deploy_busy"))
        if status == 200:
            assert path in record
    assert api.upload(session, "late.js", b"x").code == "deploy_finalized"


def test_presigned_posts_expire_within_15_minutes(api: Api) -> None:
    api.register(SITE, ["web"])
    session = api.init(SITE)
    reply = presign(api, session)
    assert reply.status == 200, reply.raw
    expires = datetime.fromisoformat(reply.body["expiresAt"].replace("Z", "+00:00"))
    assert expires - datetime.now(UTC) <= timedelta(minutes=15)
    policy = json.loads(_b64(reply.body["uploads"][0]["fields"]["policy"]))
    expiration = datetime.fromisoformat(policy["expiration"].replace("Z", "+00:00"))
    assert expiration - datetime.now(UTC) <= timedelta(minutes=15, seconds=5)
    assert expiration <= datetime.fromisoformat(session["expiresAt"].replace("Z", "+00:00"))


def _b64(value: str) -> bytes:
    import base64

    return base64.b64decode(value)


def test_finalize_records_what_the_deploy_holds_and_drift_reports_later_writes(
    api: Api,
) -> None:
    api.register(SITE, ["web"])
    deploy_id = api.deploy(SITE, files=FILES)
    assert marker_record(api, deploy_id) == held(api, deploy_id)
    assert set(marker_record(api, deploy_id)) == set(FILES)
    other = api.deploy(SITE, files=FILES)
    found = classify_now(api)
    assert found["written_after_finalize"] == []

    # A presigned POST that lands after finalize: a new key, and an overwrite of a recorded one.
    api.rt.bucket.put(live_prefix(deploy_id) + "extra.js", b"evil()", "text/javascript")
    api.rt.bucket.put(live_prefix(other) + "index.html", b"<h1>swapped</h1>", "text/html")
    found = classify_now(api)
    assert found["written_after_finalize"] == sorted([deploy_id, other])
    assert reconcile_dry(api)["written_after_finalize"] == sorted([deploy_id, other])


def test_a_deleted_and_restored_deploy_still_matches_its_record(api: Api) -> None:
    victim, _, _ = a_deleted_finalized_deploy(api)
    assert restore(api, victim).status == 200
    assert held(api, victim) == marker_record(api, victim)
    assert classify_now(api)["written_after_finalize"] == []


def test_a_repeated_finalize_keeps_the_first_record(api: Api) -> None:
    """Finalize may be repeated (to move another alias); it must not absorb what a presigned
    POST wrote into the prefix after the first finalize."""
    api.register(SITE, ["web"])
    session = api.init(SITE)
    deploy_id = session["deployId"]
    for path, data in FILES.items():
        assert api.upload(session, path, data).status == 200
    assert api.finalize(session, list(FILES), "preview").status == 200
    first = marker_record(api, deploy_id)
    api.rt.bucket.put(live_prefix(deploy_id) + "extra.js", b"evil()", "text/javascript")
    assert api.finalize(session, list(FILES), "production").status == 200
    assert marker_record(api, deploy_id) == first
    assert "extra.js" not in first
    assert classify_now(api)["written_after_finalize"] == [deploy_id]
