"""gc-site and named previews (issue 14, "previews expire"), against real Postgres and moto S3.

A named preview protects its deploy while it is younger than PREVIEW_TTL; at the TTL the
site's GC run unpublishes it (object, then row, release stamp and `site.changed` in one
transaction), audits it as `system:gc` and counts it in the run's `job_runs` row. The deploy
it freed is kept through the serve cache TTL by the release stamp, then falls to retention.
"""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest

from artemis.db import aliases, audit, deploys, tombstones
from artemis.db.lock import site_lock
from artemis.deadlines import Deadline
from artemis.jobs.gc_site import GcResult, run_gc_site
from artemis.retention import Plan
from artemis.runtime import Runtime
from tests.integration.conftest import MakeRuntime
from tests.integration.test_gc_site import (
    SITE,
    SLUG,
    T0,
    assert_in_trash,
    assert_live,
    deploy_id,
    index_ids,
    job_row,
    seed_deploy,
    tombstone_rows,
)

TTL = timedelta(days=14)
PREVIEW_AT = T0 + timedelta(days=1)  # when the preview last moved
BEFORE_TTL = PREVIEW_AT + TTL - timedelta(seconds=1)  # past grace and retention of T0's deploys
AT_TTL = PREVIEW_AT + TTL
CACHE_TTL = timedelta(seconds=15)


@pytest.fixture
def make_rt(job_runtime: MakeRuntime) -> MakeRuntime:
    # One recent deploy kept, so a deploy held only by a preview is what retention judges.
    settings = {"CLEANUP_RECENT_KEEP": "1", "SERVE_CACHE_TTL": "15s", "PREVIEW_TTL": "336h"}
    return lambda **overrides: job_runtime(**{**settings, **overrides})


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt()


def run(rt: Runtime, now: datetime, **kwargs: Any) -> GcResult:
    kwargs.setdefault("deadline", Deadline.after(600))
    return run_gc_site(rt, SITE, now=now, **kwargs)


def seed(rt: Runtime) -> tuple[str, str]:
    """Two finalized deploys: production on the newer (the keep-1 slot), `pr-1` on the older."""
    sha = uuid.uuid4().hex[:7]
    old, new = deploy_id(T0, sha), deploy_id(T0 + timedelta(hours=1), sha)
    seed_deploy(rt, SITE, old, T0)
    seed_deploy(rt, SITE, new, T0 + timedelta(hours=1))
    layout = rt.settings.key_layout
    rt.bucket.put_alias(layout.alias_key(SITE, "production"), new)
    rt.bucket.put_alias(layout.alias_key(SITE, "pr-1"), old)
    with rt.db.transaction() as conn:
        aliases.upsert(conn, SITE, "production", new, T0 + timedelta(hours=1))
        aliases.upsert(conn, SITE, "pr-1", old, PREVIEW_AT, by="octocat")
    return old, new


def preview_object(rt: Runtime, name: str = "pr-1") -> str | None:
    return rt.bucket.get_alias(rt.settings.key_layout.alias_key(SITE, name))


def preview_row(rt: Runtime, name: str = "pr-1") -> aliases.AliasRow | None:
    with rt.db.transaction() as conn:
        return aliases.get(conn, SITE, name)


def expiry_audit(rt: Runtime, did: str) -> list[audit.AuditRow]:
    with rt.db.transaction() as conn:
        rows = audit.query(
            conn, audit.AuditFilter(site=SLUG, action="site.preview.expire", limit=500)
        )
    return [r for r in rows if r.deploy_id == did]


def site_events(rt: Runtime) -> int:
    with rt.db.transaction() as conn:
        row = conn.execute(
            "SELECT count(*) FROM outbox WHERE topic = 'site.changed' AND payload->>'site' = %s",
            [SITE],
        ).fetchone()
    assert row is not None
    return int(row[0])


