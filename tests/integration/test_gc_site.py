"""gc-site against real Postgres and moto S3 (spec/durable.md §9.1, §8.8, §10).

The key template makes slug and dirname differ (`www` lives under `www.example.org/`), so a
path that confuses the two finds nothing. Deploy ids carry a per-test sha: the audit log is
append-only and outlives each test.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from botocore.exceptions import ClientError

from artemis.db import aliases, audit, content, deploys, job_runs, tombstones
from artemis.db import lock as lock_module
from artemis.db.lock import site_lock
from artemis.deadlines import Deadline
from artemis.errors import SiteLocked, StorageError
from artemis.jobs.gc_site import GcResult, plan_fleet, plan_for, run_gc_site
from artemis.keys import MARKER_NAME, Dirname
from artemis.retention import Plan, Policy
from artemis.runtime import Runtime
from artemis.storage.objects import MoveIncomplete
from tests.conftest import REPO_ROOT, SLUG_NOT_DIRNAME, base_env
from tests.integration.conftest import MakeRuntime

SLUG = "www"
SITE = Dirname("www.example.org")
T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
NOW = T0 + timedelta(days=30)  # past the 72 h grace and the 7-day retention
FILES = {"index.html": b"<h1>hello</h1>", "app.js": b"console.log(1)"}


@pytest.fixture
def make_rt(job_runtime: MakeRuntime) -> MakeRuntime:
    return lambda **overrides: job_runtime(**{"CLEANUP_RECENT_KEEP": "3", **overrides})


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt()


def deploy_id(at: datetime, sha: str) -> str:
    return f"{at:%Y%m%d-%H%M%S}-{sha}"


def seed_deploy(
    rt: Runtime,
    site: Dirname,
    did: str,
    at: datetime,
    *,
    marker: bool = True,
    pending: bool = False,
) -> int:
    """Bytes (and, finalized, the marker) in the bucket plus the index row."""
    prefix = rt.settings.key_layout.deploy_prefix(site, did)
    size = 0
    for name, body in FILES.items():
        rt.bucket.put(prefix + name, body, "text/plain")
        size += len(body)
    if marker:
        meta = json.dumps({"deployId": did}).encode()
        rt.bucket.put(prefix + MARKER_NAME, meta, "application/json")
        size += len(meta)
    with rt.db.transaction() as conn:
        if pending:
            deploys.begin(conn, site, did, at)
        else:
            deploys.upsert_finalized(conn, site, did, at, size, has_marker=marker)
    return size


def seed_twelve(rt: Runtime, site: Dirname = SITE) -> tuple[list[str], dict[str, int]]:
    """Twelve finalized deploys an hour apart, oldest first; production on the 5th-newest."""
    sha = uuid.uuid4().hex[:7]
    ids = [deploy_id(T0 + timedelta(hours=i), sha) for i in range(12)]
    sizes = {did: seed_deploy(rt, site, did, T0 + timedelta(hours=i)) for i, did in enumerate(ids)}
    aliased = ids[-5]
    rt.bucket.put_alias(rt.settings.key_layout.alias_key(site, "production"), aliased)
    with rt.db.transaction() as conn:
        aliases.upsert(conn, site, "production", aliased, T0 + timedelta(days=1))
    return ids, sizes


def expected_victims(ids: list[str]) -> set[str]:
    """Keep the three newest and the aliased 5th-newest; everything else goes."""
    return set(ids) - {ids[-1], ids[-2], ids[-3], ids[-5]}


def keys_under(rt: Runtime, prefix: str) -> set[str]:
    return {o.key[len(prefix) :] for o in rt.bucket.list_keys(prefix)}


def tombstone_rows(rt: Runtime, site: Dirname = SITE) -> dict[str, tombstones.TombstoneRow]:
    with rt.db.transaction() as conn:
        return {t.id: t for t in tombstones.for_site(conn, site)}


def index_ids(rt: Runtime, site: Dirname = SITE) -> set[str]:
    with rt.db.transaction() as conn:
        return {r.id for r in deploys.active_for_site(conn, site)}


def gc_audit(rt: Runtime, ids: set[str], site: str = SLUG) -> list[audit.AuditRow]:
    with rt.db.transaction() as conn:
        rows = audit.query(conn, audit.AuditFilter(site=site, action="gc.tombstone", limit=500))
    return [r for r in rows if r.deploy_id in ids]


def job_row(rt: Runtime, run_id: int) -> job_runs.JobRunRow:
    with rt.db.transaction() as conn:
        row = job_runs.get(conn, run_id)
    assert row is not None
    return row


def run(rt: Runtime, **kwargs: Any) -> GcResult:
    kwargs.setdefault("deadline", Deadline.after(600))
    return run_gc_site(rt, SITE, now=kwargs.pop("now", NOW), **kwargs)


def assert_in_trash(rt: Runtime, did: str, site: Dirname = SITE) -> None:
    layout = rt.settings.key_layout
    assert keys_under(rt, layout.deploy_prefix(site, did)) == set()
    assert keys_under(rt, layout.deploy_trash_prefix(site, did)) == {*FILES, MARKER_NAME}


def assert_live(rt: Runtime, did: str, site: Dirname = SITE) -> None:
    layout = rt.settings.key_layout
    assert keys_under(rt, layout.deploy_prefix(site, did)) == {*FILES, MARKER_NAME}
    assert keys_under(rt, layout.deploy_trash_prefix(site, did)) == set()


# --- the scenario -------------------------------------------------------------------


def test_scenario_twelve_deploys_keep3_cap10(rt: Runtime) -> None:
    ids, sizes = seed_twelve(rt)
    victims = expected_victims(ids)

    result = run(rt)

    assert set(result.tombstoned) == victims and len(result.tombstoned) == 8
    assert result.planned == result.tombstoned  # nothing changed between plan and execution
    assert result.skipped_aliased == [] and not result.capped and not result.incomplete
    assert result.bytes == sum(sizes[d] for d in victims)
    rows = tombstone_rows(rt)
    assert set(rows) == victims
    assert all(r.move_state == "moved" and r.bytes == sizes[r.id] for r in rows.values())
    assert index_ids(rt) == set(ids) - victims
    for did in victims:
        assert_in_trash(rt, did)
    for did in set(ids) - victims:
        assert_live(rt, did)
    assert rt.bucket.get_alias(f"{SITE}/production") == ids[-5]
    entries = gc_audit(rt, set(ids))
    assert sorted(e.deploy_id for e in entries) == sorted(victims)
    assert {(e.actor, e.outcome, e.site, json.dumps(e.detail)) for e in entries} == {
        ("system:gc", "success", SLUG, "{}")
    }
    record = job_row(rt, result.run_id)
    assert record.job == "gc-site" and record.site == SITE and record.outcome == "succeeded"
    assert {p["id"] for p in record.plan["planned"]} == victims
    assert record.counts["tombstoned"] == 8 and record.counts["bytes_trashed"] == result.bytes


def test_v6_cap_takes_the_oldest_and_the_rest_waits_for_the_next_run(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_BLAST_CAP="5")
    ids, _ = seed_twelve(rt)
    first = run(rt)
    assert first.capped and first.reason == "8 candidates exceed cap 5; taking the oldest 5"
    assert first.tombstoned == ids[:5]  # the oldest five, oldest first
    second = run(rt)
    assert set(second.tombstoned) == expected_victims(ids) - set(ids[:5])
    assert not second.capped


def test_v6_cap_zero_refuses_and_dry_run_still_reports(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_BLAST_CAP="0")
    ids, _ = seed_twelve(rt)
    live = run(rt)
    assert live.planned == [] and live.capped and "cap 0" in live.reason
    assert tombstone_rows(rt) == {}
    dry = run(rt, dry_run=True)
    assert dry.plan is not None and {c.id for c in dry.plan.candidates} == expected_victims(ids)


# --- V1: the bucket decides what is live -----------------------------------------------------


def test_v1_alias_object_appearing_before_execution_skips(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    victim = ids[0]

    def promote_by_object(plan: Plan) -> None:
        assert victim in plan.planned_ids  # planned from the rows, which do not alias it
        rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "preview"), victim)

    result = run(rt, after_plan=promote_by_object)

    assert result.skipped_aliased == [victim]
    assert set(result.tombstoned) == expected_victims(ids) - {victim}
    assert victim not in tombstone_rows(rt)
    assert victim in index_ids(rt)
    assert_live(rt, victim)
    assert gc_audit(rt, {victim}) == []


def test_v1c_alias_row_says_x_alias_object_says_y_y_is_never_moved(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)  # the production row and object name ids[-5]
    y = ids[1]
    rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "production"), y)
    result = run(rt)
    assert y in result.planned and result.skipped_aliased == [y]
    assert ids[-5] not in result.planned
    assert_live(rt, y)
    assert_live(rt, ids[-5])


def test_d15_deploy_restored_after_planning_is_not_tombstoned(rt: Runtime) -> None:
    ids, sizes = seed_twelve(rt)
    victim = ids[0]

    def restore(plan: Plan) -> None:
        with rt.db.transaction() as conn:  # what a restore writes: mtime = now
            deploys.upsert_finalized(conn, SITE, victim, NOW, sizes[victim])

    result = run(rt, after_plan=restore)
    assert victim in result.skipped_kept and victim not in result.tombstoned
    assert_live(rt, victim)


def test_alias_read_error_fails_the_run_and_writes_nothing_for_that_deploy(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)

    def refuse(**kwargs: Any) -> None:
        if kwargs["params"]["Key"].endswith("/preview"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "GetObject")

    rt.bucket.client.meta.events.register("before-parameter-build.s3.GetObject", refuse)
    with pytest.raises(StorageError) as info:
        run(rt)
    assert info.value.code == "r2_get_failed"
    assert tombstone_rows(rt) == {}
    assert index_ids(rt) == set(ids)


# --- V5, V10, E1 -----------------------------------------------------------------------------


def test_v5_gc_never_deletes_bytes(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    deleted: list[str] = []
    single_deletes: list[str] = []

    def on_delete_objects(**kwargs: Any) -> None:
        deleted.extend(o["Key"] for o in kwargs["params"]["Delete"]["Objects"])

    def on_delete_object(**kwargs: Any) -> None:
        single_deletes.append(kwargs["params"]["Key"])

    events = rt.bucket.client.meta.events
    events.register("before-parameter-build.s3.DeleteObjects", on_delete_objects)
    events.register("before-parameter-build.s3.DeleteObject", on_delete_object)

    result = run(rt)

    layout = rt.settings.key_layout
    assert single_deletes == []
    assert deleted, "the moves delete their sources"
    sources = {layout.deploy_prefix(SITE, d): layout.deploy_trash_prefix(SITE, d) for d in ids}
    for key in deleted:
        src = next(p for p in sources if key.startswith(p))  # only ever a deploy's live prefix
        trash_key = sources[src] + key[len(src) :]
        assert rt.bucket.head(trash_key) is not None, f"{key} deleted without a copy in trash"
    assert {k for k in deleted} == {
        layout.deploy_prefix(SITE, d) + name
        for d in result.tombstoned
        for name in (*FILES, MARKER_NAME)
    }


def test_v10_second_run_tombstones_nothing(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    first = run(rt)
    assert len(first.tombstoned) == 8
    before = tombstone_rows(rt)
    second = run(rt)
    assert second.planned == [] and second.tombstoned == [] and second.redriven == []
    assert tombstone_rows(rt) == before  # trashed_at untouched
    assert len(gc_audit(rt, set(ids))) == 8


def test_e1_same_event_three_times_concurrently(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    victims = expected_victims(ids)
    _ = rt.db, rt.bucket  # build the shared clients before the threads race for them
    barrier = threading.Barrier(3)
    results: list[GcResult] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            barrier.wait()
            results.append(run(rt))
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=deliver) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == [] and len(results) == 3
    tombstoned = [d for r in results for d in r.tombstoned]
    assert sorted(tombstoned) == sorted(victims)  # each exactly once, across the three runs
    assert set(tombstone_rows(rt)) == victims
    for did in victims:
        assert_in_trash(rt, did)
    for did in set(ids) - victims:
        assert_live(rt, did)
    assert sorted(e.deploy_id for e in gc_audit(rt, set(ids))) == sorted(victims)


# --- failures, resumability, the time budget -------------------------------------------------


def test_e5c_crash_between_row_and_move_is_redriven(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    failures = {"left": 1}

    def fail_once(**_: Any) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "CopyObject")

    rt.bucket.client.meta.events.register("before-call.s3.CopyObject", fail_once)

    with pytest.raises(MoveIncomplete):
        run(rt)

    rows = tombstone_rows(rt)
    assert len(rows) == 1  # the run stopped at the first deploy: later ones were not attempted
    [(broken, row)] = rows.items()
    assert row.move_state == "pending"
    layout = rt.settings.key_layout
    assert keys_under(rt, layout.deploy_prefix(SITE, broken)), "the move left a remainder"
    assert broken not in index_ids(rt)
    failed = job_runs_for(rt, "gc-site")[-1]
    assert failed.outcome == "failed" and "MoveIncomplete" in (failed.error or "")
    assert failed.counts["tombstoned"] == 0 and failed.counts["planned"] == 8
    assert gc_audit(rt, {broken}) == []

    again = run(rt)

    assert again.redriven == [broken]
    assert tombstone_rows(rt)[broken].move_state == "moved"
    assert_in_trash(rt, broken)
    assert set(again.tombstoned) == expected_victims(ids) - {broken}
    assert set(tombstone_rows(rt)) == expected_victims(ids)


def job_runs_for(rt: Runtime, job: str) -> list[job_runs.JobRunRow]:
    with rt.db.transaction() as conn:
        ids = [
            r[0] for r in conn.execute("SELECT id FROM job_runs WHERE job = %s ORDER BY id", [job])
        ]
        return [row for i in ids if (row := job_runs.get(conn, i)) is not None]


@contextlib.contextmanager
def tombstone_refused(database_url: str, deploy_id: str) -> Iterator[None]:
    """While open, Postgres refuses the tombstone row of `deploy_id` (a failed write)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION gc_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'tombstone write refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER gc_test_refuse BEFORE INSERT ON tombstones FOR EACH ROW"
            f" WHEN (NEW.id = '{deploy_id}') EXECUTE FUNCTION gc_test_refuse()"
        )
        try:
            yield
        finally:
            conn.execute("DROP TRIGGER gc_test_refuse ON tombstones")
            conn.execute("DROP FUNCTION gc_test_refuse()")


