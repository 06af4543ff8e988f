"""The nightly cleanup against real Postgres and moto S3 (spec/durable.md §9.2, §9.3, Q4):
tombstone purge, outbox purge, gc-site backstop, and the Lambda handler that runs them."""

from __future__ import annotations

import hashlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from artemis import runtime
from artemis.db import audit, content, deploys, job_runs, outbox, tombstones
from artemis.db.lock import site_lock
from artemis.deadlines import Deadline
from artemis.jobs.purge import (
    DEFER_ALIASED,
    DEFER_SITE_MOVE_PENDING,
    DEFER_YOUNGER_DEPLOY_TRASH,
    NightlyFailed,
    PurgeFailed,
    PurgeResult,
    run_backstop,
    run_nightly,
    run_outbox_purge,
    run_tombstone_purge,
)
from artemis.keys import Dirname
from artemis.runtime import Runtime
from artemis_local.functions import LocalContext, load_handler
from tests.conftest import REPO_ROOT, SLUG_NOT_DIRNAME, base_env

NOW = datetime(2026, 5, 10, 3, 0, 0, tzinfo=UTC)
DAY = timedelta(days=1)
FILES = ("index.html", "app.js")

MakeRuntime = Callable[..., Runtime]


@pytest.fixture
def settings_env(database_url: str, moto_url: str, bucket_name: str) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        AWS_ENDPOINT_URL=moto_url,
        BUCKET_NAME=bucket_name,
        CLEANUP_BLAST_CAP="10",
        **SLUG_NOT_DIRNAME,
    )


@pytest.fixture
def make_rt(
    runtimes: Callable[[dict[str, str]], Runtime], settings_env: dict[str, str]
) -> MakeRuntime:
    return lambda **overrides: runtimes({**settings_env, **overrides})


@pytest.fixture
def rt(make_rt: MakeRuntime) -> Runtime:
    return make_rt()


def unique_site(slug_hint: str = "s") -> tuple[str, Dirname]:
    slug = f"{slug_hint}-{uuid.uuid4().hex[:8]}"
    return slug, Dirname(f"{slug}.example.org")


def new_id(sha: str | None = None) -> str:
    return f"20260401-120000-{sha or uuid.uuid4().hex[:7]}"


def put_files(rt: Runtime, prefix: str) -> None:
    for name in FILES:
        rt.bucket.put(prefix + name, name.encode(), "text/plain")


def seed_tombstone(
    rt: Runtime,
    site: Dirname,
    did: str,
    trashed_at: datetime,
    *,
    move_state: str = "moved",
    size: int = 100,
    live_remainder: bool = False,
) -> None:
    layout = rt.settings.key_layout
    if did == tombstones.SITE_PURGE_ID:
        put_files(rt, layout.site_trash_prefix(site) + "deploys/old/")
    else:
        put_files(rt, layout.deploy_trash_prefix(site, did))
    if live_remainder:
        put_files(rt, layout.deploy_prefix(site, did))
    with rt.db.transaction() as conn:
        conn.execute(
            "INSERT INTO tombstones (site, id, trashed_at, bytes, move_state)"
            " VALUES (%s, %s, %s, %s, %s)",
            [site, did, trashed_at, size, move_state],
        )


def keys(rt: Runtime, prefix: str) -> set[str]:
    return {o.key for o in rt.bucket.list_keys(prefix)}


def rows(rt: Runtime) -> set[tuple[str, str]]:
    with rt.db.transaction() as conn:
        return {(r[0], r[1]) for r in conn.execute("SELECT site, id FROM tombstones")}


def purge_audit(rt: Runtime, slug: str) -> list[audit.AuditRow]:
    with rt.db.transaction() as conn:
        return audit.query(conn, audit.AuditFilter(site=slug, action="gc.purge", limit=100))


