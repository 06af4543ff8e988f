"""drift-detect against real Postgres and moto S3 (spec/durable.md §9.4, §11.5; E4; DECISIONS Q7).

Every fixture uses a production-like template (`<site>.example.org/deploys/…`), so slugs and
dirnames differ and a sweep that confuses them finds nothing. `Fleet` (also used by the
reconcile and backfill tests) writes bucket objects and index rows directly: a fixture for
drift is exactly state that no correct write path produces.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from inspect import isfunction
from pathlib import Path
from typing import Any

import psycopg
import pytest

from artemis.config import load_settings
from artemis.db.lock import SiteLockSession
from artemis.deadlines import Deadline
from artemis.drift_report import VERDICTS, DriftReport
from artemis.jobs.drift import DEADLINE_ERROR, DriftFailed, Shard, run_drift
from artemis.keys import (
    MARKER_DIGESTS,
    MARKER_FILES,
    MARKER_NAME,
    Dirname,
    KeyLayout,
    Slug,
)
from artemis.readonly import (
    BUCKET_READS,
    ReadOnlyBucket,
    ReadOnlyDatabase,
    ReadOnlyViolation,
)
from artemis.runtime import Runtime
from artemis.storage.s3 import Bucket
from tests.conftest import REPO_ROOT, base_env

PROD_TEMPLATE = {
    "DEPLOY_PREFIX_FORMAT": "<site>.example.org/deploys/<ts>-<sha>/",
    "ALIAS_PRODUCTION_KEY_FORMAT": "<site>.example.org/production",
    "ALIAS_PREVIEW_KEY_FORMAT": "<site>.example.org/preview",
}
OLD = timedelta(days=5)
YOUNG = timedelta(hours=1)
ADMIN = str(Path(sys.executable).with_name("artemis-admin"))


def runtime_env(
    database_url: str, moto_url: str, bucket_name: str, **overrides: str
) -> dict[str, str]:
    return base_env(
        DATABASE_URL=database_url,
        AWS_ENDPOINT_URL=moto_url,
        BUCKET_NAME=bucket_name,
        **{**PROD_TEMPLATE, **overrides},
    )


def make_runtime(database_url: str, moto_url: str, bucket_name: str, **overrides: str) -> Runtime:
    return Runtime(load_settings(runtime_env(database_url, moto_url, bucket_name, **overrides)))


@dataclass
class Fleet:
    """Bucket objects and index rows, written directly (no write path would make drift)."""

    rt: Runtime
    database_url: str
    moto_url: str
    bucket_name: str
    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))
    # Unique names per test: the append-only audit log outlives every test.
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:6])

    @property
    def layout(self) -> KeyLayout:
        return self.rt.settings.key_layout

    @property
    def bucket(self) -> Bucket:
        return self.rt.bucket

    def slug(self, name: str) -> str:
        return f"{name}-{self.tag}"

    def site(self, name: str) -> Dirname:
        return self.layout.dirname(Slug(self.slug(name)))

    def did(self, age: timedelta, sha: str | None = None) -> str:
        stamp = (self.now - age).strftime("%Y%m%d-%H%M%S")
        return f"{stamp}-{sha or uuid.uuid4().hex[:7]}"

    # --- bucket ------------------------------------------------------------------------------
    def put_bytes(
        self,
        site: Dirname,
        deploy_id: str,
        *,
        marker: bool = True,
        files: dict[str, bytes] | None = None,
        storage_class: str | None = None,
    ) -> int:
        """Write a deploy's files (and marker); return the total bytes written."""
        prefix = self.layout.deploy_prefix(site, deploy_id)
        files = dict(files or {"index.html": b"<h1>hello</h1>", "app.js": b"console.log(1)"})
        if marker:
            files[MARKER_NAME] = json.dumps({"deployId": deploy_id}).encode()
        for path, body in files.items():
            extra: dict[str, Any] = {"StorageClass": storage_class} if storage_class else {}
            self.bucket.client.put_object(
                Bucket=self.bucket_name, Key=prefix + path, Body=body, **extra
            )
        return sum(len(b) for b in files.values())

    def alias_object(
        self, site: Dirname, name: str, deploy_id: str, *, storage_class: str | None = None
    ) -> None:
        """A fixed channel's or a named preview's alias object."""
        extra: dict[str, Any] = {"StorageClass": storage_class} if storage_class else {}
        self.bucket.client.put_object(
            Bucket=self.bucket_name,
            Key=self.layout.alias_key(site, name),
            Body=deploy_id.encode(),
            **extra,
        )

    def all_keys(self) -> list[str]:
        paginator = self.bucket.client.get_paginator("list_objects_v2")
        return sorted(
            o["Key"]
            for page in paginator.paginate(Bucket=self.bucket_name)
            for o in page.get("Contents", [])
        )

    # --- database ----------------------------------------------------------------------------
    def sql(self, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.database_url, autocommit=True) as conn:
            cur = conn.execute(statement.encode(), params)
            return cur.fetchall() if cur.description else []

    def register(self, name: str) -> None:
        self.sql("INSERT INTO sites (slug, teams) VALUES (%s, '{staff}')", [self.slug(name)])

    def put_row(
        self,
        site: Dirname,
        deploy_id: str,
        *,
        age: timedelta = OLD,
        marker: bool = True,
        state: str = "active",
        size: int = 0,
    ) -> None:
        self.sql(
            "INSERT INTO deploys (site, id, mtime, bytes, has_marker, state)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [site, deploy_id, self.now - age, size, marker, state],
        )

    def alias_row(self, site: Dirname, name: str, deploy_id: str) -> None:
        self.sql(
            "INSERT INTO aliases (site, name, deploy_id, updated_at) VALUES (%s, %s, %s, %s)",
            [site, name, deploy_id, self.now - OLD],
        )

    def tombstone(self, site: Dirname, deploy_id: str, *, size: int = 0) -> None:
        self.sql(
            "INSERT INTO tombstones (site, id, bytes) VALUES (%s, %s, %s)", [site, deploy_id, size]
        )

    def deploy(self, site: Dirname, age: timedelta = OLD, *, marker: bool = True) -> str:
        """A consistent deploy: bytes and an active row."""
        deploy_id = self.did(age)
        size = self.put_bytes(site, deploy_id, marker=marker)
        self.put_row(site, deploy_id, age=age, marker=marker, size=size)
        return deploy_id

    # --- the content index (deploy_files) ----------------------------------------------------
    def index_rows(self, site: Dirname, deploy_id: str, files: dict[str, bytes]) -> None:
        """A `deploy_files` row per file, with the digest of the given bytes."""
        for path, body in files.items():
            self.sql(
                "INSERT INTO deploy_files (site, deploy_id, path, sha256, size)"
                " VALUES (%s, %s, %s, %s, %s)",
                [site, deploy_id, path, hashlib.sha256(body).digest(), len(body)],
            )

    def indexed_deploy(
        self,
        site: Dirname,
        files: dict[str, bytes],
        *,
        age: timedelta = OLD,
        rows: bool = True,
        state: str = "active",
    ) -> str:
        """A deploy as finalize leaves it since the content index: bytes, a marker recording
        each file's ETag and digest, an active row and (`rows`) a `deploy_files` row per file."""
        deploy_id = self.did(age)
        prefix = self.layout.deploy_prefix(site, deploy_id)
        etags = {
            path: self.bucket.client.put_object(
                Bucket=self.bucket_name, Key=prefix + path, Body=body
            )["ETag"].strip('"')
            for path, body in files.items()
        }
        digests = {path: hashlib.sha256(body).hexdigest() for path, body in files.items()}
        marker = {"deployId": deploy_id, MARKER_FILES: etags, MARKER_DIGESTS: digests}
        self.bucket.client.put_object(
            Bucket=self.bucket_name, Key=prefix + MARKER_NAME, Body=json.dumps(marker).encode()
        )
        self.put_row(site, deploy_id, age=age, state=state, size=sum(map(len, files.values())))
        if rows:
            self.index_rows(site, deploy_id, files)
        return deploy_id

    def content_rows(self, site: Dirname | None = None) -> list[tuple[Any, ...]]:
        """(deploy id, path, hex digest, size) of every index row (of one site)."""
        rows = self.sql(
            "SELECT site, deploy_id, path, encode(sha256, 'hex'), size FROM deploy_files"
            " ORDER BY site, deploy_id, path"
        )
        return [r[1:] for r in rows if site is None or r[0] == site]

    def state(self) -> dict[str, Any]:
        """Everything a sweep could change: tables and bucket (keys and alias bodies)."""
        return {
            "deploys": self.sql("SELECT * FROM deploys ORDER BY site, id"),
            "aliases": self.sql("SELECT * FROM aliases ORDER BY site, name"),
            "tombstones": self.sql("SELECT * FROM tombstones ORDER BY site, id"),
            "sites": self.sql("SELECT * FROM sites ORDER BY slug"),
            "deploy_files": self.sql("SELECT * FROM deploy_files ORDER BY site, deploy_id, path"),
            "audit": self.sql("SELECT count(*) FROM audit_log"),
            "keys": self.all_keys(),
        }

    def job_runs(self, job: str) -> list[tuple[Any, ...]]:
        return self.sql(
            "SELECT outcome, dry_run, counts, error, site FROM job_runs WHERE job = %s ORDER BY id",
            [job],
        )


