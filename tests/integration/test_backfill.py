"""Backfill against real Postgres and moto S3 (spec/durable.md §9.6 with the §9.6.3 Fixes; E3 a)."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from artemis.deadlines import Deadline
from artemis.jobs import backfill as backfill_job
from artemis.jobs.backfill import BackfillResult, run_backfill
from artemis.keys import MARKER_NAME, Dirname
from tests.integration.test_drift import OLD, PAGES, YOUNG, Fleet, run_admin, runtime_env


def backfill(f: Fleet, **kwargs: Any) -> BackfillResult:
    kwargs.setdefault("deadline", Deadline.after(600))
    return run_backfill(f.rt, now=f.now, **kwargs)


def index(f: Fleet) -> list[tuple[Any, ...]]:
    return f.sql("SELECT site, id, has_marker, bytes, state FROM deploys ORDER BY site, id")


def alias_index(f: Fleet) -> list[tuple[Any, ...]]:
    return f.sql("SELECT site, name, deploy_id FROM aliases ORDER BY site, name")


def bucket_truth(f: Fleet) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """What the index must say, computed from the bucket alone (ids, markers, sizes, aliases)."""
    sizes: dict[tuple[str, str], int] = {}
    markers: dict[tuple[str, str], bool] = {}
    for page in f.bucket.client.get_paginator("list_objects_v2").paginate(Bucket=f.bucket_name):
        for obj in page.get("Contents", []):
            parts = obj["Key"].split("/")
            if parts[0].startswith("_") or len(parts) < 4 or parts[1] != "deploys":
                continue
            key = (parts[0], parts[2])
            sizes[key] = sizes.get(key, 0) + int(obj["Size"])
            markers[key] = markers.get(key, False) or parts[3] == MARKER_NAME
    deploys = [(s, i, markers[(s, i)], sizes[(s, i)], "active") for (s, i) in sorted(sizes)]
    aliases = []
    for site in sorted({s for s, _ in sizes}):
        for name in ("preview", "production"):
            target = f.bucket.get_alias(f.layout.alias_key(Dirname(site), name))
            if target:
                aliases.append((site, name, target))
    return deploys, aliases


def seed(f: Fleet) -> dict[str, Any]:
    alpha, beta = f.site("alpha"), f.site("beta")
    ids = {
        "a1": f.deploy(alpha, timedelta(days=9)),
        "a2": f.deploy(alpha, OLD),
        "a3": f.deploy(alpha, YOUNG, marker=False),  # unfinalized
        "b1": f.deploy(beta, OLD),
    }
    f.put_bytes(alpha, ids["a2"], marker=False, files={"more/big.bin": b"x" * 3000})
    f.alias_object(alpha, "production", ids["a2"])
    f.alias_object(alpha, "preview", ids["a1"])
    f.alias_object(beta, "production", ids["b1"])
    f.bucket.put(f.layout.alias_key(beta, "preview"), b"  \n", "text/plain")  # empty = none
    # Trash and reserved names are never sites.
    f.bucket.put(f"_trash/{alpha}/{f.did(OLD)}/index.html", b"gone", "text/html")
    f.bucket.put("_artemis_readyz_probe/x", b"", "text/plain")
    return ids


def test_e3a_drop_index_then_backfill_equals_bucket(fleet: Fleet) -> None:
    seed(fleet)
    fleet.sql("TRUNCATE deploys, aliases")
    result = backfill(fleet)
    deploys, aliases = bucket_truth(fleet)
    assert index(fleet) == deploys
    assert alias_index(fleet) == aliases
    assert len(aliases) == 3
    assert result.complete and result.resume_after is None
    assert (result.sites, result.deploys, result.inserted, result.aliases) == (2, 4, 4, 3)
    assert result.skipped_tombstoned == 0 and result.size_probe_failures == 0
    # New rows take the id-parsed time.
    mtimes = fleet.sql("SELECT id, mtime FROM deploys")
    for deploy_id, mtime in mtimes:
        assert mtime.strftime("%Y%m%d-%H%M%S") == deploy_id[:15]
    (run,) = fleet.job_runs("backfill")
    assert run[0] == "succeeded" and run[2]["inserted"] == 4 and run[2]["aliases"] == 3


def test_backfill_never_resurrects_a_tombstoned_deploy(fleet: Fleet) -> None:
    ids = seed(fleet)
    alpha, beta = fleet.site("alpha"), fleet.site("beta")
    # a1 was soft-deleted but its move failed: bytes still at the live prefix.
    fleet.sql("DELETE FROM deploys WHERE id = %s", [ids["a1"]])
    fleet.tombstone(alpha, ids["a1"])
    # beta was purged as a whole site, its bytes still at the live prefix too.
    fleet.sql("DELETE FROM deploys WHERE site = %s", [beta])
    fleet.tombstone(beta, "")
    result = backfill(fleet)
    assert result.skipped_tombstoned == 2
    assert sorted(result.tombstoned) == sorted([f"{alpha}/{ids['a1']}", f"{beta}/{ids['b1']}"])
    assert [r[1] for r in index(fleet)] == sorted([ids["a2"], ids["a3"]])
    assert fleet.sql("SELECT count(*) FROM tombstones")[0][0] == 2


def test_backfill_rerun_is_idempotent(fleet: Fleet) -> None:
    seed(fleet)
    fleet.sql("TRUNCATE deploys, aliases")
    backfill(fleet)
    rows = fleet.sql("SELECT * FROM deploys ORDER BY site, id")
    alias_rows = fleet.sql("SELECT * FROM aliases ORDER BY site, name")
    again = backfill(fleet)
    assert (again.inserted, again.updated, again.unchanged) == (0, 0, 4)
    assert again.aliases == 3 and again.aliases_changed == 0
    assert fleet.sql("SELECT * FROM deploys ORDER BY site, id") == rows
    assert fleet.sql("SELECT * FROM aliases ORDER BY site, name") == alias_rows


def test_backfill_keeps_finalize_mtime_and_leaves_unfinalized_pending_rows_pending(
    fleet: Fleet,
) -> None:
    site = fleet.site("gamma")
    finalized = fleet.did(OLD)
    fleet.put_bytes(site, finalized, marker=True)
    fleet.put_row(site, finalized, age=YOUNG, size=1)  # finalize wrote its own time and size
    in_flight = fleet.did(YOUNG)
    fleet.put_bytes(site, in_flight, marker=False)
    fleet.put_row(site, in_flight, age=YOUNG, marker=False, state="pending")
    lost_finalize = fleet.did(YOUNG)  # finalized, but the index write was lost
    fleet.put_bytes(site, lost_finalize, marker=True)
    fleet.put_row(site, lost_finalize, age=YOUNG, marker=False, state="pending")
    result = backfill(fleet)
    assert result.updated == 3 and result.inserted == 0
    rows = {
        r[0]: r[1:]
        for r in fleet.sql("SELECT id, mtime, state, has_marker, bytes > 1 FROM deploys")
    }
    assert rows[finalized] == (fleet.now - YOUNG, "active", True, True)
    assert rows[in_flight][1:3] == ("pending", False)
    assert rows[lost_finalize][1:3] == ("active", True)


def test_backfill_stops_at_its_deadline_and_resumes_after_the_last_site(fleet: Fleet) -> None:
    sites = sorted(fleet.site(n) for n in ("one", "two", "three"))
    for site in sites:
        fleet.deploy(site)
    fleet.sql("TRUNCATE deploys")
    first = backfill(fleet, deadline=Deadline.after(0))
    assert not first.complete and first.sites == 1 and first.resume_after == sites[0]
    rest = backfill(fleet, start_after=first.resume_after)
    assert rest.complete and rest.sites == 2
    assert sorted({r[0] for r in index(fleet)}) == sites


def test_backfill_via_artemis_admin(fleet: Fleet, tmp_path: Path) -> None:
    seed(fleet)
    fleet.sql("TRUNCATE deploys, aliases")
    env = runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name)
    done = run_admin(env, "backfill", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["inserted"] == 4 and result["complete"] is True
    assert index(fleet) == bucket_truth(fleet)[0]


# --- the content index ---------------------------------------------------------------------------


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def test_backfill_rebuilds_the_index_from_markers_and_hashes_what_it_must(fleet: Fleet) -> None:
    site = fleet.site("content")
    fresh = fleet.indexed_deploy(site, PAGES, age=timedelta(days=3))
    # Overwritten after finalize: the marker's digest (and ETag) describe the old bytes.
    changed = fleet.indexed_deploy(site, PAGES, age=timedelta(days=2))
    rewritten = b"<h1>rewritten</h1>"
    fleet.bucket.client.put_object(
        Bucket=fleet.bucket_name,
        Key=fleet.layout.deploy_prefix(site, changed) + "index.html",
        Body=rewritten,
    )
    legacy = fleet.deploy(site, timedelta(days=4))  # finalized before the index: no digests
    unfinalized = fleet.did(YOUNG)
    fleet.put_bytes(site, unfinalized, marker=False)
    fleet.put_row(site, unfinalized, age=YOUNG, marker=False, state="pending")
    gone = fleet.indexed_deploy(site, PAGES, age=timedelta(days=5))
    fleet.sql("DELETE FROM deploys WHERE id = %s", [gone])
    fleet.tombstone(site, gone)  # soft-deleted, its move still pending: bytes in place
    fleet.sql("TRUNCATE deploy_files")

    result = backfill(fleet)

    assert result.complete and result.deferred == 0
    assert result.digests_from_marker == 3 + 2  # fresh, and changed's untouched files
    legacy_files = {"index.html": b"<h1>hello</h1>", "app.js": b"console.log(1)"}
    assert result.hashed == 1 + 2  # changed/index.html, and legacy's two files
    assert result.hashed_bytes == len(rewritten) + sum(map(len, legacy_files.values()))
    full = [(p, sha(b), len(b)) for p, b in sorted(PAGES.items())]
    expected = [(fresh, *row) for row in full]
    expected += [(changed, *row) for row in full if row[0] != "index.html"]
    expected += [(changed, "index.html", sha(rewritten), len(rewritten))]  # the real bytes
    expected += [(legacy, p, sha(b), len(b)) for p, b in legacy_files.items()]
    assert sorted(fleet.content_rows(site)) == sorted(expected)  # nothing of gone, unfinalized
    (run,) = fleet.job_runs("backfill")
    assert run[2]["hashed"] == 3 and run[2]["digests_from_marker"] == 5

    rows = fleet.content_rows()
    again = backfill(fleet)  # idempotent: nothing is missing, nothing is read or written
    assert (again.digests_from_marker, again.hashed, again.deferred) == (0, 0, 0)
    assert fleet.content_rows() == rows


def test_backfill_keeps_a_row_it_finds_and_never_indexes_a_tombstoned_site(fleet: Fleet) -> None:
    kept = fleet.site("kept")
    deploy_id = fleet.indexed_deploy(kept, PAGES, rows=False)
    fleet.index_rows(kept, deploy_id, {"app.js": b"what an upload hashed"})
    purged = fleet.site("purged")
    fleet.indexed_deploy(purged, PAGES, rows=False)
    fleet.tombstone(purged, "")  # a whole-site purge whose bytes are not gone yet
    result = backfill(fleet)
    assert result.digests_from_marker == 2 and result.hashed == 0
    rows = {path: digest for _, path, digest, _ in fleet.content_rows(kept)}
    assert rows["app.js"] == sha(b"what an upload hashed")  # left as it was
    assert fleet.content_rows(purged) == []


@pytest.mark.parametrize("limit", ["objects", "bytes"])
def test_backfill_defers_what_its_hashing_budget_does_not_reach_and_the_next_run_finishes(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch, limit: str
) -> None:
    site = fleet.site("budget")
    files = {f"f{i}.txt": bytes([65 + i]) * 100 for i in range(5)}
    deploy_id = fleet.did(OLD)
    fleet.put_bytes(site, deploy_id, files=files)  # a legacy marker: every file is hashed
    if limit == "objects":
        monkeypatch.setattr(backfill_job, "MAX_HASHED_OBJECTS", 3)
    else:
        monkeypatch.setattr(backfill_job, "MAX_HASHED_BYTES", 350)

    first = backfill(fleet)
    assert (first.hashed, first.deferred, first.hashed_bytes) == (3, 2, 300)
    assert [p for _, p, _, _ in fleet.content_rows(site)] == ["f0.txt", "f1.txt", "f2.txt"]
    second = backfill(fleet)
    assert (second.hashed, second.deferred) == (2, 0)
    assert fleet.content_rows(site) == [
        (deploy_id, p, sha(b), len(b)) for p, b in sorted(files.items())
    ]


def test_backfill_hashes_nothing_out_of_time_but_still_takes_marker_digests(
    fleet: Fleet,
) -> None:
    site = fleet.site("late")
    indexed = fleet.indexed_deploy(site, PAGES)
    legacy = fleet.deploy(site)
    fleet.sql("TRUNCATE deploy_files")
    result = backfill(fleet, deadline=Deadline.after(backfill_job.HASH_RESERVE_SECONDS - 1))
    assert (result.digests_from_marker, result.hashed, result.deferred) == (3, 0, 2)
    assert {d for d, *_ in fleet.content_rows(site)} == {indexed}
    assert legacy not in {d for d, *_ in fleet.content_rows(site)}


def test_backfill_rebuilds_named_preview_rows_from_their_objects(fleet: Fleet) -> None:
    ids = seed(fleet)
    alpha = Dirname(fleet.site("alpha"))
    fleet.bucket.put_alias(fleet.layout.alias_key(alpha, "pr-1"), ids["a1"])
    fleet.bucket.put_alias(fleet.layout.alias_key(alpha, "pr-2"), ids["a2"])
    folder = fleet.layout.named_alias_prefix(alpha)
    fleet.bucket.put(folder + "pr-3", b"", "text/plain")  # empty: names nothing
    fleet.bucket.put(folder + "Not_A_Name", ids["a1"].encode(), "text/plain")  # refused name
    fleet.sql("TRUNCATE deploys, aliases")

    result = backfill(fleet)

    named = [r for r in alias_index(fleet) if r[1].startswith("pr-")]
    assert named == [(alpha, "pr-1", ids["a1"]), (alpha, "pr-2", ids["a2"])]
    assert result.aliases == 5 and result.aliases_changed == 5  # three channels, two previews
    # A rebuilt preview's TTL starts at the backfill: it is never expired early.
    assert fleet.sql("SELECT DISTINCT updated_at FROM aliases WHERE name LIKE 'pr-%%'") == [
        (fleet.now,)
    ]
    again = backfill(fleet)
    assert again.aliases == 5 and again.aliases_changed == 0