def released_at(rt: Runtime, did: str) -> datetime | None:
    with rt.db.transaction() as conn:
        row = deploys.get(conn, SITE, did)
    assert row is not None
    return row.alias_released_at


# --- the scenario -----------------------------------------------------------------------------


def test_a_preview_protects_its_deploy_then_expires_and_the_deploy_falls_to_retention(
    rt: Runtime,
) -> None:
    old, new = seed(rt)

    young = run(rt, BEFORE_TTL)
    assert young.planned == [] and young.tombstoned == [] and young.previews_expired == []
    assert preview_object(rt) == old
    assert_live(rt, old)

    events = site_events(rt)
    expired = run(rt, AT_TTL)

    assert expired.previews_expired == ["pr-1"] and expired.previews_kept == []
    assert preview_object(rt) is None
    assert preview_row(rt) is None
    assert preview_object(rt, "production") == new  # the fixed channel is untouched
    assert site_events(rt) == events + 1
    assert released_at(rt, old) == AT_TTL
    # Released now: the serve cache may still hold it, so it is not collected this run.
    assert expired.tombstoned == [] and expired.planned == []
    assert_live(rt, old)
    [entry] = expiry_audit(rt, old)
    assert (entry.actor, entry.outcome, entry.site) == ("system:gc", "success", SLUG)
    assert entry.detail == {"name": "pr-1", "deployId": old, "updatedAt": PREVIEW_AT.isoformat()}
    record = job_row(rt, expired.run_id)
    assert record.counts["previews_expired"] == 1 and record.counts["previews_kept"] == 0
    assert record.plan["previews_expired"] == [
        {"name": "pr-1", "deployId": old, "updatedAt": PREVIEW_AT.isoformat()}
    ]

    later = run(rt, AT_TTL + CACHE_TTL)
    assert later.tombstoned == [old] and later.previews_expired == []
    assert_in_trash(rt, old)
    assert_live(rt, new)
    assert len(expiry_audit(rt, old)) == 1  # expired once


def test_a_dry_run_reports_the_expiry_and_changes_nothing(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_DRY_RUN="true")
    old, _ = seed(rt)
    events = site_events(rt)
    result = run(rt, AT_TTL)
    assert result.dry_run and result.previews_expired == []
    assert result.plan is not None
    assert [p.name for p in result.plan.expired_previews] == ["pr-1"]
    assert result.plan.planned == ()  # the same plan a live run executes: released now, kept
    assert preview_object(rt) == old and preview_row(rt) is not None
    assert released_at(rt, old) is None and site_events(rt) == events
    assert expiry_audit(rt, old) == []
    assert job_row(rt, result.run_id).plan["previews_expired"][0]["name"] == "pr-1"


def test_the_blast_cap_does_not_hold_back_an_expiry(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_BLAST_CAP="0")
    old, _ = seed(rt)
    result = run(rt, AT_TTL)
    assert result.previews_expired == ["pr-1"] and preview_object(rt) is None
    assert_live(rt, old)


# --- races and crashes ------------------------------------------------------------------------


def test_a_preview_moved_after_planning_is_kept(rt: Runtime) -> None:
    """What a finalize that moved the preview between the plan and the lock leaves behind."""
    old, new = seed(rt)

    def finalize_moves_it(plan: Plan) -> None:
        assert [p.name for p in plan.expired_previews] == ["pr-1"]
        rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "pr-1"), new)
        with rt.db.transaction() as conn:
            aliases.upsert(conn, SITE, "pr-1", new, AT_TTL, by="octocat")

    result = run(rt, AT_TTL, after_plan=finalize_moves_it)

    assert result.previews_expired == [] and result.previews_kept == ["pr-1"]
    assert preview_object(rt) == new
    row = preview_row(rt)
    assert row is not None and row.deploy_id == new and row.updated_at == AT_TTL
    assert expiry_audit(rt, old) == []