def make_fleet(database_url: str, moto_url: str, bucket_name: str) -> Fleet:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE drift_runs, drift_site_results")
    rt = make_runtime(database_url, moto_url, bucket_name)
    return Fleet(rt, database_url, moto_url, bucket_name)


def sweep(rt: Runtime, now: datetime, **kwargs: Any) -> DriftReport:
    kwargs.setdefault("deadline", Deadline.after(600))
    kwargs.setdefault("fresh", True)
    return run_drift(rt, now=now, **kwargs)


def by_site(report: DriftReport) -> dict[str, dict[str, Any]]:
    return {s.site: s.to_json() for s in report.sites}


def records(caplog: pytest.LogCaptureFixture, message: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == message]


# --- the E4 fixture: one instance of each class 1-6, plus the in-grace cases -------------------


@dataclass
class EveryClass:
    alpha: Dirname
    beta: Dirname
    ids: dict[str, str]


def seed_every_class(f: Fleet) -> EveryClass:
    f.register("alpha")
    f.register("beta")
    f.register("gamma")  # registered, never deployed: swept, clean
    alpha, beta = f.site("alpha"), f.site("beta")
    delta = f.site("delta")  # purged long ago: only a site-level tombstone remains
    f.tombstone(delta, "")
    ids: dict[str, str] = {}
    # alpha: three consistent deploys, production on the newest
    for name, age in (("a1", timedelta(days=10)), ("a2", OLD), ("a3", timedelta(days=1))):
        ids[name] = f.deploy(alpha, age)
    f.alias_object(alpha, "production", ids["a3"])
    f.alias_row(alpha, "production", ids["a3"])
    ids["c1"] = f.did(OLD)  # class 1: bytes + marker, no row, aliased (object only)
    f.put_bytes(alpha, ids["c1"], marker=True)
    f.alias_object(alpha, "preview", ids["c1"])
    ids["c3"] = f.did(OLD)  # class 3: bytes + marker, no row, not aliased
    f.put_bytes(alpha, ids["c3"], marker=True)
    ids["c4"] = f.did(OLD)  # class 4: bytes, no marker, no row, not aliased, past grace
    f.put_bytes(alpha, ids["c4"], marker=False)
    ids["y4"] = f.did(YOUNG)  # in-grace orphan
    f.put_bytes(alpha, ids["y4"], marker=False)
    ids["c6"] = f.did(OLD)  # class 6: row, no bytes, not aliased, past grace
    f.put_row(alpha, ids["c6"], age=OLD)
    ids["g6"] = f.did(YOUNG)  # young ghost row
    f.put_row(alpha, ids["g6"], age=YOUNG)
    # beta: three consistent deploys
    for name in ("b1", "b2", "b3"):
        ids[name] = f.deploy(beta, OLD)
    ids["c2"] = f.did(OLD)  # class 2: bytes, no marker, no row, aliased (object)
    f.put_bytes(beta, ids["c2"], marker=False)
    f.alias_object(beta, "production", ids["c2"])
    ids["c5"] = f.did(OLD)  # class 5: row, no bytes, aliased (row only)
    f.put_row(beta, ids["c5"], age=OLD)
    f.alias_row(beta, "preview", ids["c5"])
    return EveryClass(alpha, beta, ids)