def test_failed_tombstone_write_fails_the_run_at_that_deploy(
    rt: Runtime, database_url: str
) -> None:
    seed_twelve(rt)
    plan_order = run(rt, dry_run=True).planned
    poisoned = plan_order[2]
    with tombstone_refused(database_url, poisoned), pytest.raises(psycopg.errors.RaiseException):
        run(rt)
    assert set(tombstone_rows(rt)) == set(plan_order[:2])
    assert poisoned in index_ids(rt)
    assert_live(rt, poisoned)
    for did in plan_order[3:]:
        assert_live(rt, did)


def test_dry_run_writes_nothing_but_records_the_plan(
    make_rt: MakeRuntime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    seeder = make_rt()
    ids, _ = seed_twelve(seeder)
    rt = make_rt(CLEANUP_DRY_RUN="true")
    calls: list[str] = []
    rt.bucket.client.meta.events.register(
        "before-call.s3", lambda model, **_: calls.append(model.name)
    )
    monkeypatch.setattr(lock_module, "LOCK_TIMEOUT_SECONDS", 1.0)

    with site_lock(database_url, SITE):  # a dry run takes no lock: it must not wait
        result = run(rt)

    assert result.dry_run and set(result.planned) == expected_victims(ids)
    assert result.tombstoned == [] and calls == []
    assert tombstone_rows(rt) == {} and index_ids(rt) == set(ids)
    record = job_row(rt, result.run_id)
    assert record.dry_run and record.outcome == "succeeded"
    assert {p["id"] for p in record.plan["planned"]} == expected_victims(ids)
    # The flag can also be given per run, overriding the setting.
    assert run(seeder, dry_run=True).tombstoned == []
    assert tombstone_rows(rt) == {}


def test_a_live_run_moves_nothing_while_another_holds_the_site_lock(
    rt: Runtime, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live run tombstones under the site's lock: held elsewhere, the run gives up on the
    site (the worker retries it later) with nothing moved or recorded as moved."""
    ids, _ = seed_twelve(rt)
    monkeypatch.setattr(lock_module, "LOCK_TIMEOUT_SECONDS", 1.0)
    with site_lock(database_url, SITE), pytest.raises(SiteLocked):
        run(rt)
    assert tombstone_rows(rt) == {} and index_ids(rt) == set(ids)
    assert set(run(rt).tombstoned) == expected_victims(ids)  # free again: it goes through


def test_out_of_time_stops_cleanly_and_the_next_run_resumes(rt: Runtime) -> None:
    ids, _ = seed_twelve(rt)
    stopped = run(rt, deadline=Deadline.after(0))
    assert stopped.incomplete and stopped.tombstoned == []
    assert set(stopped.planned) == expected_victims(ids)
    record = job_row(rt, stopped.run_id)
    assert record.outcome == "succeeded" and record.counts["incomplete"] == 1
    assert record.plan is not None and len(record.plan["planned"]) == 8
    assert tombstone_rows(rt) == {} and index_ids(rt) == set(ids)
    resumed = run(rt)
    assert set(resumed.tombstoned) == expected_victims(ids) and not resumed.incomplete


# --- the content index (issue 13) ----------------------------------------------------------


def own_bytes(did: str) -> bytes:
    """Content only this deploy holds."""
    return f"only in {did}".encode()


def index_twelve(rt: Runtime) -> list[str]:
    """`seed_twelve`, each deploy also holding `own.txt` (content no other deploy has), with
    the content index rows an upload would have written for every file it holds."""
    ids, _ = seed_twelve(rt)
    for did in ids:
        rt.bucket.put(rt.settings.key_layout.deploy_prefix(SITE, did) + "own.txt",
                      own_bytes(did), "text/plain")  # fmt: skip
        held = {**FILES, "own.txt": own_bytes(did)}
        with rt.db.transaction() as conn:
            content.record(conn, SITE, did, [
                content.FileDigest(p, hashlib.sha256(b).digest(), len(b)) for p, b in held.items()
            ])  # fmt: skip
    return ids


def indexed_ids(rt: Runtime) -> dict[str, int]:
    """deploy id → its content index rows."""
    with rt.db.transaction() as conn:
        rows = conn.execute(
            "SELECT deploy_id, count(*) FROM deploy_files WHERE site = %s GROUP BY deploy_id",
            [SITE],
        ).fetchall()
    return {str(d): int(n) for d, n in rows}


def copy_source(rt: Runtime, data: bytes) -> str | None:
    """The deploy a new deploy of the site would copy `data` from, if any."""
    digest = hashlib.sha256(data).digest()
    with rt.db.transaction() as conn:
        found = content.sources(conn, SITE, [digest], excluding="20991231-000000-new")
    return found[digest].deploy_id if digest in found else None


def assert_index_points_only_at_live_deploys(rt: Runtime) -> None:
    """Every row names a deploy that is active, not tombstoned, and whose live prefix holds
    that path: the index never offers a copy from trash."""
    tombstoned = set(tombstone_rows(rt))
    live = index_ids(rt)
    with rt.db.transaction() as conn:
        rows = conn.execute(
            "SELECT deploy_id, path FROM deploy_files WHERE site = %s", [SITE]
        ).fetchall()
    for did, path in rows:
        assert did in live and did not in tombstoned, did
        assert rt.bucket.head(rt.settings.key_layout.deploy_prefix(SITE, did) + path) is not None


def test_gc_drops_the_index_rows_of_what_it_tombstones(rt: Runtime) -> None:
    ids = index_twelve(rt)
    victims = expected_victims(ids)

    result = run(rt)

    assert set(result.tombstoned) == victims
    per_deploy = len(FILES) + 1
    assert indexed_ids(rt) == {did: per_deploy for did in set(ids) - victims}
    assert result.index_rows_dropped == per_deploy * len(victims)
    assert result.to_json()["index_rows_dropped"] == per_deploy * len(victims)
    assert job_row(rt, result.run_id).counts["index_rows_dropped"] == per_deploy * len(victims)
    for did in victims:  # content only a collected deploy held is asked for again
        assert copy_source(rt, own_bytes(did)) is None
    for did in set(ids) - victims:
        assert copy_source(rt, own_bytes(did)) == did
    assert copy_source(rt, FILES["app.js"]) in set(ids) - victims
    assert_index_points_only_at_live_deploys(rt)
    assert run(rt).index_rows_dropped == 0  # nothing more to drop


def test_a_dry_run_keeps_every_index_row(rt: Runtime) -> None:
    ids = index_twelve(rt)
    result = run(rt, dry_run=True)
    assert result.index_rows_dropped == 0
    assert indexed_ids(rt) == {did: len(FILES) + 1 for did in ids}


@pytest.mark.parametrize(
    "fail_at",
    ["before-call.s3.ListObjectsV2", "before-call.s3.CopyObject"],
    ids=["before-the-move", "mid-move"],
)
def test_crash_after_the_tombstone_never_leaves_the_index_pointing_at_trash(
    rt: Runtime, fail_at: str
) -> None:
    """GC dies once its tombstone committed, before its move starts (the listing fails) or
    part-way through it (a copy fails): the deploy's rows went with the tombstone, so no copy
    is offered from it, and the re-drive that finishes the move finds nothing left to drop."""
    ids = index_twelve(rt)
    victims = expected_victims(ids)
    failures = {"left": 1}
    named_aliases = rt.settings.key_layout.named_alias_prefix(SITE)

    def fail_once(params: dict[str, Any], **_: Any) -> None:
        # Not the re-check's listing of the named preview aliases: that one fails the run
        # before any tombstone (test_alias_read_error_...), this test is about the move's.
        if (params.get("query_string") or {}).get("prefix") == named_aliases:
            return
        if failures["left"]:
            failures["left"] -= 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "S3")

    rt.bucket.client.meta.events.register(fail_at, fail_once)

    with pytest.raises(MoveIncomplete):
        run(rt)

    [(broken, row)] = tombstone_rows(rt).items()
    assert row.move_state == "pending"
    layout = rt.settings.key_layout
    assert keys_under(rt, layout.deploy_prefix(SITE, broken)), "bytes are still at the live prefix"
    assert broken not in indexed_ids(rt)
    assert copy_source(rt, own_bytes(broken)) is None
    assert copy_source(rt, FILES["index.html"]) != broken
    assert len(indexed_ids(rt)) == len(ids) - 1
    assert_index_points_only_at_live_deploys(rt)
    failed = job_runs_for(rt, "gc-site")[-1]
    assert failed.outcome == "failed" and failed.counts["index_rows_dropped"] == len(FILES) + 1

    again = run(rt)

    assert again.redriven == [broken]
    assert keys_under(rt, layout.deploy_prefix(SITE, broken)) == set()
    assert again.index_rows_dropped == (len(FILES) + 1) * (len(victims) - 1)
    assert set(indexed_ids(rt)) == set(ids) - victims
    assert_index_points_only_at_live_deploys(rt)


def test_a_failed_tombstone_write_keeps_the_deploys_index_rows(
    rt: Runtime, database_url: str
) -> None:
    """The rows leave in the tombstone's transaction: a tombstone that is refused leaves the
    deploy live, and its rows with it."""
    ids = index_twelve(rt)
    poisoned = run(rt, dry_run=True).planned[0]
    with tombstone_refused(database_url, poisoned), pytest.raises(psycopg.errors.RaiseException):
        run(rt)
    assert indexed_ids(rt) == {did: len(FILES) + 1 for did in ids}
    assert copy_source(rt, own_bytes(poisoned)) == poisoned


# --- pending deploys, site-level re-drive, keyspaces -----------------------------------------


def test_q2_expired_pending_is_collected_and_a_pending_deploy_takes_no_slot(rt: Runtime) -> None:
    sha = uuid.uuid4().hex[:7]
    finalized = [deploy_id(T0 + timedelta(hours=i), sha) for i in range(4)]
    for i, did in enumerate(finalized):
        seed_deploy(rt, SITE, did, T0 + timedelta(hours=i))
    abandoned = deploy_id(T0 + timedelta(days=5), sha)  # newest of all, never finalized
    seed_deploy(rt, SITE, abandoned, T0 + timedelta(days=5), marker=False, pending=True)
    inflight = deploy_id(NOW - timedelta(minutes=5), sha)
    seed_deploy(rt, SITE, inflight, NOW - timedelta(minutes=5), marker=False, pending=True)

    result = run(rt)

    assert set(result.tombstoned) == {finalized[0], abandoned}
    assert tombstone_rows(rt)[abandoned].bytes == 0
    layout = rt.settings.key_layout
    assert keys_under(rt, layout.deploy_trash_prefix(SITE, abandoned)) == set(FILES)
    assert keys_under(rt, layout.deploy_prefix(SITE, inflight)) == set(FILES)  # V4


def test_site_level_move_is_redriven_while_the_site_stays_gone(rt: Runtime) -> None:
    layout = rt.settings.key_layout
    rt.bucket.put(f"{SITE}/deploys/old-1/index.html", b"x", "text/html")
    rt.bucket.put(f"{SITE}/deploys/old-2/index.html", b"y", "text/html")
    with rt.db.transaction() as conn:
        tombstones.record_site_purge(conn, SITE)  # the purge's move then failed

    result = run(rt)

    assert result.redriven == [""] and result.incomplete_moves == 1
    assert keys_under(rt, f"{SITE}/") == set()
    assert keys_under(rt, layout.site_trash_prefix(SITE)) == {
        "deploys/old-1/index.html",
        "deploys/old-2/index.html",
    }
    assert tombstone_rows(rt)[""].move_state == "moved"


def test_site_level_redrive_never_moves_a_site_brought_back(rt: Runtime) -> None:
    with rt.db.transaction() as conn:
        tombstones.record_site_purge(conn, SITE)
    did = deploy_id(NOW - timedelta(hours=1), uuid.uuid4().hex[:7])
    seed_deploy(rt, SITE, did, NOW - timedelta(hours=1))  # re-registered and redeployed
    rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "production"), did)

    result = run(rt)

    assert result.redrive_blocked == [""] and result.redriven == []
    assert_live(rt, did)
    assert tombstone_rows(rt)[""].move_state == "pending"


def test_unmapped_dirname_is_audited_raw(rt: Runtime) -> None:
    legacy = Dirname("legacy.example.com")  # does not match `<site>.example.org`
    sha = uuid.uuid4().hex[:7]
    ids = [deploy_id(T0 + timedelta(hours=i), sha) for i in range(4)]
    for i, did in enumerate(ids):
        seed_deploy(rt, legacy, did, T0 + timedelta(hours=i))
    result = run_gc_site(rt, legacy, now=NOW, deadline=Deadline.after(600))
    assert result.tombstoned == [ids[0]]
    [entry] = gc_audit(rt, {ids[0]}, site=legacy)
    assert entry.detail == {"site_unmapped": True} and entry.actor == "system:gc"


def test_missing_site_fails_the_run(rt: Runtime) -> None:
    with pytest.raises(ValueError, match="needs a site"):
        run_gc_site(rt, Dirname(""), now=NOW, deadline=Deadline.after(60))
    assert job_runs_for(rt, "gc-site")[-1].outcome == "failed"


# --- the fleet report (artemis-admin gcreport) -----------------------------------------------


def test_the_fleet_plan_is_each_sites_own_plan(rt: Runtime) -> None:
    """plan_fleet reads many sites per round trip; each plan must be exactly the one plan_for
    builds for that site, in the order asked, including a site the index does not know."""
    busy = Dirname(f"busy-{uuid.uuid4().hex[:8]}.example.org")
    stale = Dirname(f"stale-{uuid.uuid4().hex[:8]}.example.org")
    unknown = Dirname(f"none-{uuid.uuid4().hex[:8]}.example.org")
    ids, _ = seed_twelve(rt, busy)
    seed_deploy(rt, stale, deploy_id(T0, "pend001"), T0, pending=True)
    seed_deploy(rt, stale, deploy_id(T0 + timedelta(hours=1), "fin0001"), T0, marker=True)
    policy = Policy.from_settings(rt.settings)
    order = [stale, unknown, busy]
    fleet = list(plan_fleet(rt, order, NOW, policy, batch=2))
    assert [site for site, _ in fleet] == order
    for site, plan in fleet:
        assert plan == plan_for(rt, site, NOW, policy), site
    plans = dict(fleet)
    assert set(plans[busy].planned_ids) == expected_victims(ids)
    assert [p.reason for p in plans[stale].planned] == ["expired_pending"]
    assert plans[unknown].candidates == ()


def test_gcreport_prints_the_plan_of_every_site_with_candidates(
    make_rt: MakeRuntime, database_url: str, moto_url: str, bucket_name: str, tmp_path: Path
) -> None:
    rt = make_rt()
    site = Dirname(f"report-{uuid.uuid4().hex[:8]}.example.org")
    ids, _ = seed_twelve(rt, site)
    # A site with nothing to collect but a named preview past its TTL is reported too.
    quiet = Dirname(f"quiet-{uuid.uuid4().hex[:8]}.example.org")
    lone = deploy_id(T0, uuid.uuid4().hex[:7])
    seed_deploy(rt, quiet, lone, T0)
    with rt.db.transaction() as conn:
        aliases.upsert(conn, quiet, "pr-1", lone, T0, by="octocat")
    settings = base_env(
        DATABASE_URL=database_url, AWS_ENDPOINT_URL=moto_url, BUCKET_NAME=bucket_name,
        AWS_REGION="us-east-1", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
        CLEANUP_RECENT_KEEP="3", CLEANUP_BLAST_CAP="10", **SLUG_NOT_DIRNAME,
    )  # fmt: skip
    inherited = {
        k: v for k, v in os.environ.items() if k not in settings and not k.startswith("AWS_")
    }
    env = {**inherited, **settings, "ARTEMIS_STATE_DIR": str(tmp_path)}
    done = subprocess.run(
        [str(Path(sys.executable).with_name("artemis-admin")), "gcreport"],
        env=env, capture_output=True, text=True, timeout=60, cwd=REPO_ROOT,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["policy"]["keep_n"] == 3
    planned = {p["id"] for p in report["plans"][site]["planned"]}
    assert planned == expected_victims(ids)
    assert report["plans"][quiet]["planned"] == []
    assert [p["name"] for p in report["plans"][quiet]["previews_expired"]] == ["pr-1"]
    assert index_ids(rt, site) == set(ids)  # a report: nothing tombstoned
