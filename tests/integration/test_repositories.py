"""Repositories for deploys, aliases, tombstones, the registry and job runs, on real Postgres."""

from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from artemis.db import aliases, deploys, job_runs, sites, tombstones
from artemis.keys import Dirname, Slug

WWW = Dirname("www.freecode.camp")
T0 = datetime(2026, 4, 20, 14, 15, 22, tzinfo=UTC)


def test_begin_records_pending_and_never_demotes_active(conn: psycopg.Connection) -> None:
    assert deploys.begin(conn, WWW, "d1", T0)
    assert deploys.get(conn, WWW, "d1").state == "pending"  # type: ignore[union-attr]
    assert deploys.active_for_site(conn, WWW) == []  # pending rows are invisible to planning
    deploys.upsert_finalized(conn, WWW, "d1", T0 + timedelta(minutes=1), 1234)
    assert not deploys.begin(conn, WWW, "d1", T0 + timedelta(hours=1))
    row = deploys.get(conn, WWW, "d1")
    assert row is not None and row.state == "active" and row.has_marker and row.bytes == 1234
    assert row.mtime == T0 + timedelta(minutes=1)


def test_state_is_a_closed_set(conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "INSERT INTO deploys (site, id, mtime, state) VALUES ('x', 'y', now(), 'weird')"
        )


def test_expired_pending_and_release_stamp(conn: psycopg.Connection) -> None:
    deploys.begin(conn, WWW, "old", T0)
    deploys.begin(conn, WWW, "new", T0 + timedelta(days=2))
    assert [r.id for r in deploys.expired_pending(conn, WWW, T0 + timedelta(days=1))] == ["old"]
    deploys.upsert_finalized(conn, WWW, "old", T0, 1)
    deploys.stamp_release(conn, WWW, "old", "new", T0 + timedelta(days=3))
    deploys.stamp_release(conn, WWW, "new", "new", T0 + timedelta(days=4))  # same target: no stamp
    assert deploys.get(conn, WWW, "old").alias_released_at == T0 + timedelta(days=3)  # type: ignore[union-attr]
    assert deploys.get(conn, WWW, "new").alias_released_at is None  # type: ignore[union-attr]


def test_backfill_keeps_known_bytes_when_it_measured_none(conn: psycopg.Connection) -> None:
    deploys.upsert_finalized(conn, WWW, "d1", T0, 500)
    deploys.upsert_backfilled(conn, WWW, "d1", T0 + timedelta(hours=1), True, 0)
    assert deploys.get(conn, WWW, "d1").bytes == 500  # type: ignore[union-attr]
    deploys.upsert_backfilled(conn, WWW, "d1", T0, False, 700)
    row = deploys.get(conn, WWW, "d1")
    assert row is not None and row.bytes == 700 and not row.has_marker


def test_reindex_is_guarded_by_tombstones(conn: psycopg.Connection) -> None:
    tombstones.tombstone_deploy(conn, WWW, "gone", 10)
    assert not deploys.reindex(conn, WWW, "gone", T0, True)
    assert deploys.reindex(conn, WWW, "fine", T0, True)
    tombstones.record_site_purge(conn, WWW)
    assert not deploys.reindex(conn, WWW, "other", T0, True)
    assert deploys.get(conn, WWW, "other") is None


def test_tombstone_keeps_its_first_trashed_at(conn: psycopg.Connection) -> None:
    deploys.upsert_finalized(conn, WWW, "d1", T0, 10)
    tombstones.tombstone_deploy(conn, WWW, "d1", 10)
    first = tombstones.get(conn, WWW, "d1")
    assert first is not None and first.move_state == "pending"
    assert deploys.get(conn, WWW, "d1") is None
    tombstones.tombstone_deploy(conn, WWW, "d1", 99)
    again = tombstones.get(conn, WWW, "d1")
    assert again is not None and again.trashed_at == first.trashed_at and again.bytes == 10
    tombstones.mark_moved(conn, WWW, "d1")
    assert tombstones.get(conn, WWW, "d1").move_state == "moved"  # type: ignore[union-attr]
    assert tombstones.sites_with_pending_moves(conn) == []
    tombstones.tombstone_deploy(conn, WWW, "d1", 5)  # a repeated delete re-arms the move
    assert tombstones.get(conn, WWW, "d1").move_state == "pending"  # type: ignore[union-attr]
    tombstones.mark_moved(conn, WWW, "d1")
    assert tombstones.clear(conn, WWW, "d1")
    assert not tombstones.clear(conn, WWW, "d1")