def test_expiry_waits_for_a_finalize_holding_the_site_lock_and_keeps_what_it_moved(
    rt: Runtime,
) -> None:
    """The real interleaving: GC plans the expiry, then blocks on the site lock a finalize
    holds while it moves the preview; once the lock is free GC re-reads and keeps it."""
    old, new = seed(rt)
    _ = rt.db, rt.bucket  # build the shared clients before the thread uses them
    results: list[GcResult] = []
    errors: list[BaseException] = []

    def gc() -> None:
        try:
            results.append(run(rt, AT_TTL))
        except BaseException as err:  # surfaced below
            errors.append(err)

    with site_lock(rt.db.conninfo, SITE):  # what finalize holds around its alias move
        worker = threading.Thread(target=gc)
        worker.start()
        deadline = time.monotonic() + 20
        while not planned_runs(rt) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert planned_runs(rt), "GC never recorded its plan"
        worker.join(timeout=1.0)
        assert worker.is_alive()  # planned, now waiting for the lock
        assert preview_object(rt) == old
        rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "pr-1"), new)
        with rt.db.transaction() as conn:
            aliases.upsert(conn, SITE, "pr-1", new, AT_TTL, by="octocat")
    worker.join(timeout=60)
    assert errors == [] and len(results) == 1
    assert results[0].previews_kept == ["pr-1"] and results[0].previews_expired == []
    assert preview_object(rt) == new
    row = preview_row(rt)
    assert row is not None and row.deploy_id == new
    assert expiry_audit(rt, old) == []


def planned_runs(rt: Runtime) -> list[Any]:
    """The plans recorded by gc-site runs of this site that have not finished yet."""
    with rt.db.transaction() as conn:
        return conn.execute(
            "SELECT plan FROM job_runs WHERE job = 'gc-site' AND site = %s"
            " AND plan IS NOT NULL AND finished_at IS NULL",
            [SITE],
        ).fetchall()


def test_a_preview_whose_object_names_another_deploy_is_kept(rt: Runtime) -> None:
    """The row lags a move (drift): the object serves, so GC leaves it to reconcile."""
    old, new = seed(rt)
    rt.bucket.put_alias(rt.settings.key_layout.alias_key(SITE, "pr-1"), new)
    result = run(rt, AT_TTL)
    assert result.previews_kept == ["pr-1"] and preview_object(rt) == new
    assert preview_row(rt) is not None
    assert old in index_ids(rt)