def test_e4_sweep_reports_every_class(fleet: Fleet, caplog: pytest.LogCaptureFixture) -> None:
    seeded = seed_every_class(fleet)
    ids = seeded.ids
    before = fleet.state()
    caplog.set_level(logging.INFO)

    report = sweep(fleet.rt, fleet.now)

    assert report.complete and not report.failed
    assert report.selfcheck == []
    assert report.verdict == "aliased_missing"  # outranks reclaimable and clean
    sites = by_site(report)
    alpha, beta = sites[seeded.alpha], sites[seeded.beta]
    assert alpha["reindex"] == sorted([ids["c1"], ids["c3"]])
    assert alpha["tombstone"] == [ids["c4"]]
    assert alpha["prune"] == [ids["c6"]]
    assert alpha["aliased_missing"] == []
    assert alpha["deferred"] == sorted([ids["y4"], ids["g6"]])
    assert beta["aliased_missing"] == sorted([ids["c2"], ids["c5"]])
    assert beta["reindex"] == beta["tombstone"] == beta["prune"] == []
    assert alpha["slug"] == fleet.slug("alpha")
    t = report.totals
    assert (t["reindex"], t["tombstone"], t["prune"], t["aliased_missing"], t["deferred"]) == (
        2, 1, 1, 2, 2,
    )  # fmt: skip
    assert t["sites_swept"] == 4  # alpha, beta, gamma (registry only), delta (tombstone only)
    assert t["active_rows_read"] == 9 == report.active_rows_total
    assert t["keys_listed"] == len([k for k in before["keys"] if "/deploys/" in k])
    assert t["unreadable"] == 0
    # Read-only: nothing changed anywhere.
    assert fleet.state() == before
    # DECISIONS Q7: aliased-but-missing is a dangerous class → error level, naming the sites.
    (alert,) = records(caplog, "drift.aliased_missing")
    assert alert.levelname == "ERROR"
    assert alert.sites == {seeded.beta: sorted([ids["c2"], ids["c5"]])}  # type: ignore[attr-defined]
    (run,) = fleet.job_runs("drift-detect")
    assert run[0] == "succeeded" and run[1] is True
    assert run[2]["verdict"] == "aliased_missing" and run[2]["prune"] == 1