def test_site_purge_record_drops_rows_and_keeps_trashed_at(conn: psycopg.Connection) -> None:
    deploys.upsert_finalized(conn, WWW, "d1", T0, 10)
    aliases.upsert(conn, WWW, "production", "d1", T0)
    tombstones.record_site_purge(conn, WWW)
    first = tombstones.get(conn, WWW, "")
    tombstones.mark_moved(conn, WWW, "")
    tombstones.record_site_purge(conn, WWW)
    again = tombstones.get(conn, WWW, "")
    assert first is not None and again is not None
    assert again.trashed_at == first.trashed_at  # DECISIONS Q11
    assert again.move_state == "pending"
    assert deploys.get(conn, WWW, "d1") is None and aliases.for_site(conn, WWW) == []
    assert tombstones.sites_with_pending_moves(conn) == [WWW]


def test_expired_tombstones_in_site_order(conn: psycopg.Connection) -> None:
    tombstones.tombstone_deploy(conn, Dirname("b"), "x", 0)
    tombstones.tombstone_deploy(conn, Dirname("a"), "y", 0)
    conn.execute("UPDATE tombstones SET trashed_at = now() - interval '8 days' WHERE site = 'b'")
    cutoff = datetime.now(UTC) - timedelta(days=7)
    assert [(t.site, t.id) for t in tombstones.expired(conn, cutoff, 10)] == [("b", "x")]
    assert [t.id for t in tombstones.for_site(conn, Dirname("a"))] == ["y"]


def test_alias_upsert_returns_the_previous_target(conn: psycopg.Connection) -> None:
    assert aliases.upsert(conn, WWW, "production", "d1", T0) is None
    assert aliases.upsert(conn, WWW, "production", "d2", T0 + timedelta(minutes=1)) == "d1"
    aliases.upsert(conn, WWW, "preview", "d3", T0)
    rows = aliases.for_site(conn, WWW)
    assert [(r.name, r.deploy_id) for r in rows] == [("preview", "d3"), ("production", "d2")]
    aliases.upsert(conn, WWW, "staging", "d4", T0)  # a named preview's label is a name too
    with pytest.raises(psycopg.errors.CheckViolation):  # one the alias rule refuses is not
        conn.execute("INSERT INTO aliases (site, name, deploy_id) VALUES ('x', 'Stag_ing', 'd')")
    assert aliases.delete_for_site(conn, WWW) == 3


def test_known_dirnames_unions_every_table(conn: psycopg.Connection) -> None:
    deploys.begin(conn, Dirname("c"), "d", T0)
    aliases.upsert(conn, Dirname("a"), "production", "d", T0)
    tombstones.tombstone_deploy(conn, Dirname("b"), "d", 0)
    assert deploys.known_dirnames(conn) == ["a", "b", "c"]


def test_registry_crud(conn: psycopg.Connection) -> None:
    row = sites.insert(conn, Slug("www"), ["staff", "web"], "local-staff")
    assert row.teams == ["staff", "web"] and row.created_by == "local-staff"
    with pytest.raises(sites.SiteExists):
        sites.insert(conn, Slug("www"), ["web"], "someone")
    updated = sites.update_teams(conn, Slug("www"), ["web"])
    assert updated is not None and updated.teams == ["web"] and updated.updated_at >= row.updated_at
    assert sites.update_teams(conn, Slug("nope"), ["web"]) is None
    assert [s.slug for s in sites.list_all(conn)] == ["www"]
    assert sites.latest_change(conn)[0] == 1
    assert sites.delete(conn, Slug("www"))
    assert sites.get(conn, Slug("www")) is None


def test_job_runs_record_plan_and_outcome(conn: psycopg.Connection) -> None:
    run = job_runs.start(conn, "gc-site", "www", dry_run=True)
    job_runs.record_plan(conn, run, [{"id": "d1", "reason": "expired"}])
    job_runs.finish(conn, run, "succeeded", {"reclaimed": 1})
    row = job_runs.get(conn, run)
    assert row is not None and row.outcome == "succeeded" and row.finished_at is not None
    assert row.plan == [{"id": "d1", "reason": "expired"}] and row.counts == {"reclaimed": 1}
    assert row.dry_run
    job_runs.finish(conn, job_runs.start(conn, "drift-detect"), "failed", error="boom")
    assert job_runs.outcome_counts(conn) == [
        ("drift-detect", "failed", 1),
        ("gc-site", "succeeded", 1),
    ]


def test_job_runs_purge_removes_only_old_finished_runs(conn: psycopg.Connection) -> None:
    old = job_runs.start(conn, "relay")
    job_runs.finish(conn, old, "succeeded")
    conn.execute(
        "UPDATE job_runs SET finished_at = now() - interval '40 days' WHERE id = %s", [old]
    )
    running = job_runs.start(conn, "relay")
    conn.execute(
        "UPDATE job_runs SET started_at = now() - interval '40 days' WHERE id = %s", [running]
    )
    recent = job_runs.start(conn, "relay")
    job_runs.finish(conn, recent, "succeeded")
    assert job_runs.purge_finished(conn, 30) == 1
    assert job_runs.get(conn, old) is None
    assert job_runs.get(conn, running) is not None and job_runs.get(conn, recent) is not None