def last_run(rt: Runtime, job: str) -> job_runs.JobRunRow:
    with rt.db.transaction() as conn:
        row = conn.execute("SELECT max(id) FROM job_runs WHERE job = %s", [job]).fetchone()
        assert row is not None and row[0] is not None
        got = job_runs.get(conn, int(row[0]))
    assert got is not None
    return got


def purge(rt: Runtime, **kwargs: Any) -> PurgeResult:
    kwargs.setdefault("deadline", Deadline.after(600))
    return run_tombstone_purge(rt, now=kwargs.pop("now", NOW), **kwargs)


@pytest.fixture
def trigger(database_url: str) -> Iterator[Callable[[str], None]]:
    """Install a trigger that refuses deleting matching tombstone rows (dropped afterwards)."""
    conn = psycopg.connect(database_url, autocommit=True)
    installed: list[bool] = []

    def install(when: str) -> None:
        conn.execute(
            "CREATE FUNCTION purge_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
            " $$ BEGIN RAISE EXCEPTION 'row clear refused'; END $$"
        )
        conn.execute(
            "CREATE TRIGGER purge_test_refuse BEFORE DELETE ON tombstones FOR EACH ROW"
            f" WHEN ({when}) EXECUTE FUNCTION purge_test_refuse()".encode()
        )
        installed.append(True)

    yield install
    if installed:
        drop(conn)
    conn.close()


def drop(conn: psycopg.Connection) -> None:
    conn.execute("DROP TRIGGER IF EXISTS purge_test_refuse ON tombstones")
    conn.execute("DROP FUNCTION IF EXISTS purge_test_refuse()")


# --- tombstone purge ------------------------------------------------------------------------


def test_v5_purge_deletes_trash_then_rows_only_past_recovery(rt: Runtime) -> None:
    slug, site = unique_site()
    old, young, edge = new_id(), new_id(), new_id()
    seed_tombstone(rt, site, old, NOW - 8 * DAY, size=123)
    seed_tombstone(rt, site, young, NOW - 6 * DAY)
    seed_tombstone(rt, site, edge, NOW - 7 * DAY)  # exactly at the cutoff: not yet expired
    layout = rt.settings.key_layout
    put_files(rt, layout.deploy_prefix(site, "20260501-000000-live"))  # a live deploy
    deleted: list[str] = []
    rt.bucket.client.meta.events.register(
        "before-parameter-build.s3.DeleteObjects",
        lambda params, **_: deleted.extend(o["Key"] for o in params["Delete"]["Objects"]),
    )

    result = purge(rt)

    assert result.purged == [f"{site}/{old}"] and result.bytes == 123
    assert result.expired == [f"{site}/{old}"] and result.failed == {}
    assert keys(rt, layout.deploy_trash_prefix(site, old)) == set()
    assert all(k.startswith(layout.deploy_trash_prefix(site, old)) for k in deleted)
    assert len(deleted) == len(FILES)
    assert rows(rt) == {(site, young), (site, edge)}
    assert len(keys(rt, layout.deploy_trash_prefix(site, young))) == len(FILES)
    assert len(keys(rt, layout.site_prefix(site))) == len(FILES)
    [entry] = purge_audit(rt, slug)
    assert (entry.actor, entry.deploy_id, entry.outcome, entry.detail) == (
        "system:gc",
        old,
        "success",
        {},
    )
    record = last_run(rt, "tombstone-purge")
    assert record.outcome == "succeeded" and record.counts["purged"] == 1
    assert record.plan["selected"] == [f"{site}/{old}"]


def test_v6d_cap_2_of_3_purges_the_two_most_overdue(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_BLAST_CAP="2")
    did = new_id()
    sites = {name: Dirname(f"{name}-{uuid.uuid4().hex[:6]}.example.org") for name in "xyz"}
    aa, bb = sorted([sites["y"], sites["z"]])
    seed_tombstone(rt, sites["x"], did, NOW - 20 * DAY)
    seed_tombstone(rt, bb, did, NOW - 10 * DAY)
    seed_tombstone(rt, aa, did, NOW - 10 * DAY)  # ties with bb: the smaller dirname first

    result = purge(rt)

    assert result.capped and "3 expired exceed cap 2" in result.reason
    assert result.selected == [f"{sites['x']}/{did}", f"{aa}/{did}"]
    assert result.purged == result.selected
    assert rows(rt) == {(bb, did)}