def test_e4_sweep_pointed_at_a_wrong_template_fails_its_self_check(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    seed_every_class(fleet)
    wrong = make_runtime(
        fleet.database_url,
        fleet.moto_url,
        fleet.bucket_name,
        DEPLOY_PREFIX_FORMAT="<site>.example.org/builds/<ts>-<sha>/",
    )
    try:
        with pytest.raises(DriftFailed) as failed:
            sweep(wrong, fleet.now)
    finally:
        wrong.close()
    report = failed.value.report
    assert report.verdict == "selfcheck" and report.failed
    assert any(f.startswith("3:") for f in report.selfcheck), report.selfcheck
    assert report.totals["keys_listed"] == 0 and report.totals["prune"] == 0
    (alert,) = records(caplog, "drift.selfcheck")
    assert alert.levelname == "ERROR"
    assert [r[0] for r in fleet.job_runs("drift-detect")] == ["failed"]


# --- the content index ---------------------------------------------------------------------------

PAGES = {"index.html": b"<h1>home</h1>", "about.html": b"<h1>about</h1>", "app.js": b"go()"}


@dataclass
class IndexDriftSeed:
    site: Dirname
    ids: dict[str, str]


def seed_index_drift(f: Fleet) -> IndexDriftSeed:
    """One site with every kind of index row: clean, orphaned and missing, and the rows no
    one may judge (a deploy in flight, a deploy finalized before the index existed)."""
    f.register("idx")
    site = f.site("idx")
    ids: dict[str, str] = {}
    ids["clean"] = f.indexed_deploy(site, PAGES, age=timedelta(days=9))
    # A row whose path the deploy's listing does not show.
    ids["ghost_path"] = f.indexed_deploy(site, PAGES, age=timedelta(days=8))
    f.index_rows(site, ids["ghost_path"], {"gone.css": b"body{}"})
    # A deploy tombstoned (bytes and row gone) whose rows stayed behind.
    ids["tombstoned"] = f.did(timedelta(days=7))
    f.tombstone(site, ids["tombstoned"])
    f.index_rows(site, ids["tombstoned"], {"index.html": PAGES["index.html"]})
    # Rows of a deploy that has neither a row nor bytes.
    ids["nothing"] = f.did(timedelta(days=6))
    f.index_rows(site, ids["nothing"], {"a.js": b"a", "b.js": b"b"})
    # A finalized deploy that lost two of its rows.
    ids["lost"] = f.indexed_deploy(site, PAGES, age=timedelta(days=2), rows=False)
    f.index_rows(site, ids["lost"], {"app.js": PAGES["app.js"]})
    # In flight: a presigned POST is indexed before its bytes arrive. Never judged.
    ids["pending"] = f.did(YOUNG)
    f.put_row(site, ids["pending"], age=YOUNG, marker=False, state="pending")
    f.index_rows(site, ids["pending"], {"late.html": b"<p>late</p>"})
    # Finalized before the content index (its marker has no digests): no rows by design.
    ids["legacy"] = f.deploy(site, timedelta(days=10))
    return IndexDriftSeed(site, ids)


def test_the_sweep_reports_index_orphan_and_missing_rows_and_writes_nothing(
    fleet: Fleet,
) -> None:
    seeded = seed_index_drift(fleet)
    ids = seeded.ids
    before = fleet.state()
    rows_before = fleet.sql("SELECT count(*) FROM deploy_files")[0][0]

    report = sweep(fleet.rt, fleet.now)

    assert fleet.sql("SELECT count(*) FROM deploy_files")[0][0] == rows_before == 12
    assert fleet.state() == before
    assert report.complete and report.verdict == "clean"  # index drift decides no verdict
    (result,) = report.sites  # notable for its index findings alone
    assert result.site == seeded.site
    assert result.index_orphan_rows == 4
    assert result.index_orphan_sample == tuple(
        sorted(
            [
                f"{ids['ghost_path']}/gone.css",
                f"{ids['tombstoned']}/index.html",
                f"{ids['nothing']}/a.js",
                f"{ids['nothing']}/b.js",
            ]
        )
    )
    assert result.index_missing_rows == 2
    assert result.index_missing_sample == (
        f"{ids['lost']}/about.html",
        f"{ids['lost']}/index.html",
    )
    assert (report.totals["index_orphan_rows"], report.totals["index_missing_rows"]) == (4, 2)
    assert report.metrics()["drift.index_orphan_rows"] == 4
    (run,) = fleet.job_runs("drift-detect")
    assert (run[2]["index_orphan_rows"], run[2]["index_missing_rows"]) == (4, 2)
    stored = fleet.sql("SELECT result FROM drift_site_results")
    assert [r[0]["index_missing_rows"] for r in stored] == [2]


def test_a_site_whose_index_matches_its_listing_is_not_notable(fleet: Fleet) -> None:
    fleet.register("tidy")
    site = fleet.site("tidy")
    fleet.indexed_deploy(site, PAGES)
    report = sweep(fleet.rt, fleet.now)
    assert report.verdict == "clean" and report.sites == []
    assert (report.totals["index_orphan_rows"], report.totals["index_missing_rows"]) == (0, 0)


def test_a_sweep_that_would_prune_more_than_half_the_index_fails_self_check_4(
    fleet: Fleet,
) -> None:
    site = fleet.site("lost")
    fleet.register("lost")
    fleet.deploy(site)
    for _ in range(2):
        fleet.put_row(site, fleet.did(OLD))  # rows whose bytes are gone
    with pytest.raises(DriftFailed) as failed:
        sweep(fleet.rt, fleet.now)
    assert failed.value.report.verdict == "selfcheck"
    assert [f[:2] for f in failed.value.report.selfcheck] == ["4:"]


def test_a_sweep_of_nothing_fails_self_check_1(fleet: Fleet) -> None:
    with pytest.raises(DriftFailed) as failed:
        sweep(fleet.rt, fleet.now)
    assert failed.value.report.selfcheck == ["1: zero sites swept"]


# --- read-only by construction -----------------------------------------------------------------


def _bucket_methods() -> set[str]:
    return {
        name
        for name, value in vars(Bucket).items()
        if isfunction(value) and not name.startswith("__")
    }


def test_every_write_method_of_the_read_only_bucket_raises(fleet: Fleet) -> None:
    writes = _bucket_methods() - BUCKET_READS
    assert {
        "put",
        "put_alias",
        "move_object",
        "move_prefix",
        "delete_prefix",
        "presigned_post",
        "_copy",
        "_delete_batch",
    } <= writes
    site = fleet.site("ro")
    deploy_id = fleet.did(OLD)
    fleet.put_bytes(site, deploy_id)
    prefix = fleet.layout.deploy_prefix(site, deploy_id)
    before = fleet.all_keys()
    ro = ReadOnlyBucket(fleet.bucket)
    plausible: dict[str, tuple[Any, ...]] = {
        "put": (prefix + "new.html", b"x", "text/html"),
        "put_alias": (fleet.layout.alias_key(site, "production"), deploy_id),
        "move_object": (prefix + "index.html", "_trash/x"),
        "move_prefix": (prefix, "_trash/x/"),
        "delete_prefix": (prefix,),
        "presigned_post": (prefix + "x",),
        "_copy": (prefix + "index.html", "elsewhere"),
        "_delete_batch": ([prefix + "index.html"],),
    }
    for name in sorted(writes):
        with pytest.raises(ReadOnlyViolation):
            getattr(ro, name)(*plausible.get(name, ()))
    for name in ("client", "anything_bucket_grows_later"):
        with pytest.raises(ReadOnlyViolation):
            getattr(ro, name)
    with pytest.raises(ReadOnlyViolation):
        ro.name = "other"  # type: ignore[misc]
    assert fleet.all_keys() == before
    # The reads still work.
    assert ro.has_prefix(prefix) and len(ro.list_keys(prefix)) == 3
    assert set(BUCKET_READS) <= _bucket_methods()


def test_the_read_only_database_refuses_writes_in_postgres_and_in_python(fleet: Fleet) -> None:
    ro = ReadOnlyDatabase(fleet.rt.db)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), ro.transaction() as conn:
        conn.execute("INSERT INTO sites (slug) VALUES ('should-not-exist')")
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), ro.transaction() as conn:
        conn.execute("DELETE FROM deploys")
    with pytest.raises(psycopg.errors.ActiveSqlTransaction), ro.transaction() as conn:
        conn.execute("SET TRANSACTION READ WRITE")  # the snapshot is pinned
    for name in ("commit", "rollback", "transaction", "set_autocommit", "set_read_only"):
        with pytest.raises(ReadOnlyViolation), ro.transaction() as conn:
            getattr(conn, name)()
    with pytest.raises(ReadOnlyViolation), ro.transaction() as conn:
        conn.autocommit = True
    for name in ("conninfo", "close"):
        with pytest.raises(ReadOnlyViolation):
            getattr(ro, name)
    with ro.transaction() as conn:
        assert conn.execute("SELECT count(*) FROM sites").fetchone() == (0,)


