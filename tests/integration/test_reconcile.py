"""Reconcile repair against real Postgres and moto S3 (spec/durable.md §9.5; V1 d, V3 c, V5, V6,
V10, E4). Fixtures use the production-like template, so slugs and dirnames differ."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from artemis.db.lock import SiteLockSession
from artemis.deadlines import Deadline
from artemis.jobs.drift import run_drift
from artemis.jobs.reconcile import (
    EmptyListingFault,
    ReconcileFailed,
    ReconcileReport,
    UnknownSite,
    run_reconcile,
)
from artemis.keys import MARKER_NAME, Dirname
from artemis.runtime import Runtime
from tests.integration.test_drift import (
    OLD,
    PAGES,
    YOUNG,
    Fleet,
    IndexDriftSeed,
    make_runtime,
    run_admin,
    runtime_env,
    seed_index_drift,
)


def reconcile(
    f: Fleet, name: str, *, apply: bool, rt: Runtime | None = None, seconds: float = 600
) -> ReconcileReport:
    return run_reconcile(rt or f.rt, name, apply=apply, now=f.now, deadline=Deadline.after(seconds))


def tombstone_rows(f: Fleet, site: Dirname) -> list[tuple[Any, ...]]:
    return f.sql("SELECT id, bytes, move_state FROM tombstones WHERE site = %s ORDER BY id", [site])


def active_ids(f: Fleet, site: Dirname) -> list[str]:
    rows = f.sql("SELECT id FROM deploys WHERE site = %s AND state = 'active' ORDER BY id", [site])
    return [r[0] for r in rows]


def audit_rows(f: Fleet, slug_or_site: str) -> list[tuple[Any, ...]]:
    return f.sql(
        "SELECT actor, action, deploy_id, outcome, detail, request_id FROM audit_log"
        " WHERE site = %s ORDER BY id",
        [slug_or_site],
    )


def keys_under(f: Fleet, prefix: str) -> list[str]:
    return [k for k in f.all_keys() if k.startswith(prefix)]


def healthy_site(f: Fleet, name: str = "www") -> tuple[Dirname, list[str]]:
    f.register(name)
    site = f.site(name)
    ids = [f.deploy(site, timedelta(days=d)) for d in (9, 6, 2)]
    f.alias_object(site, "production", ids[-1])
    f.alias_row(site, "production", ids[-1])
    return site, ids


# --- each repair kind ---------------------------------------------------------------------------


def test_dry_run_reports_the_plan_and_writes_nothing(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan, lost = fleet.did(OLD), fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    fleet.put_bytes(site, lost, marker=True)
    before = fleet.state()
    report = reconcile(fleet, fleet.slug("www"), apply=False)
    assert report.dry_run and report.complete
    assert report.plan is not None
    assert report.plan.report.tombstone == (orphan,) and report.plan.report.reindex == (lost,)
    assert report.tombstoned == report.reindexed == report.pruned == []
    assert fleet.state() == before
    (run,) = fleet.job_runs("reconcile")
    assert run[0] == "succeeded" and run[1] is True and run[4] == site
    assert run[2]["planned_tombstone"] == 1 and run[2]["tombstoned"] == 0


def test_reindex_repairs_classes_1_and_3_with_the_guarded_write(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    aliased, plain = fleet.did(OLD), fleet.did(timedelta(days=4))
    fleet.put_bytes(site, aliased, marker=True)
    fleet.alias_object(site, "preview", aliased)  # class 1
    fleet.alias_row(site, "preview", aliased)  # (the row agrees: no alias repair here)
    fleet.put_bytes(site, plain, marker=True)  # class 3
    report = reconcile(fleet, fleet.slug("www"), apply=True)
    assert report.reindexed == sorted([aliased, plain]) and report.complete
    rows = fleet.sql(
        "SELECT id, has_marker, state, bytes, mtime FROM deploys WHERE id = ANY(%s) ORDER BY id",
        [[aliased, plain]],
    )
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        (i, True, "active", 0) for i in sorted([aliased, plain])
    ]
    assert {r[0]: r[4] for r in rows}[plain] == fleet.now - timedelta(days=4)  # id-parsed
    assert audit_rows(fleet, fleet.slug("www")) == []  # reindex writes no audit row


def test_v5_tombstone_repair_moves_the_orphan_to_trash_with_measured_bytes(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    size = fleet.put_bytes(site, orphan, marker=False, files={"a.html": b"12345", "b.js": b"67"})
    live = fleet.layout.deploy_prefix(site, orphan)
    report = reconcile(fleet, fleet.slug("www"), apply=True)
    assert report.tombstoned == [orphan]
    assert keys_under(fleet, live) == []
    trash = fleet.layout.deploy_trash_prefix(site, orphan)
    assert keys_under(fleet, trash) == [trash + "a.html", trash + "b.js"]  # moved, not deleted
    assert tombstone_rows(fleet, site) == [(orphan, size, "moved")]
    (row,) = audit_rows(fleet, fleet.slug("www"))
    assert row[:4] == ("system:reconcile", "gc.reconcile", orphan, "success")
    assert row[4] == {"bytes": size, "moved": True, "objects": 2} and row[5] == ""


def test_prune_repair_drops_the_ghost_row_and_audits_it(fleet: Fleet) -> None:
    site, ids = healthy_site(fleet)
    ghost = fleet.did(OLD)
    fleet.put_row(site, ghost, age=OLD)
    report = reconcile(fleet, fleet.slug("www"), apply=True)
    assert report.pruned == [ghost]
    assert active_ids(fleet, site) == sorted(ids)
    (row,) = audit_rows(fleet, fleet.slug("www"))
    assert row[:4] == ("system:reconcile", "gc.reconcile.prune", ghost, "success")


def test_aliased_missing_deploys_are_reported_and_never_touched(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    unmarked, rowonly = fleet.did(OLD), fleet.did(OLD)
    fleet.put_bytes(site, unmarked, marker=False)  # class 2
    fleet.alias_object(site, "preview", unmarked)
    fleet.sql("DELETE FROM aliases WHERE site = %s", [site])
    fleet.put_row(site, rowonly)  # class 5: production row now names it
    fleet.alias_row(site, "production", rowonly)
    before = fleet.state()
    report = reconcile(fleet, fleet.slug("www"), apply=True)
    assert sorted(report.aliased_missing) == sorted([unmarked, rowonly])
    assert report.tombstoned == report.pruned == []
    assert [r[:2] for r in fleet.state()["deploys"]] == [r[:2] for r in before["deploys"]]
    assert fleet.state()["keys"] == before["keys"]
    # The rows follow the objects (the bucket is the truth): nothing an alias names is removed.
    assert report.alias_rows_written == ["preview", "production"]


def test_v3c_young_orphan_and_young_ghost_row_are_left_alone(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    young_orphan, young_ghost = fleet.did(YOUNG), fleet.did(YOUNG)
    fleet.put_bytes(site, young_orphan, marker=False)
    fleet.put_row(site, young_ghost, age=YOUNG)
    before = fleet.state()
    report = reconcile(fleet, fleet.slug("www"), apply=True)
    assert report.plan is not None
    assert report.plan.classification.deferred == tuple(sorted([young_orphan, young_ghost]))
    assert report.tombstoned == report.pruned == []
    assert fleet.state() == before


def test_v10_a_second_apply_finds_no_drift(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    fleet.put_bytes(site, fleet.did(OLD), marker=False)
    fleet.put_bytes(site, fleet.did(OLD), marker=True)
    fleet.put_row(site, fleet.did(OLD))
    first = reconcile(fleet, fleet.slug("www"), apply=True)
    assert len(first.tombstoned) == len(first.reindexed) == len(first.pruned) == 1
    second = reconcile(fleet, fleet.slug("www"), apply=True)
    assert second.plan is not None and second.plan.classification.is_clean()
    assert second.tombstoned == second.reindexed == second.pruned == []


# --- the content index ---------------------------------------------------------------------------


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def seed_index_repairs(f: Fleet) -> IndexDriftSeed:
    """The drift sweep's index fixture, plus a finalized deploy that lost the row of a file
    overwritten after finalize: its marker digest describes bytes that are no longer there."""
    seeded = seed_index_drift(f)
    changed = f.indexed_deploy(seeded.site, PAGES, age=timedelta(days=3), rows=False)
    f.index_rows(seeded.site, changed, {p: PAGES[p] for p in ("about.html", "app.js")})
    key = f.layout.deploy_prefix(seeded.site, changed) + "index.html"
    f.bucket.client.put_object(Bucket=f.bucket_name, Key=key, Body=b"<h1>rewritten</h1>")
    seeded.ids["changed"] = changed
    return seeded


def test_a_dry_run_plans_the_index_repair_and_writes_nothing(fleet: Fleet) -> None:
    seeded = seed_index_repairs(fleet)
    before = fleet.state()
    report = reconcile(fleet, fleet.slug("idx"), apply=False)
    assert fleet.state() == before
    counts = report.counts()
    assert (counts["index_orphan_rows"], counts["index_missing_rows"]) == (4, 3)
    assert (counts["index_restore_from_marker"], counts["index_deferred_to_backfill"]) == (2, 1)
    assert counts["index_rows_deleted"] == counts["index_rows_restored"] == 0
    planned = report.to_json()["planned"]
    assert planned["index_missing_sample"] == [
        f"{seeded.ids['changed']}/index.html",
        f"{seeded.ids['lost']}/about.html",
        f"{seeded.ids['lost']}/index.html",
    ]
    (run,) = fleet.job_runs("reconcile")
    assert run[2]["index_orphan_rows"] == 4 and run[2]["index_rows_deleted"] == 0


def test_apply_deletes_orphan_rows_and_restores_missing_ones_from_the_marker(
    fleet: Fleet,
) -> None:
    seeded = seed_index_repairs(fleet)
    ids, site = seeded.ids, seeded.site
    report = reconcile(fleet, fleet.slug("idx"), apply=True)
    assert report.complete and report.error is None
    assert (report.index_rows_deleted, report.index_rows_restored) == (4, 2)
    rows = fleet.content_rows(site)
    by_deploy: dict[str, list[tuple[str, str, int]]] = {}
    for deploy_id, path, digest, size in rows:
        by_deploy.setdefault(deploy_id, []).append((path, digest, size))
    full = sorted((p, sha(b), len(b)) for p, b in PAGES.items())
    assert by_deploy[ids["clean"]] == full
    assert by_deploy[ids["ghost_path"]] == full  # gone.css dropped
    assert by_deploy[ids["lost"]] == full  # restored from the marker, with the listed sizes
    # The overwritten file's marker digest is not trusted: left for backfill, no row.
    assert [p for p, _, _ in by_deploy[ids["changed"]]] == ["about.html", "app.js"]
    assert ids["tombstoned"] not in by_deploy and ids["nothing"] not in by_deploy
    assert by_deploy[ids["pending"]] == [("late.html", sha(b"<p>late</p>"), 11)]  # in flight
    assert ids["legacy"] not in by_deploy  # backfill's, not reconcile's
    (run,) = fleet.job_runs("reconcile")
    assert run[2]["index_rows_deleted"] == 4 and run[2]["index_rows_restored"] == 2
    again = reconcile(fleet, fleet.slug("idx"), apply=True)
    counts = again.counts()
    assert (counts["index_orphan_rows"], counts["index_missing_rows"]) == (0, 1)
    assert (counts["index_deferred_to_backfill"], counts["index_rows_restored"]) == (1, 0)
    assert fleet.content_rows(site) == rows


def test_the_in_lock_read_keeps_an_orphan_row_whose_path_appeared_meanwhile(
    fleet: Fleet,
) -> None:
    fleet.register("race")
    site = fleet.site("race")
    deploy_id = fleet.indexed_deploy(site, PAGES)
    fleet.index_rows(site, deploy_id, {"late.css": b"a{}"})
    prefix = fleet.layout.deploy_prefix(site, deploy_id)

    def change() -> None:  # the object arrives after the snapshot (a late presigned POST)
        fleet.bucket.client.put_object(
            Bucket=fleet.bucket_name, Key=prefix + "late.css", Body=b"a{}"
        )

    report = with_change_while_locked(fleet, site, change)
    assert report.index_plan.drift.orphans == {deploy_id: ("late.css",)}  # planned …
    assert report.index_rows_deleted == 0  # … but the path is listed now
    assert ("late.css", sha(b"a{}"), 3) in [r[1:] for r in fleet.content_rows(site)]


# --- the in-lock second read (V1 d and friends) --------------------------------------------------


def wait_for_lock_waiter(database_url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    with psycopg.connect(database_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone()
            if row and row[0] > 0:
                return
            time.sleep(0.02)
    raise AssertionError("reconcile never queued for the site lock")


def with_change_while_locked(
    f: Fleet, site: Dirname, change: Callable[[], None]
) -> ReconcileReport:
    """Run a live reconcile that snapshots, then queues for the site lock (held here), make
    `change` while it waits, release the lock, and return its report."""
    box: list[ReconcileReport | BaseException] = []

    def target() -> None:
        try:
            box.append(reconcile(f, site, apply=True))
        except BaseException as err:
            box.append(err)

    with SiteLockSession(f.database_url) as blocker, blocker.hold(site):
        thread = threading.Thread(target=target)
        thread.start()
        wait_for_lock_waiter(f.database_url)
        change()
    thread.join(timeout=30)
    (result,) = box
    if isinstance(result, BaseException):
        raise result
    return result


def test_v1d_alias_appearing_between_snapshot_and_lock_prevents_tombstone(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    keys = keys_under(fleet, fleet.layout.deploy_prefix(site, orphan))

    report = with_change_while_locked(
        fleet, site, lambda: fleet.alias_object(site, "preview", orphan)
    )

    assert report.plan is not None and report.plan.tombstone == (orphan,)  # planned …
    assert report.tombstoned == []  # … but not done
    assert report.skipped == [
        {"id": orphan, "repair": "tombstone", "reason": "alias object appeared"}
    ]
    assert orphan in report.aliased_missing
    assert tombstone_rows(fleet, site) == []
    assert keys_under(fleet, fleet.layout.deploy_prefix(site, orphan)) == keys
    assert audit_rows(fleet, fleet.slug("www")) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("alias_row", "alias row appeared"),
        ("row", "gained a row"),
        ("marker", "marker appeared"),
        ("bytes_gone", "bytes gone"),
    ],
)
def test_the_in_lock_read_skips_a_tombstone_whose_orphan_changed(
    fleet: Fleet, change: str, reason: str
) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    prefix = fleet.layout.deploy_prefix(site, orphan)

    def make_change() -> None:
        if change == "alias_row":
            fleet.alias_row(site, "preview", orphan)
        elif change == "row":
            fleet.put_row(site, orphan)
        elif change == "marker":
            fleet.bucket.put(prefix + MARKER_NAME, b"{}", "application/json")
        else:
            for key in keys_under(fleet, prefix):
                fleet.bucket.client.delete_object(Bucket=fleet.bucket_name, Key=key)

    report = with_change_while_locked(fleet, site, make_change)
    assert report.skipped == [{"id": orphan, "repair": "tombstone", "reason": reason}]
    assert tombstone_rows(fleet, site) == []
    assert (orphan in report.aliased_missing) == (change == "alias_row")


@pytest.mark.parametrize(
    ("change", "reason"), [("alias_row", "alias row appeared"), ("bytes", "bytes present")]
)
def test_v1d_the_in_lock_read_skips_a_prune_whose_row_came_back_to_life(
    fleet: Fleet, change: str, reason: str
) -> None:
    site, _ = healthy_site(fleet)
    ghost = fleet.did(OLD)
    fleet.put_row(site, ghost, age=OLD)

    def make_change() -> None:
        if change == "alias_row":
            fleet.alias_row(site, "preview", ghost)
        else:
            fleet.put_bytes(site, ghost)

    report = with_change_while_locked(fleet, site, make_change)
    assert report.skipped == [{"id": ghost, "repair": "prune", "reason": reason}]
    assert ghost in active_ids(fleet, site)


# --- faults, refusals, caps, deadlines --------------------------------------------------------------


@pytest.mark.parametrize("apply", [False, True])
def test_empty_listing_fault_fails_the_run_and_prunes_nothing(fleet: Fleet, apply: bool) -> None:
    fleet.register("www")
    site = fleet.site("www")
    for _ in range(3):
        fleet.put_row(site, fleet.did(OLD))  # rows, but the site prefix holds nothing
    with pytest.raises(EmptyListingFault) as fault:
        reconcile(fleet, fleet.slug("www"), apply=apply)
    assert "3 active index row" in str(fault.value)
    assert fleet.layout.site_prefix(site) in str(fault.value)
    assert len(active_ids(fleet, site)) == 3
    (run,) = fleet.job_runs("reconcile")
    assert run[0] == "failed" and "EmptyListingFault" in run[3]


def test_a_site_with_neither_bytes_nor_rows_is_simply_empty(fleet: Fleet) -> None:
    fleet.register("empty")
    report = reconcile(fleet, fleet.slug("empty"), apply=True)
    assert report.complete and report.plan is not None and report.plan.classification.is_clean()


@pytest.mark.parametrize("name", ["nope", "", "www.example.org/deploys"])
def test_an_unknown_name_is_refused(fleet: Fleet, name: str) -> None:
    healthy_site(fleet)
    with pytest.raises(UnknownSite):
        reconcile(fleet, name, apply=True)
    (run,) = fleet.job_runs("reconcile")
    assert run[0] == "failed" and run[4] == name


def test_names_resolve_as_a_dirname_or_as_a_slug(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    assert reconcile(fleet, site, apply=False).site == site
    by_slug = reconcile(fleet, fleet.slug("www"), apply=False)
    assert by_slug.site == site and by_slug.slug == fleet.slug("www")
    # A slug that is registered but never deployed is known through the registry.
    fleet.register("fresh")
    assert reconcile(fleet, fleet.slug("fresh"), apply=False).site == fleet.site("fresh")


def test_v6a_live_cap_takes_the_oldest_tombstones_then_prunes(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphans = [fleet.did(timedelta(days=d)) for d in (4, 8, 6)]
    for orphan in orphans:
        fleet.put_bytes(site, orphan, marker=False)
    ghosts = [fleet.did(timedelta(days=d)) for d in (5, 7)]
    for ghost in ghosts:
        fleet.put_row(site, ghost, age=OLD)
    capped = make_runtime(
        fleet.database_url, fleet.moto_url, fleet.bucket_name, CLEANUP_BLAST_CAP="4"
    )
    try:
        first = reconcile(fleet, site, apply=True, rt=capped)
        assert first.plan is not None and first.plan.capped
        assert first.tombstoned == sorted(orphans)
        assert first.pruned == [min(ghosts)]
        second = reconcile(fleet, site, apply=True, rt=capped)
        assert second.plan is not None and not second.plan.capped
        assert second.pruned == [max(ghosts)] and second.tombstoned == []
    finally:
        capped.close()


def test_v6b_cap_0_repairs_nothing_destructive_but_still_reindexes(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan, lost = fleet.did(OLD), fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    fleet.put_bytes(site, lost, marker=True)
    zero = make_runtime(
        fleet.database_url, fleet.moto_url, fleet.bucket_name, CLEANUP_BLAST_CAP="0"
    )
    try:
        dry = reconcile(fleet, site, apply=False, rt=zero)
        assert dry.plan is not None and dry.plan.report.tombstone == (orphan,)  # V6 c
        assert dry.plan.capped
        live = reconcile(fleet, site, apply=True, rt=zero)
    finally:
        zero.close()
    assert live.plan is not None and live.plan.capped and "refuses" in live.plan.reason
    assert live.tombstoned == [] and live.reindexed == [lost]
    assert tombstone_rows(fleet, site) == []


def test_the_deadline_is_checked_before_each_repair(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    before = fleet.state()
    report = reconcile(fleet, site, apply=True, seconds=0)
    assert not report.complete and report.stopped == "deadline"
    assert report.remaining == [orphan]
    assert fleet.state() == before
    resumed = reconcile(fleet, site, apply=True)
    assert resumed.tombstoned == [orphan] and resumed.complete


def test_a_failed_move_keeps_the_tombstone_row_and_fails_the_run(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False, files={"a.html": b"ab"})
    fleet.put_bytes(site, orphan, marker=False, files={"z.html": b"cd"}, storage_class="GLACIER")
    with pytest.raises(ReconcileFailed) as failed:
        reconcile(fleet, site, apply=True)
    assert failed.value.report is not None and failed.value.report.tombstoned == []
    assert tombstone_rows(fleet, site) == [(orphan, 4, "pending")]  # row first, move deferred
    (row,) = audit_rows(fleet, fleet.slug("www"))
    assert row[1] == "gc.reconcile" and row[4] == {"bytes": 4, "moved": False}
    (run,) = fleet.job_runs("reconcile")
    assert run[0] == "failed"


def test_the_tombstone_takes_the_orphans_index_rows_even_when_the_move_fails(
    fleet: Fleet,
) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False, files={"a.html": b"ab"})
    fleet.put_bytes(site, orphan, marker=False, files={"z.html": b"cd"}, storage_class="GLACIER")
    fleet.sql(
        "INSERT INTO deploy_files (site, deploy_id, path, sha256, size) VALUES (%s, %s, %s, %s, 2)",
        [site, orphan, "a.html", hashlib.sha256(b"ab").digest()],
    )
    with pytest.raises(ReconcileFailed):
        reconcile(fleet, site, apply=True)
    assert tombstone_rows(fleet, site) == [(orphan, 4, "pending")]
    assert fleet.sql("SELECT path FROM deploy_files WHERE deploy_id = %s", [orphan]) == []


def test_an_unmapped_dirname_is_audited_raw_with_site_unmapped(fleet: Fleet) -> None:
    legacy = Dirname(f"legacy-{fleet.tag}")  # does not match <site>.example.org
    fleet.deploy(legacy)
    ghost = fleet.did(OLD)
    fleet.put_row(legacy, ghost)
    report = reconcile(fleet, legacy, apply=True)
    assert report.slug is None and report.pruned == [ghost]
    (row,) = audit_rows(fleet, legacy)
    assert row[1] == "gc.reconcile.prune" and row[4] == {"site_unmapped": True}


# --- the operator's path: drift reports, reconcile repairs (E4) -------------------------------------


def test_reconcile_apply_via_artemis_admin(fleet: Fleet, tmp_path: Path) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    env = runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name)
    done = run_admin(env, "reconcile", fleet.slug("www"), "--apply", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["dry_run"] is False and report["done"]["tombstone"] == [orphan]
    assert [(r[0], r[2]) for r in tombstone_rows(fleet, site)] == [(orphan, "moved")]
    refused = run_admin(env, "reconcile", "no-such-site", tmp=tmp_path)
    assert refused.returncode == 2 and "refusing" in refused.stderr
    fleet.put_row(fleet.site("bare"), fleet.did(OLD))
    fault = run_admin(env, "reconcile", fleet.site("bare"), tmp=tmp_path)
    assert fault.returncode == 1 and "EmptyListingFault" in fault.stderr


def test_planted_orphan_reported_then_repaired(fleet: Fleet, tmp_path: Path) -> None:
    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)  # bytes no write path produced
    before = fleet.state()

    # The nightly sweep reports it and leaves it alone.
    drift = run_drift(fleet.rt, now=fleet.now, deadline=Deadline.after(600), fresh=True)
    assert drift.verdict == "clean"  # one orphan is below the reclaimable threshold …
    (finding,) = drift.sites  # … but the report names it
    assert finding.site == site and finding.classification.tombstone == (orphan,)
    assert fleet.state() == before

    # The operator looks (dry run), then repairs.
    env = runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name)
    dry = run_admin(env, "reconcile", fleet.slug("www"), tmp=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["planned"]["tombstone"] == [orphan]
    assert fleet.state()["keys"] == before["keys"]
    applied = run_admin(env, "reconcile", fleet.slug("www"), "--apply", tmp=tmp_path)
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["done"]["tombstone"] == [orphan]
    assert keys_under(fleet, fleet.layout.deploy_prefix(site, orphan)) == []

    # The next sweep finds nothing.
    after = run_drift(fleet.rt, now=fleet.now, deadline=Deadline.after(600), fresh=True)
    assert after.verdict == "clean" and after.sites == []


@pytest.mark.filterwarnings("ignore:No application metrics to publish")  # the refused event
def test_the_lambda_handler_reconciles_from_an_event(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artemis import runtime
    from artemis_local.functions import LocalContext, load_handler

    site, _ = healthy_site(fleet)
    orphan = fleet.did(OLD)
    fleet.put_bytes(site, orphan, marker=False)
    for name, value in runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name).items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    try:
        handler = load_handler("reconcile")
        dry = handler({"site": fleet.slug("www")}, LocalContext("reconcile"))
        live = handler({"site": fleet.slug("www"), "apply": True}, LocalContext("reconcile"))
        with pytest.raises(ValueError, match="apply"):
            handler({"site": fleet.slug("www"), "apply": "yes"}, LocalContext("reconcile"))
    finally:
        runtime.reset()
    assert dry["dry_run"] is True and dry["planned"]["tombstone"] == [orphan]
    assert live["done"]["tombstone"] == [orphan]


def test_a_plan_pruning_most_of_the_site_carries_the_self_check_warning(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    for _ in range(4):
        fleet.put_row(site, fleet.did(OLD))
    report = reconcile(fleet, site, apply=False)
    assert len(report.warnings) == 1 and "more than half" in report.warnings[0]
    assert report.to_json()["warnings"] == report.warnings


def test_an_unreadable_snapshot_fails_the_run_with_its_report(fleet: Fleet) -> None:
    site, _ = healthy_site(fleet)
    fleet.alias_object(site, "preview", fleet.did(OLD), storage_class="GLACIER")
    with pytest.raises(ReconcileFailed) as failed:
        reconcile(fleet, site, apply=True)
    assert failed.value.report is not None and failed.value.report.site == site
    assert "StorageError" in str(failed.value)
    (run,) = fleet.job_runs("reconcile")
    assert run[0] == "failed"


# --- alias rows against alias objects (fixed channels and named previews alike) ---------------


def alias_rows(f: Fleet, site: Dirname) -> dict[str, tuple[str, str | None]]:
    rows = f.sql("SELECT name, deploy_id, updated_by FROM aliases WHERE site = %s", [site])
    return {name: (deploy_id, by) for name, deploy_id, by in rows}


def released_at(f: Fleet, site: Dirname, deploy_id: str) -> Any:
    rows = f.sql(
        "SELECT alias_released_at FROM deploys WHERE site = %s AND id = %s", [site, deploy_id]
    )
    return rows[0][0]


def test_alias_rows_are_repaired_to_match_the_alias_objects(fleet: Fleet) -> None:
    site, (old, mid, new) = healthy_site(fleet)  # production: row and object on `new`
    fleet.alias_object(site, "pr-1", mid)  # an object without a row
    fleet.alias_row(site, "pr-2", old)  # a row without an object
    fleet.alias_object(site, "pr-3", new)  # a row naming another deploy than its object
    fleet.alias_row(site, "pr-3", old)
    fleet.alias_object(site, "preview", mid)  # a fixed channel's stale row: the same path
    fleet.alias_row(site, "preview", old)
    before = fleet.state()

    dry = reconcile(fleet, site, apply=False)
    assert fleet.state() == before
    assert dry.to_json()["planned"]["alias_row_missing"] == [
        {"name": "pr-1", "row": None, "object": mid}
    ]
    assert dry.to_json()["planned"]["alias_object_missing"] == [
        {"name": "pr-2", "row": old, "object": None}
    ]
    assert [m.name for m in dry.alias_drift.row_stale] == ["pr-3", "preview"]
    (run,) = fleet.job_runs("reconcile")
    assert (run[2]["alias_row_missing"], run[2]["alias_object_missing"]) == (1, 1)
    assert (run[2]["alias_row_stale"], run[2]["alias_rows_written"]) == (2, 0)

    live = reconcile(fleet, site, apply=True)
    assert live.complete and live.skipped == []
    assert live.alias_rows_written == ["pr-1", "pr-3", "preview"]
    assert live.alias_rows_deleted == ["pr-2"]
    assert alias_rows(fleet, site) == {
        "production": (new, None),
        "preview": (mid, "system:reconcile"),
        "pr-1": (mid, "system:reconcile"),
        "pr-3": (new, "system:reconcile"),
    }
    # The deploy each repaired row left is stamped released, as an alias move stamps it.
    assert released_at(fleet, site, old) == fleet.now
    assert released_at(fleet, site, mid) is None
    audits = [(r[1], r[2], r[4]) for r in audit_rows(fleet, fleet.slug("www"))]
    assert sorted(audits, key=lambda a: a[2]["name"]) == [
        ("gc.reconcile.alias", mid, {"name": "pr-1", "row": None, "object": mid,
                                     "class": "alias_row_missing"}),
        ("gc.reconcile.alias", old, {"name": "pr-2", "row": old, "object": None,
                                     "class": "alias_object_missing"}),
        ("gc.reconcile.alias", new, {"name": "pr-3", "row": old, "object": new,
                                     "class": "alias_row_stale"}),
        ("gc.reconcile.alias", mid, {"name": "preview", "row": old, "object": mid,
                                     "class": "alias_row_stale"}),
    ]  # fmt: skip
    assert fleet.job_runs("reconcile")[-1][2]["alias_rows_deleted"] == 1
    assert fleet.state()["keys"] == before["keys"]  # the bucket is never touched

    again = reconcile(fleet, site, apply=True)
    assert again.alias_drift.is_clean() and again.plan is not None
    assert again.plan.classification.is_clean()
    assert again.alias_rows_written == again.alias_rows_deleted == []


def test_a_named_alias_naming_a_missing_deploy_is_aliased_missing_and_never_removed(
    fleet: Fleet,
) -> None:
    site, _ = healthy_site(fleet)
    nothing, unmarked = fleet.did(OLD), fleet.did(OLD)
    fleet.alias_object(site, "pr-7", nothing)  # no bytes, no row
    fleet.put_bytes(site, unmarked, marker=False)  # bytes only: an orphan but for its alias
    fleet.alias_object(site, "pr-8", unmarked)
    keys = fleet.all_keys()

    first = reconcile(fleet, site, apply=True)
    assert sorted(first.aliased_missing) == sorted([nothing, unmarked])
    assert first.tombstoned == first.pruned == [] and tombstone_rows(fleet, site) == []
    assert fleet.all_keys() == keys
    # The rows mirror the objects, whatever they name.
    assert alias_rows(fleet, site)["pr-7"] == (nothing, "system:reconcile")
    assert alias_rows(fleet, site)["pr-8"] == (unmarked, "system:reconcile")

    second = reconcile(fleet, site, apply=True)
    assert second.alias_drift.is_clean()
    assert sorted(second.aliased_missing) == sorted([nothing, unmarked])
    assert fleet.all_keys() == keys


def test_an_alias_name_the_rule_refuses_is_reported_and_never_written(fleet: Fleet) -> None:
    site, ids = healthy_site(fleet)
    fleet.alias_object(site, "Not_A_Label", ids[0])
    report = reconcile(fleet, site, apply=True)
    assert [m.name for m in report.alias_drift.row_missing] == ["Not_A_Label"]
    assert report.skipped == [
        {"id": "Not_A_Label", "repair": "alias", "reason": "not an alias name"}
    ]
    assert "Not_A_Label" not in alias_rows(fleet, site)


@pytest.mark.parametrize(
    "planned", ["alias_row_missing", "alias_object_missing", "alias_row_stale"]
)
def test_an_alias_move_between_snapshot_and_repair_is_never_undone(
    fleet: Fleet, planned: str
) -> None:
    site, (old, mid, new) = healthy_site(fleet)
    if planned != "alias_object_missing":
        fleet.alias_object(site, "pr-1", mid)
    if planned != "alias_row_missing":
        fleet.alias_row(site, "pr-1", old)

    def move() -> None:  # what an alias move does under the site lock: object, then row
        fleet.bucket.put_alias(fleet.layout.alias_key(site, "pr-1"), new)
        fleet.sql(
            "INSERT INTO aliases (site, name, deploy_id, updated_at, updated_by)"
            " VALUES (%s, 'pr-1', %s, now(), 'octocat') ON CONFLICT (site, name)"
            " DO UPDATE SET deploy_id = EXCLUDED.deploy_id, updated_by = EXCLUDED.updated_by",
            [site, new],
        )

    report = with_change_while_locked(fleet, site, move)
    assert [m.kind for m in report.alias_drift.mismatches] == [planned]  # planned …
    assert report.skipped == [{"id": "pr-1", "repair": "alias", "reason": "alias agrees now"}]
    assert report.alias_rows_written == report.alias_rows_deleted == []  # … but not done
    assert alias_rows(fleet, site)["pr-1"] == (new, "octocat")
    assert fleet.bucket.get_alias(fleet.layout.alias_key(site, "pr-1")) == new
    assert audit_rows(fleet, fleet.slug("www")) == []


def test_a_row_whose_object_moved_elsewhere_meanwhile_is_left_for_the_next_run(
    fleet: Fleet,
) -> None:
    site, (old, mid, new) = healthy_site(fleet)
    fleet.alias_object(site, "pr-1", mid)
    fleet.alias_row(site, "pr-1", old)
    # Only the object moves (its row write failed): still stale, but not as planned.
    report = with_change_while_locked(
        fleet, site, lambda: fleet.bucket.put_alias(fleet.layout.alias_key(site, "pr-1"), new)
    )
    assert report.skipped == [{"id": "pr-1", "repair": "alias", "reason": "alias changed"}]
    assert alias_rows(fleet, site)["pr-1"] == (old, None)
    assert reconcile(fleet, site, apply=True).alias_rows_written == ["pr-1"]
    assert alias_rows(fleet, site)["pr-1"] == (new, "system:reconcile")