def test_v6d_the_cap_takes_the_most_overdue_even_when_their_names_sort_last(
    make_rt: MakeRuntime,
) -> None:
    """Names sort opposite to age here, so taking the first rows as read (by name) would
    purge the least overdue."""
    rt = make_rt(CLEANUP_BLAST_CAP="2")
    did = new_id()
    tag = uuid.uuid4().hex[:6]
    young, middle, old = (Dirname(f"{n}-{tag}.example.org") for n in ("a", "b", "c"))
    seed_tombstone(rt, young, did, NOW - 8 * DAY)
    seed_tombstone(rt, middle, did, NOW - 15 * DAY)
    seed_tombstone(rt, old, did, NOW - 30 * DAY)

    result = purge(rt)

    assert result.capped
    assert result.selected == [f"{old}/{did}", f"{middle}/{did}"]
    assert result.purged == result.selected
    assert rows(rt) == {(young, did)}


def test_v6_cap_zero_refuses_but_dry_run_reports_everything(make_rt: MakeRuntime) -> None:
    rt = make_rt(CLEANUP_BLAST_CAP="0")
    _, site = unique_site()
    ids = [new_id() for _ in range(3)]
    for i, did in enumerate(ids):
        seed_tombstone(rt, site, did, NOW - (10 + i) * DAY)
    refused = purge(rt)
    assert refused.capped and "cap 0" in refused.reason and refused.purged == []
    assert len(rows(rt)) == 3
    dry = purge(rt, dry_run=True)
    assert sorted(dry.expired) == sorted(f"{site}/{d}" for d in ids) and dry.purged == []
    assert len(rows(rt)) == 3
    assert all(keys(rt, rt.settings.key_layout.deploy_trash_prefix(site, d)) for d in ids)
    assert last_run(rt, "tombstone-purge").dry_run


def test_v10b_second_purge_purges_nothing_and_writes_no_duplicate_audit(rt: Runtime) -> None:
    slug, site = unique_site()
    ids = [new_id(), new_id()]
    for did in ids:
        seed_tombstone(rt, site, did, NOW - 9 * DAY)
    first = purge(rt)
    assert sorted(first.purged) == sorted(f"{site}/{d}" for d in ids)
    second = purge(rt)
    assert second.expired == [] and second.purged == [] and second.bytes == 0
    assert sorted(e.deploy_id for e in purge_audit(rt, slug)) == sorted(ids)


def test_crash_between_byte_delete_and_row_clear_is_completed_next_run(
    rt: Runtime, trigger: Callable[[str], None], database_url: str
) -> None:
    slug, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY)
    trigger("true")

    with pytest.raises(PurgeFailed) as info:
        purge(rt)

    assert list(info.value.result.failed) == [f"{site}/{did}"]
    assert keys(rt, rt.settings.key_layout.deploy_trash_prefix(site, did)) == set()  # bytes first
    assert rows(rt) == {(site, did)}  # the row survived: the next run retries
    assert last_run(rt, "tombstone-purge").outcome == "failed"
    assert purge_audit(rt, slug) == []
    with psycopg.connect(database_url, autocommit=True) as conn:
        drop(conn)

    again = purge(rt)

    assert again.purged == [f"{site}/{did}"] and rows(rt) == set()
    assert [e.deploy_id for e in purge_audit(rt, slug)] == [did]


