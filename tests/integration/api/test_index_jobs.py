"""Drift, reconcile and backfill on content-index rows and markers written by the real deploy
routes (uploads and server-side copies), not by fixtures: what finalize leaves is clean, and
the repairs put back exactly what it wrote."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from artemis.deadlines import Deadline
from artemis.jobs.backfill import run_backfill
from artemis.jobs.drift import run_drift
from artemis.jobs.reconcile import run_reconcile
from artemis.keys import Slug
from tests.integration.api.conftest import Api

V1 = {"index.html": b"<h1>v1</h1>", "app.js": b"run()", "css/site.css": b"body{}"}
V2 = {**V1, "index.html": b"<h1>v2</h1>"}


def rows(api: Api) -> list[tuple[Any, ...]]:
    return api.sql(
        "SELECT site, deploy_id, path, sha256, size FROM deploy_files"
        " ORDER BY site, deploy_id, path"
    )


def two_deploys(api: Api) -> tuple[str, str]:
    """v1 uploaded; v2 incremental: two files copied inside the bucket, one uploaded."""
    api.register("idxjobs", ["web"])
    first = api.deploy("idxjobs", files=V1)
    session = api.init("idxjobs")
    manifest = [
        {"path": p, "sha256": hashlib.sha256(d).hexdigest(), "size": len(d)} for p, d in V2.items()
    ]
    reply = api.call(
        "POST", f"/api/deploy/{session['deployId']}/digests", token=session["jwt"],
        json_body={"files": manifest},
    )  # fmt: skip
    assert reply.status == 200 and reply.body["upload"] == ["index.html"], reply.raw
    assert api.upload(session, "index.html", V2["index.html"]).status == 200
    assert api.finalize(session, list(V2)).status == 200
    return first, str(session["deployId"])


def test_what_the_deploy_routes_write_is_clean_and_the_repairs_restore_it(api: Api) -> None:
    first, second = two_deploys(api)
    written = rows(api)
    assert len(written) == 6
    rt = api.rt
    now = datetime.now(UTC)
    site = rt.settings.key_layout.dirname(Slug("idxjobs"))

    report = run_drift(rt, now=now, deadline=Deadline.after(600), fresh=True)
    assert report.totals["index_orphan_rows"] == report.totals["index_missing_rows"] == 0
    assert site not in {s.site for s in report.sites}

    # Reconcile: two rows lost, one row pointing at nothing.
    api.sql("DELETE FROM deploy_files WHERE deploy_id = %s AND path <> 'app.js'", [second])
    api.sql(
        "INSERT INTO deploy_files (site, deploy_id, path, sha256, size)"
        " VALUES (%s, %s, 'gone.js', %s, 1)",
        [site, first, b"\x00" * 32],
    )
    fixed = run_reconcile(rt, "idxjobs", apply=True, now=now, deadline=Deadline.after(600))
    assert (fixed.index_rows_deleted, fixed.index_rows_restored) == (1, 2)
    assert rows(api) == written

    # Backfill from nothing: every digest comes from the markers, nothing is read to hash.
    api.sql("TRUNCATE deploy_files")
    result = run_backfill(rt, now=now, deadline=Deadline.after(600))
    assert (result.digests_from_marker, result.hashed, result.deferred) == (6, 0, 0)
    assert rows(api) == written