@contextlib.contextmanager
def alias_delete_refused(database_url: str, name: str) -> Iterator[None]:
    """While open, Postgres refuses deleting the alias row `name` (a crash after the object)."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION gc_test_refuse_alias() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'alias delete refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER gc_test_refuse_alias BEFORE DELETE ON aliases FOR EACH ROW"
            f" WHEN (OLD.name = '{name}') EXECUTE FUNCTION gc_test_refuse_alias()"
        )
        try:
            yield
        finally:
            conn.execute("DROP TRIGGER gc_test_refuse_alias ON aliases")
            conn.execute("DROP FUNCTION gc_test_refuse_alias()")


def test_a_crash_between_the_object_and_the_row_is_finished_by_the_next_run(
    rt: Runtime, database_url: str
) -> None:
    old, _ = seed(rt)
    events = site_events(rt)
    with alias_delete_refused(database_url, "pr-1"), pytest.raises(psycopg.Error):
        run(rt, AT_TTL)
    assert preview_object(rt) is None  # unpublished
    assert preview_row(rt) is not None  # the row, the stamp and the event did not land
    assert released_at(rt, old) is None and site_events(rt) == events
    assert expiry_audit(rt, old) == []

    again = run(rt, AT_TTL + timedelta(minutes=1))

    assert again.previews_expired == ["pr-1"]
    assert preview_row(rt) is None
    assert released_at(rt, old) == AT_TTL + timedelta(minutes=1)
    assert site_events(rt) == events + 1
    assert len(expiry_audit(rt, old)) == 1
    assert_live(rt, old)


# --- "aliased" knows named previews ------------------------------------------------------------


def test_a_deploy_only_a_named_preview_object_names_is_never_moved(rt: Runtime) -> None:
    """No row (the index lags): the plan does not protect it, the re-check on the objects does."""
    old, _ = seed(rt)
    with rt.db.transaction() as conn:
        aliases.delete(conn, SITE, "pr-1")
    result = run(rt, BEFORE_TTL)
    assert result.planned == [old] and result.skipped_aliased == [old]
    assert_live(rt, old)
    assert tombstone_rows(rt) == {}


def test_a_redrive_never_moves_a_deploy_only_a_named_preview_names(rt: Runtime) -> None:
    old, _ = seed(rt)
    with rt.db.transaction() as conn:  # a delete's tombstone whose move never ran (drift)
        tombstones.tombstone_deploy(conn, SITE, old, 0)
    result = run(rt, BEFORE_TTL)
    assert result.redrive_blocked == [old] and result.redriven == []
    assert_live(rt, old)


def test_a_site_purge_is_not_redriven_while_a_named_preview_object_is_live(rt: Runtime) -> None:
    old, _ = seed(rt)
    layout = rt.settings.key_layout
    for name in ("production", "preview"):
        rt.bucket.delete_object(layout.alias_key(SITE, name))
    with rt.db.transaction() as conn:
        tombstones.record_site_purge(conn, SITE)  # drops the rows; pr-1's object remains
    result = run(rt, BEFORE_TTL)
    assert result.redrive_blocked == [""] and result.redriven == []
    assert preview_object(rt) == old
    assert_live(rt, old)


# --- the invariant over a run of clock steps ----------------------------------------------------


def test_invariant_no_deploy_an_alias_or_a_live_preview_names_ever_leaves_the_live_prefix(
    rt: Runtime,
) -> None:
    """Twelve deploys, production on the 5th-newest, named previews of different ages on old
    deploys; GC at clock steps across their TTLs. After every run: each deploy an alias object
    names, or a preview row younger than the TTL names, is live and has no tombstone; each
    preview row at or past the TTL at that run's clock is gone."""
    sha = uuid.uuid4().hex[:7]
    ids = [deploy_id(T0 + timedelta(hours=i), sha) for i in range(12)]
    for i, did in enumerate(ids):
        seed_deploy(rt, SITE, did, T0 + timedelta(hours=i))
    layout = rt.settings.key_layout
    rt.bucket.put_alias(layout.alias_key(SITE, "production"), ids[-5])
    moved = {"pr-a": (ids[0], 1), "pr-b": (ids[1], 5), "pr-c": (ids[2], 9), "pr-d": (ids[0], 20)}
    with rt.db.transaction() as conn:
        aliases.upsert(conn, SITE, "production", ids[-5], T0)
        for name, (did, day) in moved.items():
            rt.bucket.put_alias(layout.alias_key(SITE, name), did)
            aliases.upsert(conn, SITE, name, did, T0 + timedelta(days=day), by="octocat")

    for day in (10, 15, 16, 19, 23, 24, 34, 40):
        now = T0 + timedelta(days=day)
        run(rt, now)
        objects = {
            target
            for name in ("production", *moved)
            if (target := rt.bucket.get_alias(layout.alias_key(SITE, name)))
        }
        with rt.db.transaction() as conn:
            rows = aliases.for_site(conn, SITE)
        young = {r.deploy_id for r in rows if now - r.updated_at < TTL}
        assert all(now - r.updated_at < TTL for r in rows if r.name in moved), day
        stones = tombstone_rows(rt)
        for did in objects | young:
            assert did not in stones, (day, did)
            assert_live(rt, did)
    assert {r.name for r in rows} == {"production"}  # every preview has expired
    # Past the cache TTL of the last release, only the keep-1 newest and production remain.
    run(rt, T0 + timedelta(days=40) + CACHE_TTL)
    assert set(tombstone_rows(rt)) == set(ids) - {ids[-1], ids[-5]}