def test_one_failing_tombstone_does_not_stop_the_others_and_fails_the_run(
    rt: Runtime, trigger: Callable[[str], None]
) -> None:
    did = new_id()
    bad = Dirname(f"a-bad-{uuid.uuid4().hex[:6]}.example.org")  # sorts first
    good = Dirname(f"z-good-{uuid.uuid4().hex[:6]}.example.org")
    seed_tombstone(rt, bad, did, NOW - 9 * DAY)
    seed_tombstone(rt, good, did, NOW - 9 * DAY)
    trigger(f"OLD.site = '{bad}'")

    with pytest.raises(PurgeFailed) as info:
        purge(rt)

    result = info.value.result
    assert result.purged == [f"{good}/{did}"]
    assert list(result.failed) == [f"{bad}/{did}"] and "row clear refused" in str(info.value)
    assert rows(rt) == {(bad, did)}
    record = last_run(rt, "tombstone-purge")
    assert record.outcome == "failed" and record.counts["purged"] == 1
    assert record.counts["failed"] == 1


def test_d14_site_level_tombstone_waits_for_younger_deploy_trash(rt: Runtime) -> None:
    slug, site = unique_site()
    redeployed = new_id()
    seed_tombstone(rt, site, tombstones.SITE_PURGE_ID, NOW - 10 * DAY)
    seed_tombstone(rt, site, redeployed, NOW - 2 * DAY)  # deleted after re-registration
    trash = rt.settings.key_layout.site_trash_prefix(site)
    everything = keys(rt, trash)
    assert len(everything) == 2 * len(FILES)

    deferred = purge(rt)

    assert deferred.purged == [] and deferred.failed == {}
    assert deferred.deferred == {f"{site}/": DEFER_YOUNGER_DEPLOY_TRASH}
    assert keys(rt, trash) == everything
    assert rows(rt) == {(site, ""), (site, redeployed)}

    later = purge(rt, now=NOW + 6 * DAY)  # both past the recovery window now

    assert sorted(later.purged) == sorted([f"{site}/", f"{site}/{redeployed}"])
    assert keys(rt, trash) == set() and rows(rt) == set()
    assert {e.deploy_id for e in purge_audit(rt, slug)} == {"", redeployed}


def test_site_level_tombstone_with_an_incomplete_move_is_deferred(rt: Runtime) -> None:
    _, site = unique_site()
    seed_tombstone(rt, site, tombstones.SITE_PURGE_ID, NOW - 10 * DAY, move_state="pending")
    result = purge(rt)
    assert result.deferred == {f"{site}/": DEFER_SITE_MOVE_PENDING}
    assert rows(rt) == {(site, "")}
    assert keys(rt, rt.settings.key_layout.site_trash_prefix(site))


def test_d10_live_remainder_of_a_pending_tombstone_is_deleted(rt: Runtime) -> None:
    _, site = unique_site()
    split, done = new_id(), new_id()
    seed_tombstone(rt, site, split, NOW - 9 * DAY, move_state="pending", live_remainder=True)
    seed_tombstone(rt, site, done, NOW - 9 * DAY)
    layout = rt.settings.key_layout
    assert keys(rt, layout.deploy_prefix(site, split))

    result = purge(rt)

    assert sorted(result.purged) == sorted([f"{site}/{split}", f"{site}/{done}"])
    assert keys(rt, layout.deploy_prefix(site, split)) == set()
    assert keys(rt, layout.deploy_trash_prefix(site, split)) == set()
    assert rows(rt) == set()


def test_a_pending_tombstone_a_named_preview_names_keeps_its_live_bytes(rt: Runtime) -> None:
    """Only a named preview's object names the deploy whose move never completed: its live
    bytes may be what that preview serves, so the purge waits (as GC's re-drive does)."""
    _, site = unique_site()
    split = new_id()
    seed_tombstone(rt, site, split, NOW - 9 * DAY, move_state="pending", live_remainder=True)
    layout = rt.settings.key_layout
    rt.bucket.put_alias(layout.alias_key(site, "pr-4"), split)

    result = purge(rt)

    assert result.deferred == {f"{site}/{split}": DEFER_ALIASED} and result.purged == []
    assert keys(rt, layout.deploy_prefix(site, split))
    assert keys(rt, layout.deploy_trash_prefix(site, split))
    assert rows(rt) >= {(site, split)}

    rt.bucket.delete_object(layout.alias_key(site, "pr-4"))  # the preview is gone
    assert purge(rt).purged == [f"{site}/{split}"]
    assert keys(rt, layout.deploy_prefix(site, split)) == set()