def test_the_sweep_takes_no_site_lock(fleet: Fleet) -> None:
    """A user deploy holding a site's lock never delays the sweep (and vice versa)."""
    fleet.register("busy")
    site = fleet.site("busy")
    fleet.deploy(site)
    with SiteLockSession(fleet.database_url, timeout=1) as session, session.hold(site):
        done: list[DriftReport] = []
        thread = threading.Thread(target=lambda: done.append(sweep(fleet.rt, fleet.now)))
        thread.start()
        thread.join(timeout=20)
        assert done and done[0].verdict == "clean"


# --- verdicts and alert levels (§9.4.5, DECISIONS Q7) -----------------------------------------


def test_a_clean_fleet_is_clean_and_logs_at_info(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fleet.register("ok")
    site = fleet.site("ok")
    fleet.deploy(site)
    fleet.deploy(site, YOUNG, marker=False)
    report = sweep(fleet.rt, fleet.now)
    assert report.verdict == "clean" and not report.failed and report.sites == []
    (event,) = records(caplog, "drift.clean")
    assert event.levelname == "INFO"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(("orphans", "verdict"), [(24, "clean"), (25, "reclaimable")])
def test_reclaimable_at_25_fleet_wide_warns_and_succeeds(
    fleet: Fleet, caplog: pytest.LogCaptureFixture, orphans: int, verdict: str
) -> None:
    caplog.set_level(logging.INFO)
    names = ["one", "two", "three"]
    for name in names:
        fleet.register(name)
        fleet.deploy(fleet.site(name))
    for i in range(orphans):  # finalized but unindexed (class 3), spread over the sites
        fleet.put_bytes(fleet.site(names[i % 3]), fleet.did(OLD), files={"i.html": b"x"})
    report = sweep(fleet.rt, fleet.now)
    assert report.verdict == verdict and not report.failed
    assert report.totals["reindex"] == orphans
    if verdict == "reclaimable":
        (event,) = records(caplog, "drift.reclaimable")
        assert event.levelname == "WARNING"
        ranked = event.sites  # type: ignore[attr-defined]
        assert [s["count"] for s in ranked] == [9, 8, 8]
        assert ranked[0]["site"] == fleet.site("one")
        assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_an_unreadable_site_makes_the_verdict_unreadable_and_fails_the_run(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("fine", "cold"):
        fleet.register(name)
        fleet.deploy(fleet.site(name))
    # An archived alias object cannot be read: an error, never "no alias" (§4).
    cold = fleet.site("cold")
    fleet.alias_object(cold, "production", fleet.did(OLD), storage_class="GLACIER")
    with pytest.raises(DriftFailed) as failed:
        sweep(fleet.rt, fleet.now)
    report = failed.value.report
    assert report.verdict == "unreadable" and report.failed
    (unread,) = [s for s in report.sites if s.unreadable]
    assert unread.site == cold and unread.error and "r2_get_failed" in unread.error
    assert report.totals["sites_swept"] == 2 and report.totals["read_errors"] == 1
    (event,) = records(caplog, "drift.unreadable")
    assert event.levelname == "ERROR"
    assert cold in event.sites  # type: ignore[attr-defined]
    (run,) = fleet.job_runs("drift-detect")
    assert run[0] == "failed" and "drift verdict unreadable" in run[3]


def test_aliased_missing_outranks_unreadable_but_the_run_still_fails(fleet: Fleet) -> None:
    for name in ("fine", "cold"):
        fleet.register(name)
        fleet.deploy(fleet.site(name))
    fine = fleet.site("fine")
    fleet.alias_row(fine, "preview", fleet.did(OLD))  # names a deploy that does not exist
    fleet.alias_object(fleet.site("cold"), "preview", "x", storage_class="GLACIER")
    with pytest.raises(DriftFailed) as failed:
        sweep(fleet.rt, fleet.now)
    assert failed.value.report.verdict == "aliased_missing"
    assert failed.value.report.totals["unreadable"] == 1


def test_an_empty_listing_with_rows_is_unreadable_not_a_prune(fleet: Fleet) -> None:
    for name in ("fine", "gone"):
        fleet.register(name)
        fleet.deploy(fleet.site(name))
    for name in ("fine", "gone"):
        fleet.deploy(fleet.site(name))
    gone = fleet.site("gone")
    for key in fleet.all_keys():
        if key.startswith(f"{gone}/"):
            fleet.bucket.client.delete_object(Bucket=fleet.bucket_name, Key=key)
    with pytest.raises(DriftFailed) as failed:
        sweep(fleet.rt, fleet.now)
    report = failed.value.report
    assert report.verdict == "unreadable" and report.totals["prune"] == 0
    (faulted,) = [s for s in report.sites if s.unreadable]
    assert faulted.site == gone and faulted.fault and "2 active index row" in faulted.fault


# --- sharding: resumable batches ------------------------------------------------------------


def seed_many(f: Fleet, count: int) -> None:
    for i in range(count):
        name = f"s{i:02d}"
        f.register(name)
        site = f.site(name)
        f.deploy(site)
        if i % 2:
            f.put_bytes(site, f.did(OLD), marker=False)  # an orphan to tombstone
        if i % 3 == 0:
            f.put_bytes(site, f.did(OLD), marker=True)  # one to reindex


def test_a_sweep_cut_off_by_its_deadline_resumes_from_its_cursor_with_the_same_totals(
    fleet: Fleet,
) -> None:
    seed_many(fleet, 7)
    whole = sweep(fleet.rt, fleet.now)  # an operator sweep, in one go
    assert whole.complete and whole.batches == 1

    shard = Shard(batch_size=2, workers=2)
    spent = Deadline.after(0)  # every invocation has time for its one guaranteed batch only
    reports = []
    for _ in range(10):
        report = run_drift(fleet.rt, now=fleet.now, deadline=spent, shard=shard)
        reports.append(report)
        if report.complete:
            break
    assert [r.complete for r in reports] == [False, False, False, True]
    assert [r.batches for r in reports] == [1, 1, 1, 1]
    assert len({r.run_id for r in reports}) == 1 and reports[0].run_id != whole.run_id
    sites = sorted(fleet.site(f"s{i:02d}") for i in range(7))
    assert [r.cursor for r in reports] == [sites[1], sites[3], sites[5], sites[6]]
    final = reports[-1]
    assert final.totals == whole.totals
    assert final.verdict == whole.verdict == "clean"
    assert by_site(final) == by_site(whole)
    runs = fleet.job_runs("drift-detect")
    assert [r[0] for r in runs] == ["succeeded"] * 5
    assert [r[2]["complete"] for r in runs[1:]] == [False, False, False, True]
    assert "verdict" not in runs[1][2] and runs[-1][2]["verdict"] == "clean"

    # A later tick within the interval has nothing to do: recorded as skipped.
    again = run_drift(fleet.rt, now=fleet.now + timedelta(hours=1), deadline=spent, shard=shard)
    assert again.skipped and again.run_id == final.run_id
    assert fleet.job_runs("drift-detect")[-1][0] == "skipped"
    # The next night starts a new sweep.
    later = run_drift(
        fleet.rt,
        now=fleet.now + timedelta(hours=24),
        deadline=Deadline.after(600),
        shard=shard,
    )
    assert later.complete and later.run_id not in (final.run_id, whole.run_id)


def test_an_explicit_run_id_resumes_that_run(fleet: Fleet) -> None:
    seed_many(fleet, 3)
    shard = Shard(batch_size=1)
    first = run_drift(fleet.rt, now=fleet.now, deadline=Deadline.after(0), shard=shard, fresh=True)
    assert not first.complete and first.run_id is not None
    # A scheduled tick does not pick up an operator run …
    tick = run_drift(fleet.rt, now=fleet.now, deadline=Deadline.after(600), shard=shard)
    assert tick.run_id != first.run_id and tick.complete
    # … but its id does.
    rest = run_drift(
        fleet.rt, now=fleet.now, deadline=Deadline.after(600), shard=shard, run_id=first.run_id
    )
    assert rest.complete and rest.run_id == first.run_id and rest.batches == 2
    assert rest.totals == tick.totals


def test_sites_not_swept_by_the_run_deadline_count_as_unreadable(fleet: Fleet) -> None:
    seed_many(fleet, 4)
    shard = Shard(batch_size=1, run_budget=timedelta(hours=2))
    first = run_drift(fleet.rt, now=fleet.now, deadline=Deadline.after(0), shard=shard)
    assert not first.complete
    with pytest.raises(DriftFailed) as failed:
        run_drift(
            fleet.rt,
            now=fleet.now + timedelta(hours=3),
            deadline=Deadline.after(600),
            shard=shard,
        )
    report = failed.value.report
    assert report.run_id == first.run_id and report.verdict == "unreadable"
    unread = [s for s in report.sites if s.error == DEADLINE_ERROR]
    assert len(unread) == 3 and report.totals["sites_swept"] == 4


# --- the handler and the CLI -------------------------------------------------------------------


def test_the_lambda_handler_sweeps_and_returns_json(
    fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    from artemis import runtime
    from artemis_local.functions import LocalContext, load_handler

    fleet.register("web")
    fleet.deploy(fleet.site("web"))
    for name, value in runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name).items():
        monkeypatch.setenv(name, value)
    runtime.reset()
    try:
        handler = load_handler("drift_detect")
        event = json.loads((REPO_ROOT / "events" / "drift_detect-scheduled.json").read_text())
        result = handler(event, LocalContext("drift_detect"))
    finally:
        runtime.reset()
    assert result["complete"] is True and result["verdict"] == "clean"
    assert result["totals"]["sites_swept"] == 1
    json.dumps(result)


def run_admin(env: dict[str, str], *args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in env and not k.startswith("AWS_")}
    full = {
        **clean,
        **env,
        "ARTEMIS_STATE_DIR": str(tmp),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_REGION": "us-east-1",
    }
    return subprocess.run(
        [ADMIN, *args], env=full, capture_output=True, text=True, timeout=120, cwd=REPO_ROOT
    )


def test_admin_driftreport_prints_the_report_and_takes_no_arguments(
    fleet: Fleet, tmp_path: Path
) -> None:
    seeded = seed_every_class(fleet)
    env = runtime_env(fleet.database_url, fleet.moto_url, fleet.bucket_name)
    done = run_admin(env, "driftreport", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["verdict"] == "aliased_missing" and report["complete"] is True
    assert {s["site"] for s in report["sites"]} == {seeded.alpha, seeded.beta}
    refused = run_admin(env, "driftreport", "www", tmp=tmp_path)
    assert refused.returncode == 2 and "unrecognized arguments" in refused.stderr


# --- alias rows against alias objects (named previews) -------------------------------------------


def test_the_sweep_reports_alias_rows_disagreeing_with_alias_objects_and_writes_nothing(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    fleet.register("prev")
    site = fleet.site("prev")
    old, new = fleet.deploy(site, timedelta(days=3)), fleet.deploy(site, timedelta(days=1))
    fleet.alias_object(site, "production", new)
    fleet.alias_row(site, "production", new)
    fleet.alias_object(site, "pr-1", new)  # an object without a row
    fleet.alias_row(site, "pr-2", old)  # a row without an object
    fleet.alias_object(site, "pr-3", new)  # a row naming another deploy than its object
    fleet.alias_row(site, "pr-3", old)
    fleet.alias_object(site, "pr-4", old)  # consistent: not reported
    fleet.alias_row(site, "pr-4", old)
    before = fleet.state()

    report = sweep(fleet.rt, fleet.now)

    assert fleet.state() == before  # read-only
    assert report.complete and not report.failed and report.verdict == "alias_mismatch"
    (result,) = by_site(report).values()
    assert result["alias_row_missing"] == [{"name": "pr-1", "row": None, "object": new}]
    assert result["alias_object_missing"] == [{"name": "pr-2", "row": old, "object": None}]
    assert result["alias_row_stale"] == [{"name": "pr-3", "row": old, "object": new}]
    assert result["aliased_missing"] == [] and result["reindex"] == result["tombstone"] == []
    t = report.totals
    assert (t["alias_row_missing"], t["alias_object_missing"], t["alias_row_stale"]) == (1, 1, 1)
    (alert,) = records(caplog, "drift.alias_mismatch")
    assert alert.levelname == "WARNING"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    (run,) = fleet.job_runs("drift-detect")
    assert run[2]["verdict"] == "alias_mismatch" and run[2]["alias_row_stale"] == 1
    stored = fleet.sql("SELECT result FROM drift_site_results")
    assert [r[0]["alias_object_missing"] for r in stored] == [
        [{"name": "pr-2", "row": old, "object": None}]
    ]

    # The operator repairs the site; the next sweep is clean.
    repaired = run_reconcile_apply(fleet, site)
    assert repaired == (["pr-1", "pr-3"], ["pr-2"])
    after = sweep(fleet.rt, fleet.now)
    assert after.verdict == "clean" and after.sites == []


def run_reconcile_apply(f: Fleet, site: Dirname) -> tuple[list[str], list[str]]:
    from artemis.jobs.reconcile import run_reconcile

    report = run_reconcile(f.rt, site, apply=True, now=f.now, deadline=Deadline.after(600))
    return report.alias_rows_written, report.alias_rows_deleted


def test_a_named_alias_naming_a_missing_deploy_is_aliased_missing(fleet: Fleet) -> None:
    fleet.register("lost")
    site = fleet.site("lost")
    fleet.deploy(site)
    nothing, unmarked = fleet.did(OLD), fleet.did(OLD)
    fleet.alias_object(site, "pr-5", nothing)  # names a deploy with no bytes and no row
    fleet.put_bytes(site, unmarked, marker=False)  # class 2, aliased by a named preview only
    fleet.alias_object(site, "pr-6", unmarked)
    fleet.alias_row(site, "pr-6", unmarked)
    fleet.alias_row(site, "pr-7", fleet.did(OLD))  # a named row naming nothing, no object
    before = fleet.state()

    report = sweep(fleet.rt, fleet.now)

    assert fleet.state() == before
    assert report.verdict == "aliased_missing"  # an error: it pages
    (result,) = by_site(report).values()
    missing = sorted([nothing, unmarked, before["aliases"][-1][2]])
    assert result["aliased_missing"] == missing
    assert result["tombstone"] == []  # the unmarked bytes are an alias's, never an orphan
    assert [m["name"] for m in result["alias_row_missing"]] == ["pr-5"]
    assert [m["name"] for m in result["alias_object_missing"]] == ["pr-7"]


@pytest.mark.parametrize("verdict", VERDICTS)
def test_a_sweep_can_close_with_every_verdict(fleet: Fleet, verdict: str) -> None:
    fleet.sql(
        "INSERT INTO drift_runs (origin, as_of, expires_at, verdict, finished_at)"
        " VALUES ('operator', now(), now(), %s, now())",
        [verdict],
    )
    assert fleet.sql("SELECT verdict FROM drift_runs") == [(verdict,)]