def test_tombstone_cleared_meanwhile_is_not_counted_deleted_or_audited(
    rt: Runtime, database_url: str
) -> None:
    """A restore holds the site lock while the purge waits; it then finds the row gone."""
    slug, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY)
    outcome: list[PurgeResult] = []
    with site_lock(database_url, site):
        worker = threading.Thread(target=lambda: outcome.append(purge(rt)))
        worker.start()
        wait_for_lock_waiter(database_url)
        with rt.db.transaction() as conn:  # what the restore does under the lock
            tombstones.clear(conn, site, did)
    worker.join(60)
    [result] = outcome
    assert result.expired == [f"{site}/{did}"] and result.purged == [] and result.bytes == 0
    assert keys(rt, rt.settings.key_layout.deploy_trash_prefix(site, did))  # bytes untouched
    assert purge_audit(rt, slug) == []


# --- the content index (issue 13) ----------------------------------------------------------


def index(rt: Runtime, site: Dirname, did: str) -> None:
    """The rows an upload of FILES into `did` writes."""
    with rt.db.transaction() as conn:
        content.record(conn, site, did, [
            content.FileDigest(n, hashlib.sha256(n.encode()).digest(), len(n)) for n in FILES
        ])  # fmt: skip


def indexed(rt: Runtime, site: Dirname) -> dict[str, int]:
    """deploy id → its content index rows."""
    with rt.db.transaction() as conn:
        got = conn.execute(
            "SELECT deploy_id, count(*) FROM deploy_files WHERE site = %s GROUP BY deploy_id",
            [site],
        ).fetchall()
    return {str(d): int(n) for d, n in got}


def test_purge_leaves_no_index_row_for_the_deploy_it_purges(rt: Runtime) -> None:
    """Its delete or GC dropped the rows with the tombstone; a row recorded since (an upload
    racing GC's collection of an abandoned deploy) goes with the tombstone's row."""
    _, site = unique_site()
    stale, clean, young, live = new_id(), new_id(), new_id(), new_id()
    seed_tombstone(rt, site, stale, NOW - 9 * DAY)
    seed_tombstone(rt, site, clean, NOW - 9 * DAY)
    seed_tombstone(rt, site, young, NOW - 2 * DAY)
    for did in (stale, young, live):
        index(rt, site, did)

    result = purge(rt)

    assert sorted(result.purged) == sorted([f"{site}/{stale}", f"{site}/{clean}"])
    assert result.index_rows_dropped == len(FILES)
    assert result.to_json()["index_rows_dropped"] == len(FILES)
    assert last_run(rt, "tombstone-purge").counts["index_rows_dropped"] == len(FILES)
    # The young tombstone waits for its own purge; a live deploy is never touched.
    assert indexed(rt, site) == {young: len(FILES), live: len(FILES)}
    again = purge(rt, now=NOW + 6 * DAY)  # idempotent: nothing left to drop but the young one
    assert again.purged == [f"{site}/{young}"] and again.index_rows_dropped == len(FILES)
    assert indexed(rt, site) == {live: len(FILES)}


def test_a_crash_before_the_row_clear_keeps_the_index_rows_until_the_next_run(
    rt: Runtime, trigger: Callable[[str], None], database_url: str
) -> None:
    """The rows leave in the transaction that clears the tombstone: a refused clear keeps
    both (the tombstone still hides the deploy from the index lookup), the next run drops
    both."""
    _, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY)
    index(rt, site, did)
    trigger("true")

    with pytest.raises(PurgeFailed) as info:
        purge(rt)

    assert info.value.result.index_rows_dropped == 0
    assert indexed(rt, site) == {did: len(FILES)}
    with rt.db.transaction() as conn:  # never a copy source meanwhile: it is tombstoned
        assert (
            content.sources(conn, site, [hashlib.sha256(b"app.js").digest()], excluding=new_id())
            == {}
        )
    with psycopg.connect(database_url, autocommit=True) as conn:
        drop(conn)

    again = purge(rt)

    assert again.purged == [f"{site}/{did}"] and again.index_rows_dropped == len(FILES)
    assert indexed(rt, site) == {} and rows(rt) == set()


def test_a_site_level_purge_keeps_the_rows_of_a_site_registered_again(rt: Runtime) -> None:
    """The site purge dropped the site's rows when it recorded its tombstone; rows under the
    dirname now belong to the site registered since, and stay."""
    _, site = unique_site()
    seed_tombstone(rt, site, tombstones.SITE_PURGE_ID, NOW - 10 * DAY)
    redeployed = new_id()
    index(rt, site, redeployed)

    result = purge(rt)

    assert result.purged == [f"{site}/"] and result.index_rows_dropped == 0
    assert indexed(rt, site) == {redeployed: len(FILES)}


def wait_for_lock_waiter(database_url: str) -> None:
    deadline = time.monotonic() + 20
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.05)
    raise AssertionError("the purge never waited for the site lock")


def test_out_of_time_purges_nothing_and_reports_the_backlog(rt: Runtime) -> None:
    _, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY)
    result = purge(rt, deadline=Deadline.after(0))
    assert result.incomplete and result.purged == [] and result.selected == [f"{site}/{did}"]
    assert rows(rt) == {(site, did)}
    assert purge(rt).purged == [f"{site}/{did}"]


# --- outbox purge ---------------------------------------------------------------------------


def test_outbox_purge_is_bounded_and_never_deletes_unpublished_rows(rt: Runtime) -> None:
    with rt.db.transaction() as conn:
        conn.execute(
            "INSERT INTO outbox (topic, payload, created_at, published_at)"
            " SELECT 'site.changed', '{}'::jsonb, now() - interval '40 days',"
            " now() - interval '31 days' FROM generate_series(1, 5003)"
        )
        conn.execute(
            "INSERT INTO outbox (topic, payload, created_at)"
            " SELECT 'site.changed', '{}'::jsonb, now() - interval '90 days'"
            " FROM generate_series(1, 5)"
        )
        conn.execute(
            "INSERT INTO outbox (topic, payload, published_at)"
            " SELECT 'site.changed', '{}'::jsonb, now() - interval '1 day'"
            " FROM generate_series(1, 3)"
        )

    assert run_outbox_purge(rt, dry_run=True) == 5000
    assert run_outbox_purge(rt) == 5000
    assert last_run(rt, "outbox-purge").counts == {
        "purged": 5000,
        "capped": 1,
        "job_runs_purged": 0,
    }
    assert run_outbox_purge(rt) == 3
    assert run_outbox_purge(rt) == 0
    with rt.db.transaction() as conn:
        left = conn.execute(
            "SELECT count(*) FILTER (WHERE published_at IS NULL), count(*) FROM outbox"
        ).fetchone()
    assert left == (5, 8)


# --- backstop -------------------------------------------------------------------------------


def test_backstop_enqueues_one_event_per_site_needing_work(rt: Runtime) -> None:
    _, moving = unique_site("a")  # a tombstone whose move never completed
    _, abandoned = unique_site("b")  # a pending deploy older than grace
    _, inflight = unique_site("c")  # a young pending deploy
    _, settled = unique_site("d")  # a finished tombstone
    seed_tombstone(rt, moving, new_id(), NOW - DAY, move_state="pending")
    seed_tombstone(rt, moving, new_id(), NOW - DAY, move_state="pending")
    seed_tombstone(rt, settled, new_id(), NOW - DAY)
    with rt.db.transaction() as conn:
        deploys.begin(conn, abandoned, new_id(), NOW - 4 * DAY)
        deploys.begin(conn, abandoned, new_id(), NOW - 5 * DAY)
        deploys.begin(conn, inflight, new_id(), NOW - timedelta(hours=1))
        deploys.upsert_finalized(conn, settled, new_id(), NOW - 30 * DAY, 10)

    enqueued = run_backstop(rt, now=NOW)

    assert enqueued == sorted([moving, abandoned])
    with rt.db.transaction() as conn:
        messages = outbox.claim(conn, limit=100)
    assert [(m.topic, m.payload) for m in messages] == [
        ("site.changed", {"site": site}) for site in enqueued
    ]
    record = last_run(rt, "gc-backstop")
    assert record.outcome == "succeeded" and record.counts == {"needing": 2, "enqueued": 2}


def test_backstop_is_bounded_per_run_and_rotates_across_days(rt: Runtime) -> None:
    sites = sorted(unique_site()[1] for _ in range(3))
    for site in sites:
        seed_tombstone(rt, site, new_id(), NOW - DAY, move_state="pending")
    assert run_backstop(rt, now=NOW, limit=0) == []
    seen: set[str] = set()
    for day in range(3):
        got = run_backstop(rt, now=NOW + day * DAY, limit=1)
        assert len(got) == 1
        seen.update(got)
    assert seen == set(sites)
    with rt.db.transaction() as conn:
        assert len(outbox.claim(conn, limit=100)) == 3


# --- the night and its handler ---------------------------------------------------------------


def test_nightly_runs_every_part_even_when_the_purge_fails(
    rt: Runtime, trigger: Callable[[str], None]
) -> None:
    _, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY, move_state="pending")
    with rt.db.transaction() as conn:
        conn.execute(
            "INSERT INTO outbox (topic, payload, published_at) VALUES"
            " ('site.changed', '{}'::jsonb, now() - interval '40 days')"
        )
    trigger("true")

    with pytest.raises(NightlyFailed) as info:
        run_nightly(rt, now=NOW, deadline=Deadline.after(600))

    result = info.value.result
    assert result.purge is not None and list(result.purge.failed) == [f"{site}/{did}"]
    assert result.outbox_purged == 1
    assert result.backstop == [site]  # its row survived with the move still pending
    assert len(result.errors) == 1 and result.errors[0].startswith("tombstone-purge")
    assert last_run(rt, "tombstone-purge").outcome == "failed"
    assert last_run(rt, "outbox-purge").outcome == "succeeded"
    assert last_run(rt, "gc-backstop").outcome == "succeeded"


def test_nightly_success_returns_a_json_summary(rt: Runtime) -> None:
    _, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, NOW - 9 * DAY)
    result = run_nightly(rt, now=NOW, deadline=Deadline.after(600))
    summary = json.loads(json.dumps(result.to_json()))
    assert summary["purge"]["purged"] == [f"{site}/{did}"]
    assert summary["outbox_purged"] == 0 and summary["backstop"] == [] and summary["errors"] == []


def test_handler_runs_the_night_on_a_scheduled_event(
    rt: Runtime, settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in settings_env.items():
        monkeypatch.setenv(name, value)
    _, site = unique_site()
    did = new_id()
    seed_tombstone(rt, site, did, datetime.now(UTC) - 8 * DAY)  # the handler reads the real clock
    event = json.loads((REPO_ROOT / "events" / "tombstone_purge-scheduled.json").read_text())
    runtime.reset()
    try:
        handler = load_handler("tombstone_purge")
        summary = handler(event, LocalContext("tombstone_purge", timeout_ms=900_000))
    finally:
        runtime.reset()
    assert json.loads(json.dumps(summary))["purge"]["purged"] == [f"{site}/{did}"]
    assert rows(rt) == set()
